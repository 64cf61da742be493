"""Live chat: the widget websocket, the agent websocket, presence and routing loops."""

from __future__ import annotations

from starlette.routing import BaseRoute, WebSocketRoute

from channels.webchat.agent_ws import agent_endpoint
from channels.webchat.hub import WebchatHub
from channels.webchat.widget_ws import widget_endpoint


def routes() -> list[BaseRoute]:
    return [
        WebSocketRoute("/widget/ws", widget_endpoint),
        WebSocketRoute("/console/ws", agent_endpoint),
    ]


__all__ = ["WebchatHub", "routes"]
