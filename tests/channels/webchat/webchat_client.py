"""Test clients for the widget and agent websockets (real `websockets` connections)."""

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
TIMEOUT = 10.0


def session_cookie(settings: Settings, agent_id: int, workspace_id: int, fingerprint: str) -> str:
    """The console cookie exactly as the sign-in page sets it."""
    value = _serializer(settings).dumps({"a": agent_id, "w": workspace_id, "f": fingerprint})
    return f"{COOKIE}={value}"


class Client:
    def __init__(self, conn: ClientConnection) -> None:
        self.conn = conn
        self.frames: list[dict[str, Any]] = []  # everything received, in order
        self.pending: list[dict[str, Any]] = []  # received but not yet matched by expect()

    async def send(self, frame: dict[str, Any]) -> None:
        await self.conn.send(json.dumps(frame))

    async def recv(self, wait: float = TIMEOUT) -> dict[str, Any]:
        raw = await asyncio.wait_for(self.conn.recv(), wait)
        frame: dict[str, Any] = json.loads(raw)
        self.frames.append(frame)
        return frame

    async def expect(
        self,
        kind: str,
        pred: Callable[[dict[str, Any]], bool] | None = None,
        wait: float = TIMEOUT,
    ) -> dict[str, Any]:
        """The first unmatched frame of `kind` (matching `pred`), reading more as needed."""

        def match(frame: dict[str, Any]) -> bool:
            return frame["type"] == kind and (pred is None or pred(frame))

        for i, frame in enumerate(self.pending):
            if match(frame):
                return self.pending.pop(i)
        async with asyncio.timeout(wait):
            while True:
                frame = await self.recv(wait)
                if match(frame):
                    return frame
                self.pending.append(frame)

    def events(self, ticket: int | None = None) -> list[dict[str, Any]]:
        return [
            f
            for f in self.frames
            if f["type"] == "event" and (ticket is None or f["ticket"] == ticket)
        ]

    async def close(self) -> None:
        await self.conn.close()


class Widget(Client):
    welcome: dict[str, Any]

    @classmethod
    async def open(
        cls,
        ws_url: str,
        key: str,
        *,
        token: str | None = None,
        after_seq: int | None = None,
        ticket: int | None = None,
        origin: str = ORIGIN,
        identity: dict[str, Any] | None = None,
    ) -> Widget:
        conn = await connect(
            f"{ws_url}/widget/ws?inbox={key}", origin=Origin(origin), open_timeout=TIMEOUT
        )
        self = cls(conn)
        hello: dict[str, Any] = {
            "type": "hello",
            "token": token,
            "after_seq": after_seq,
            "locale": "en",
        }
        if ticket is not None:
            hello["ticket"] = ticket
        if identity is not None:
            hello["identity"] = identity
        await self.send(hello)
        self.welcome = await self.expect("welcome")
        return self

    async def say(self, body: str, client_id: str | None = None, **extra: Any) -> dict[str, Any]:
        client_id = client_id or str(uuid.uuid4())
        await self.send({"type": "message", "client_id": client_id, "body": body, **extra})
        return await self.expect("ack", lambda f: f["client_id"] == client_id)


class Agent(Client):
    welcome: dict[str, Any]

    @classmethod
    async def open(
        cls,
        ws_url: str,
        *,
        cookie: str | None = None,
        bearer: str | None = None,
        origin: str | None = None,
        presence: str = "available",
    ) -> Agent:
        headers: dict[str, str] = {}
        if cookie:
            headers["Cookie"] = cookie
        if bearer:
            headers["Authorization"] = f"Bearer {bearer}"
        conn = await connect(
            f"{ws_url}/console/ws",
            additional_headers=headers,
            origin=Origin(origin) if origin else None,
            open_timeout=TIMEOUT,
        )
        self = cls(conn)
        await self.send({"type": "hello", "presence": presence})
        self.welcome = await self.expect("welcome")
        return self

    async def reply(self, ticket: int, body: str, client_id: str | None = None) -> dict[str, Any]:
        client_id = client_id or str(uuid.uuid4())
        await self.send({"type": "reply", "client_id": client_id, "ticket": ticket, "body": body})
        return await self.expect("ack", lambda f: f["client_id"] == client_id)
