"""create_app(settings) -> the ASGI application; the lifespan owns every moving part."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.routing import BaseRoute, Mount

from app.context import AppContext, Service
from app.settings import Settings, load_settings
from app.web import health
from app.web.api import build_api
from app.web.limits import BodyLimit
from app.web.sessions import session_actor

log = logging.getLogger(__name__)


def build_services(settings: Settings) -> list[Service]:
    """Channels and workers started with the app, in start order."""
    services: list[Service] = []
    return services


def create_app(settings: Settings | None = None, ctx: AppContext | None = None) -> Starlette:
    settings = settings or load_settings()
    ctx = ctx or AppContext(settings)
    api = build_api(ctx)
    api.state.settings = settings
    # The API also accepts a signed-in console agent (cookie) when no bearer token is sent.
    api.state.session_actor = session_actor

    @asynccontextmanager
    async def lifespan(_app: Starlette) -> AsyncIterator[None]:
        await ctx.start(build_services(settings) if settings.workers_enabled else [])
        try:
            yield
        finally:
            await ctx.stop()

    routes: list[BaseRoute] = [
        *health.routes,
        Mount("/api/v1", app=api),
    ]
    app = Starlette(
        routes=routes,
        lifespan=lifespan,
        middleware=[
            Middleware(
                BodyLimit,
                max_bytes=settings.max_body_bytes,
                max_upload_bytes=settings.max_upload_bytes,
            )
        ],
    )
    app.state.ctx = ctx
    app.state.settings = settings
    return app
