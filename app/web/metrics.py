"""Request metrics middleware (pure ASGI) and the /metrics endpoint."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Mount, Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.metrics import (
    CONTENT_TYPE_LATEST,
    HTTP_LATENCY,
    HTTP_REQUESTS,
    WEBSOCKET_CONNECTIONS,
    generate_latest,
    method_label,
)

UNMATCHED = "<unmatched>"


def route_template(scope: Scope, outer_root: str) -> str:
    """The matched route's path template, e.g. ``/api/v1/tickets/{ticket_id}``.

    Starlette's routers record the matched route in ``scope["route"]`` and grow
    ``root_path`` by each Mount's matched prefix; raw paths never become labels.
    """
    route: Any = scope.get("route")
    path = getattr(route, "path", None)
    if not isinstance(path, str):
        return UNMATCHED
    prefix = str(scope.get("root_path", ""))[len(outer_root) :]
    if isinstance(route, Mount):
        # No inner route matched (a 404 under the mount) or the mount serves files:
        # the root path already ends with this mount's own prefix.
        if not prefix.endswith(path):
            return UNMATCHED
        return prefix + "/{path}"
    return prefix + path


class MetricsMiddleware:
    """Counts requests and latency by route template; tracks open websockets."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            await self._http(scope, receive, send)
        elif scope["type"] == "websocket":
            await self._websocket(scope, receive, send)
        else:
            await self.app(scope, receive, send)

    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        outer_root = str(scope.get("root_path", ""))
        started = time.perf_counter()
        status = 500

        async def send_wrapper(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            method = method_label(str(scope.get("method", "")))
            route = route_template(scope, outer_root)
            HTTP_REQUESTS.labels(method, route, str(status)).inc()
            HTTP_LATENCY.labels(method, route).observe(time.perf_counter() - started)

    async def _websocket(self, scope: Scope, receive: Receive, send: Send) -> None:
        outer_root = str(scope.get("root_path", ""))
        counted = CountedSend(send, lambda: route_template(scope, outer_root))
        try:
            await self.app(scope, receive, counted)
        finally:
            counted.closed()


class CountedSend:
    """A websocket's `send` that counts it as open from its accept on; call `closed()`
    when it has ended. `route()` is asked once accepted (the router has matched by
    then). An object, not a closure: thousands of idle websockets each hold one."""

    __slots__ = ("gauge", "route", "send")

    def __init__(self, send: Send, route: Callable[[], str]) -> None:
        self.send = send
        self.route = route
        self.gauge: Any = None

    async def __call__(self, message: Message) -> None:
        await self.send(message)
        if message["type"] == "websocket.accept" and self.gauge is None:
            self.gauge = WEBSOCKET_CONNECTIONS.labels(self.route())
            self.gauge.inc()

    def closed(self) -> None:
        if self.gauge is not None:
            self.gauge.dec()
            self.gauge = None


async def metrics(_request: Request) -> Response:
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)


routes = [Route("/metrics", metrics)]
