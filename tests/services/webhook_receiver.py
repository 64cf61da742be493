"""A real HTTP receiver for webhook tests: Starlette under uvicorn on an ephemeral port."""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, RedirectResponse, Response, StreamingResponse
from starlette.routing import Route


@dataclass(frozen=True)
class Received:
    path: str
    headers: dict[str, str]
    body: bytes
    status: int  # what the receiver answered

    @property
    def delivery_id(self) -> str:
        return self.headers["helpdesk-delivery"]

    @property
    def event(self) -> str:
        return self.headers["helpdesk-event"]

    def json(self) -> Any:
        return json.loads(self.body)


class Receiver:
    """Records every POST; answers from a per-path script of actions, then 200.

    Actions: an int status, "redirect" (302 to /elsewhere), "endless" (200 with a
    body that never ends), or "hang" (waits until `release()` and then answers 200).
    """

    def __init__(self) -> None:
        self.received: list[Received] = []
        self.script: dict[str, list[int | str]] = {}
        self._changed = asyncio.Condition()
        self._release = asyncio.Event()
        self.hanging = 0
        app = Starlette(routes=[Route("/{name}", self._handle, methods=["POST"])])
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.bind(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        config = uvicorn.Config(
            app, lifespan="off", log_config=None, access_log=False, timeout_graceful_shutdown=1
        )
        self.server = uvicorn.Server(config)
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._task = asyncio.create_task(self.server.serve(sockets=[self.sock]))
        while not self.server.started:  # noqa: ASYNC110 (uvicorn exposes only a flag)
            await asyncio.sleep(0.01)

    async def stop(self) -> None:
        self.release()
        self.server.should_exit = True
        if self._task:
            await self._task
        self.sock.close()

    def release(self) -> None:
        self._release.set()

    async def _record(self, request: Request, body: bytes, status: int) -> None:
        headers = {k.lower(): v for k, v in request.headers.items()}
        async with self._changed:
            self.received.append(Received(request.url.path, headers, body, status))
            self._changed.notify_all()

    async def _handle(self, request: Request) -> Response:
        body = await request.body()
        queue = self.script.get(request.url.path, [])
        action: int | str = queue.pop(0) if queue else 200
        if action == "hang":
            async with self._changed:
                self.hanging += 1
                self._changed.notify_all()
            await self._release.wait()
            if await request.is_disconnected():
                await self._record(request, body, 499)  # the sender gave up on us
                return PlainTextResponse("too late", status_code=499)
            action = 200
        if action == "redirect":
            await self._record(request, body, 302)
            return RedirectResponse("/elsewhere", status_code=302)
        if action == "endless":
            await self._record(request, body, 200)
            return StreamingResponse(_endless(), media_type="text/plain")
        assert isinstance(action, int)
        await self._record(request, body, action)
        return PlainTextResponse("ok" if action < 400 else "nope", status_code=action)

    async def wait_for(self, predicate: Callable[[Receiver], bool]) -> None:
        async with asyncio.timeout(30), self._changed:
            await self._changed.wait_for(lambda: predicate(self))

    def on(self, path: str) -> list[Received]:
        return [r for r in self.received if r.path == path]


async def _endless() -> AsyncIterator[bytes]:
    chunk = b"x" * 16384
    while True:
        yield chunk
        await asyncio.sleep(0)
