"""create_app(settings) -> the ASGI application; the lifespan owns every moving part."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.routing import BaseRoute, Mount

from app.context import AppContext, Service
from app.loop_lag import LoopLagMonitor
from app.services import email_outbox
from app.settings import Settings, load_settings
from app.wal_checkpoint import WalCheckpointer
from app.web import api_docs, health, metrics, widget_assets, widget_http
from app.web.api import build_api
from app.web.console import console_routes
from app.web.limits import BodyLimit
from app.web.metrics import MetricsMiddleware
from app.web.sessions import session_actor
from app.web.ws_direct import DirectWebsockets
from channels.voice.signaling import VoiceChannel
from channels.webchat import ENDPOINTS as WEBCHAT_ENDPOINTS
from channels.webchat import WebchatHub
from channels.webchat import routes as webchat_routes

log = logging.getLogger(__name__)


def build_services(settings: Settings) -> list[Service]:
    """Channels and workers started with the app, in start order."""
    services: list[Service] = []
    if settings.webhook_worker:
        from app.services.webhooks import WebhookWorker

        services.append(WebhookWorker())
    if settings.smtp_enabled:
        from channels.email.smtp_in import SmtpListener

        services.append(SmtpListener())
    from channels.email.imap_in import ImapPoller
    from channels.email.send import OutboxWorker
    from channels.email.widget_presence import WidgetPresence

    # WidgetPresence: whether a chat answer must also be mailed (customer not connected).
    services.extend([OutboxWorker(), ImapPoller(), WidgetPresence()])
    return services


def create_app(settings: Settings | None = None, ctx: AppContext | None = None) -> Starlette:
    settings = settings or load_settings()
    ctx = ctx or AppContext(settings)
    # Agent replies on email tickets write their outbox row in the reply's transaction,
    # whether or not this process runs the sending worker.
    email_outbox.install()
    api = build_api(ctx)
    api.state.settings = settings
    # The API also accepts a signed-in console agent (cookie) when no bearer token is sent.
    api.state.session_actor = session_actor
    webchat = WebchatHub(ctx)
    # Voice adds `call.*` frames to the webchat websockets (registered when it starts).
    voice = VoiceChannel(ctx)

    @asynccontextmanager
    async def lifespan(_app: Starlette) -> AsyncIterator[None]:
        workers = [*build_services(settings), webchat, voice] if settings.workers_enabled else []
        # The WAL upkeep belongs to the database, not to the workers: a web-only
        # process writes too.
        await ctx.start([WalCheckpointer(), LoopLagMonitor(), *workers])
        try:
            yield
        finally:
            await ctx.stop()

    routes: list[BaseRoute] = [
        *health.routes,
        *metrics.routes,
        Mount("/api/v1", app=api),
        *api_docs.routes,
        *console_routes(),
        *widget_assets.routes,
        *widget_http.routes,
        *webchat_routes(),
    ]
    app = Starlette(
        routes=routes,
        lifespan=lifespan,
        middleware=[
            # Outermost: idle chat websockets then hold no other layer (app/web/ws_direct).
            Middleware(DirectWebsockets, endpoints=WEBCHAT_ENDPOINTS),
            Middleware(MetricsMiddleware),
            Middleware(
                BodyLimit,
                max_bytes=settings.max_body_bytes,
                max_upload_bytes=settings.max_upload_bytes,
            ),
        ],
    )
    app.state.ctx = ctx
    app.state.settings = settings
    app.state.api = api
    app.state.webchat = webchat
    app.state.voice = voice
    return app
