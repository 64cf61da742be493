"""The live chat channel as a lifespan service: shared state, presence and routing loops.

Connections work whether or not the loops run (the loops only heartbeat
presence rows, sweep dead nodes' rows, requeue chats of lost agents and assign
waiting chats); `kick()` runs a routing pass at once after something changed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

from sqlmodel.ext.asyncio.session import AsyncSession

from app.context import AppContext
from app.events import UnitOfWork
from app.group_commit import WorkQueue
from app.models import Inbox
from app.services import presence, routing
from app.services.expiring import ExpiringCache
from app.services.inbox_addresses import InboxKeyCache
from app.services.workspaces import get_inbox_by_public_key
from app.tasks import cancel_and_wait, run_when_kicked
from channels.webchat.console_router import ConsoleRouters
from channels.webchat.protocol import Limits
from channels.webchat.ratelimit import BucketRegistry

log = logging.getLogger(__name__)

AVAILABILITY_CACHE_SECONDS = 1.0
# Writes per transaction: it holds SQLite's write lock while it runs.
WRITE_BATCH = 32


@dataclass
class _Availability:
    available: bool
    expires: float


class WebchatHub:
    name = "webchat"

    def __init__(self, ctx: AppContext) -> None:
        settings = ctx.settings
        self.ctx = ctx
        self.settings = settings
        self.node = f"{socket.gethostname()[:30]}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        self.limits = Limits(max_message_chars=settings.chat_max_message_chars)
        self.visitor_buckets = BucketRegistry(
            settings.chat_rate_burst, settings.chat_rate_per_second
        )
        self.agent_buckets = BucketRegistry(
            settings.chat_agent_rate_burst, settings.chat_agent_rate_per_second
        )
        self.ttl = settings.chat_presence_ttl_seconds
        self.serial: asyncio.Lock | None = asyncio.Lock() if settings.is_sqlite else None
        self._kick = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._last_heartbeat = 0.0
        self._available: ExpiringCache[_Availability] = ExpiringCache(AVAILABILITY_CACHE_SECONDS)
        self._inboxes = InboxKeyCache()
        # Chat messages, replies and agent presence from every connection of this
        # node share transactions (app.group_commit). Retries cover two tabs that
        # create the same contact or client_id at once.
        self.consoles = ConsoleRouters(ctx.bus)
        self.writes = WorkQueue(
            self.uow, ctx.spawn, "webchat-writer", max_batch=WRITE_BATCH, retries=2
        )

    async def start(self, ctx: AppContext) -> None:
        self._task = ctx.spawn(self._loop(), "webchat-routing")

    async def stop(self) -> None:
        await cancel_and_wait(self._task)
        self._task = None
        # Our presence rows go now rather than after the TTL: a clean shutdown is not a crash.
        with contextlib.suppress(Exception):
            async with self.ctx.uow() as uow:
                await presence.do_drop_node(uow, self.node)
                await uow.commit()

    @asynccontextmanager
    async def session(self) -> AsyncIterator[AsyncSession]:
        """A read session: on SQLite a plain deferred BEGIN (a WAL snapshot), so replay,
        welcome and gap reads neither take the write lock nor queue behind writers.
        Callers only read (see `app.db.read_session_factory`)."""
        async with self.ctx.read_sessions() as session:
            yield session

    @asynccontextmanager
    async def uow(self) -> AsyncIterator[UnitOfWork]:
        """A write unit of work. On SQLite writers queue here before taking a pooled
        connection, so a burst of chat writes waiting for the write lock never holds
        every pool connection while the readers need one."""
        if self.serial is None:
            async with self.ctx.uow() as uow:
                yield uow
            return
        async with self.serial, self.ctx.uow() as uow:
            yield uow

    def kick(self) -> None:
        """Run a routing pass soon (a chat arrived, an agent became available)."""
        self._available.clear()
        self._kick.set()

    async def team_available(self, workspace_id: int, team_id: int | None) -> bool:
        """Whether the widget may show "agents available": read at most once a second
        per team, because every widget (re)connect asks. Presence changes on this node
        (`kick`) forget it at once; other nodes' within a second."""
        key = f"{workspace_id}:{team_id}"
        hit = self._available.get(key)
        if hit is not None:
            return hit.available
        async with self.session() as session:
            value = await presence.team_available(session, workspace_id, team_id, self.ttl)
        cache = self._available
        cache.store(key, _Availability(value, cache.clock() + cache.ttl))
        return value

    async def inbox(self, public_key: str | None) -> Inbox | None:
        """The widget inbox of `public_key`; connections share the row (read-only)."""
        if not public_key or len(public_key) > 64:
            return None
        known = self._inboxes.get(public_key)
        if known is not None:
            return known.inbox
        generation = InboxKeyCache.generation()
        async with self.session() as session:
            inbox = await get_inbox_by_public_key(session, public_key)
        self._inboxes.put(public_key, inbox, generation)
        return inbox

    async def _loop(self) -> None:
        await run_when_kicked(
            self._kick, self.settings.chat_route_interval_seconds, self.tick, "webchat routing pass"
        )

    async def tick(self) -> list[tuple[int, int]]:
        """One pass: heartbeat, sweep, requeue, route. Returns the assignments made."""
        now = time.monotonic()
        if now - self._last_heartbeat >= self.settings.chat_heartbeat_seconds:
            self._last_heartbeat = now
            async with self.uow() as uow:
                await presence.do_heartbeat(uow, self.node)
                await presence.do_sweep_stale(uow, self.ttl)
                await uow.commit()
        async with self.uow() as uow:
            await routing.do_requeue_lost(
                uow, grace=self.settings.chat_requeue_grace_seconds, ttl=self.ttl
            )
            await uow.commit()
        async with self.session() as session:
            teams = await routing.waiting_teams(session)
        assigned: list[tuple[int, int]] = []
        for workspace_id, team_id in teams:
            async with self.uow() as uow:
                assigned += await routing.do_route_team(uow, workspace_id, team_id, ttl=self.ttl)
                await uow.commit()
        return assigned
