"""Live chat: the widget websocket, the agent websocket, presence and routing loops."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from starlette.routing import BaseRoute, WebSocketRoute
from starlette.websockets import WebSocket

from channels.webchat.agent_ws import agent_endpoint
from channels.webchat.hub import WebchatHub
from channels.webchat.widget_ws import widget_endpoint

ENDPOINTS: dict[str, Callable[[WebSocket], Awaitable[None]]] = {
    "/widget/ws": widget_endpoint,
    "/console/ws": agent_endpoint,
}


def routes() -> list[BaseRoute]:
    return [WebSocketRoute(path, endpoint) for path, endpoint in ENDPOINTS.items()]


__all__ = ["ENDPOINTS", "WebchatHub", "routes"]
