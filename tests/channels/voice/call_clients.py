"""Websocket clients for the call tests: a widget and a console speaking `call.*` frames.

Each client reads frames in the background, so a test can wait for a frame that arrived
while it was busy with media (the ws is never left unread, which would stall the server).
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Callable
from typing import Any

from websockets.asyncio.client import ClientConnection, connect
from websockets.typing import Origin

from app.settings import Settings
from app.web.sessions import COOKIE, _serializer

ORIGIN = "http://shop.example"
TIMEOUT = 15.0

Pred = Callable[[dict[str, Any]], bool]


def session_cookie(settings: Settings, agent_id: int, workspace_id: int, fingerprint: str) -> str:
    value = _serializer(settings).dumps({"a": agent_id, "w": workspace_id, "f": fingerprint})
    return f"{COOKIE}={value}"


class WsClient:
    def __init__(self, conn: ClientConnection) -> None:
        self.conn = conn
        self.frames: list[dict[str, Any]] = []
        self._changed = asyncio.Event()
        self._reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        try:
            async for raw in self.conn:
                self.frames.append(json.loads(raw))
                self._changed.set()
        except Exception:
            pass
        self._changed.set()

    async def send(self, frame: dict[str, Any]) -> None:
        await self.conn.send(json.dumps(frame))

    async def wait(
        self, kind: str, pred: Pred | None = None, *, after: int = 0, within: float = TIMEOUT
    ) -> dict[str, Any]:
        """The first frame of `kind` (matching `pred`) at index >= `after`."""
        async with asyncio.timeout(within):
            while True:
                for frame in self.frames[after:]:
                    if frame.get("type") == kind and (pred is None or pred(frame)):
                        return frame
                self._changed.clear()
                await self._changed.wait()

    async def state(
        self, state: str, call: int | None = None, *, after: int = 0, within: float = TIMEOUT
    ) -> dict[str, Any]:
        return await self.wait(
            "call.state",
            lambda f: f["state"] == state and (call is None or f["call"] == call),
            after=after,
            within=within,
        )

    def mark(self) -> int:
        return len(self.frames)

    def call_events(self) -> list[dict[str, Any]]:
        return [f for f in self.frames if f.get("type") == "event" and f.get("kind") == "call"]

    async def close(self) -> None:
        await self.conn.close()
        self._reader.cancel()


class Widget(WsClient):
    welcome: dict[str, Any]

    @classmethod
    async def open(cls, ws_url: str, key: str, token: str | None = None) -> Widget:
        conn = await connect(
            f"{ws_url}/widget/ws?inbox={key}", origin=Origin(ORIGIN), open_timeout=TIMEOUT
        )
        self = cls(conn)
        await self.send({"type": "hello", "token": token, "locale": "en"})
        self.welcome = await self.wait("welcome")
        return self

    async def say(self, body: str) -> dict[str, Any]:
        client_id = str(uuid.uuid4())
        await self.send({"type": "message", "client_id": client_id, "body": body})
        return await self.wait("ack", lambda f: f["client_id"] == client_id)


class Console(WsClient):
    welcome: dict[str, Any]

    @classmethod
    async def open(cls, ws_url: str, cookie: str, presence: str = "available") -> Console:
        conn = await connect(
            f"{ws_url}/console/ws", additional_headers={"Cookie": cookie}, open_timeout=TIMEOUT
        )
        self = cls(conn)
        await self.send({"type": "hello", "presence": presence})
        self.welcome = await self.wait("welcome")
        return self
