"""The agent console: server-rendered pages plus plain JavaScript modules (no build step)."""

from __future__ import annotations

from starlette.routing import BaseRoute, Mount
from starlette.staticfiles import StaticFiles

from app.web.console import admin, auth, calls, data, pages
from app.web.console.base import STATIC


def console_routes() -> list[BaseRoute]:
    """Routes with full /console paths (no Mount at /console, so /console/ws stays free)."""
    return [
        *auth.routes,
        *pages.routes,
        *data.routes,
        *calls.routes,
        *admin.routes,
        Mount("/console/static", app=StaticFiles(directory=STATIC / "console"), name="console"),
    ]
