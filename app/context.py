"""The running application's shared parts: settings, database, bus, background workers."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any, Protocol

from sqlalchemy.ext.asyncio import AsyncEngine

from app.bus import EventBus, create_bus
from app.db import SessionFactory, engine_from_settings, read_session_factory, session_factory
from app.events import UnitOfWork
from app.settings import Settings

log = logging.getLogger(__name__)


class Service(Protocol):
    """Anything the lifespan starts and stops: channels, workers, media."""

    name: str

    async def start(self, ctx: AppContext) -> None: ...

    async def stop(self) -> None: ...


class AppContext:
    def __init__(self, settings: Settings, *, bus: EventBus | None = None) -> None:
        self.settings = settings
        self.engine: AsyncEngine = engine_from_settings(settings)
        self.sessions: SessionFactory = session_factory(self.engine)
        # Same engine and pool; on SQLite its transactions do not take the write lock.
        self.read_sessions: SessionFactory = read_session_factory(self.engine)
        self.bus: EventBus = bus or create_bus(settings.redis_url, settings.redis_namespace)
        self.services: list[Service] = []
        self.extras: dict[str, Any] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self.started = False

    @asynccontextmanager
    async def uow(self, *, read_only: bool = False) -> AsyncIterator[UnitOfWork]:
        """A unit of work; leaving the block without `commit()` rolls back.

        `read_only` is for work that only reads (see `app.db.read_session_factory`).
        """
        factory = self.read_sessions if read_only else self.sessions
        async with factory() as session:
            unit = UnitOfWork(session=session, bus=self.bus)
            try:
                yield unit
            except BaseException:
                await unit.rollback()
                raise

    def spawn(self, coro: Awaitable[Any], name: str) -> asyncio.Task[Any]:
        """Run a background task owned by the app; it is cancelled at shutdown."""
        task = asyncio.ensure_future(coro)
        task.set_name(name)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)
        return task

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("background task %s failed", task.get_name(), exc_info=task.exception())

    async def start(self, services: list[Service] | None = None) -> None:
        self.settings.data_dir.mkdir(parents=True, exist_ok=True)
        await self.bus.start()
        self.started = True
        for service in services or []:
            await service.start(self)
            self.services.append(service)
            log.info("started %s", service.name)

    async def stop(self) -> None:
        for service in reversed(self.services):
            try:
                await service.stop()
                log.info("stopped %s", service.name)
            except Exception:
                log.exception("stopping %s failed", service.name)
        self.services.clear()
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        await self.bus.stop()
        await self.engine.dispose()
        self.started = False


ServiceFactory = Callable[[Settings], list[Service]]
