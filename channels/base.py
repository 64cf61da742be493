"""What channels share without importing each other: extra frame types on the websockets.

The live chat channel owns the widget and console websockets; other channels (voice)
add frame types to them. app/main.py registers a :class:`FrameHandler` for a type
prefix (``call.``) in the app context; the websocket code hands every frame of that
prefix, plus its connection's open/close, to the handler through a
:class:`ClientSession` that describes who is connected and how to send to them.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from app.context import AppContext
from app.services.actors import Actor
from app.services.chat import ChatVisitor

Side = Literal["widget", "agent"]
SendFrame = Callable[[dict[str, Any]], Awaitable[None]]

_REGISTRY_KEY = "frame_handlers"


@dataclass(eq=False)
class ClientSession:
    """One websocket connection as seen by a frame handler.

    ``visitor`` (widget) or ``actor`` (console) says who it is; the websocket code
    keeps them current (a visitor's contact appears with their first message)."""

    side: Side
    workspace_id: int
    send: SendFrame
    visitor: ChatVisitor | None = None
    actor: Actor | None = None
    name: str = ""
    locale: str | None = None
    ticket_id: int | None = None  # the widget's current conversation
    conn_id: str = field(default_factory=lambda: uuid.uuid4().hex)
    closed: bool = False


class FrameHandler(Protocol):
    prefix: str

    async def on_open(self, session: ClientSession) -> None: ...

    async def on_frame(self, session: ClientSession, frame: dict[str, Any]) -> None: ...

    async def on_close(self, session: ClientSession) -> None: ...


def register_frame_handler(ctx: AppContext, handler: FrameHandler) -> None:
    handlers: list[FrameHandler] = ctx.extras.setdefault(_REGISTRY_KEY, [])
    handlers.append(handler)


def frame_handler(ctx: AppContext, frame_type: str) -> FrameHandler | None:
    for handler in ctx.extras.get(_REGISTRY_KEY, []):
        if frame_type.startswith(handler.prefix):
            return handler  # type: ignore[no-any-return]
    return None


async def open_session(ctx: AppContext, session: ClientSession) -> None:
    """A connection is ready: handlers may now send to it (e.g. ring an agent)."""
    for handler in list(ctx.extras.get(_REGISTRY_KEY, [])):
        await handler.on_open(session)


async def close_session(ctx: AppContext, session: ClientSession | None) -> None:
    """Tell every handler a connection went away (call legs may depend on it)."""
    if session is None or session.closed:
        return
    session.closed = True
    for handler in list(ctx.extras.get(_REGISTRY_KEY, [])):
        await handler.on_close(session)
