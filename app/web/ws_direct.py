"""Websocket routes served straight from the outermost middleware.

A long-lived websocket keeps every ASGI layer it passed through alive for its whole
life: each middleware's coroutine frame and closures, the router's, and Starlette's
exception wrappers, about 5 KB per connection. With ten thousand idle widgets on a
node that is the largest share we control. These endpoints handle their own errors
(close codes) and need none of those layers, so they skip them; the same routes stay
registered with the router, which serves them whenever this shortcut is absent.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from functools import partial

from starlette.types import ASGIApp, Receive, Scope, Send
from starlette.websockets import WebSocket

from app.web.metrics import CountedSend

Endpoint = Callable[[WebSocket], Awaitable[None]]


class DirectWebsockets:
    """`path -> endpoint` for websocket scopes; everything else goes on to `app`."""

    def __init__(self, app: ASGIApp, endpoints: Mapping[str, Endpoint]) -> None:
        self.app = app
        self.endpoints = dict(endpoints)
        self.routes = {path: partial(str, path) for path in self.endpoints}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        endpoint = self.endpoints.get(scope["path"]) if scope["type"] == "websocket" else None
        if endpoint is None:
            await self.app(scope, receive, send)
            return
        # Counted like routed websockets, under the same gauge and label.
        counted = CountedSend(send, self.routes[scope["path"]])
        try:
            await endpoint(WebSocket(scope, receive, counted))
        finally:
            counted.closed()
