"""REST API v1, mounted at /api/v1."""

from __future__ import annotations

from fastapi import FastAPI

from app import __version__
from app.context import AppContext
from app.web.api import tickets
from app.web.api.errors import install_error_handlers

DESCRIPTION = """
The integration surface of the help desk: tickets and their timelines, contacts,
agents, teams, inboxes, webhooks and API tokens.

Authenticate with `Authorization: Bearer <token>` (create one with
`helpdesk create-token` or on the admin pages). Every object belongs to the
token's workspace; objects of other workspaces answer 404.

Errors always have the shape `{"error": {"code": "...", "message": "...", "details": ...}}`.
Lists return `{"items": [...], "next_cursor": "..."}`; pass `cursor` to page on.
"""


def build_api(ctx: AppContext) -> FastAPI:
    api = FastAPI(
        title="Helpdesk API",
        version=__version__,
        description=DESCRIPTION,
        openapi_url="/openapi.json",
        docs_url=None,
        redoc_url=None,
        servers=[{"url": "/api/v1"}],
    )
    api.state.ctx = ctx
    install_error_handlers(api)
    for module in ROUTERS:
        api.include_router(module.router)
    return api


ROUTERS = [tickets]
