"""REST API v1, mounted at /api/v1."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.routing import APIRoute

from app import __version__
from app.context import AppContext
from app.web.api import (
    agents,
    attachments,
    contacts,
    emails,
    inbox_imap,
    inboxes,
    search,
    tickets,
    tokens,
    webhooks,
)
from app.web.api.errors import install_error_handlers
from app.web.ratelimit import RateLimit

DESCRIPTION = """
The integration surface of the help desk: tickets and their timelines, contacts,
agents, teams, inboxes, webhooks and API tokens.

Authenticate with `Authorization: Bearer <token>` (create one with
`helpdesk create-token` or on the admin pages). Every object belongs to the
token's workspace; objects of other workspaces answer 404. Operations marked
`x-required-role` need at least that role (agent < supervisor < admin).

Errors always have the shape `{"error": {"code": "...", "message": "...", "details": ...}}`.
Lists return `{"items": [...], "next_cursor": "..."}`; pass `cursor` to page on.
Each caller has a request budget; past it the API answers 429 with `Retry-After`.
"""


def _required_role(dependant: Any) -> str | None:
    """The role a route's dependencies demand (set by `deps.require`), if any."""
    for dep in dependant.dependencies:
        role = getattr(dep.call, "required_role", None)
        if role is not None:
            return str(role.value)
        found = _required_role(dep)
        if found is not None:
            return found
    return None


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
    for router in ROUTERS:
        for route in router.routes:
            if isinstance(route, APIRoute):
                role = _required_role(route.dependant)
                if role is not None:
                    route.openapi_extra = {**(route.openapi_extra or {}), "x-required-role": role}
        api.include_router(router)
    api.add_middleware(
        RateLimit, rate=ctx.settings.api_rate_limit, burst=ctx.settings.api_rate_burst
    )
    return api


ROUTERS = [
    tickets.router,
    attachments.router,
    contacts.router,
    agents.agents_router,
    agents.teams_router,
    inboxes.router,
    tokens.router,
    webhooks.router,
    search.router,
    emails.router,
    inbox_imap.router,
]
