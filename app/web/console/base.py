"""The plumbing every console route shares: who is signed in, templates, security headers.

`console_route` wraps a handler so that it (1) refuses unsafe requests from another
origin, (2) resolves the signed session into an agent, redirecting to the sign-in
page (or answering 401 for JSON), (3) enforces a minimum role, (4) owns one unit of
work, and (5) turns domain errors into a page or a JSON error with the right status.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn
from urllib.parse import quote

from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import Route

from app.context import AppContext
from app.events import UnitOfWork
from app.models import Agent, Role
from app.services.actors import Actor
from app.services.agent_auth import actor_for_session
from app.services.errors import ServiceError
from app.settings import Settings
from app.web.console.i18n import catalog, pick_locale, translate
from app.web.origin import UNSAFE_METHODS, same_origin
from app.web.sessions import read_session

TEMPLATES = Path(__file__).resolve().parents[2] / "templates"
STATIC = Path(__file__).resolve().parents[2] / "static"

env = Environment(
    loader=FileSystemLoader(str(TEMPLATES)),
    autoescape=select_autoescape(enabled_extensions=("html",), default=True),
    trim_blocks=True,
    lstrip_blocks=True,
)


def security_headers(request: Request) -> dict[str, str]:
    host = request.headers.get("host", "")
    ws = f" ws://{host} wss://{host}" if host else ""
    # Inline scripts are never allowed: page data travels in <script type=application/json>.
    # Email HTML lives in srcdoc iframes, which inherit this policy: no remote images.
    csp = (
        "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
        "img-src 'self' data: blob:; media-src 'self' blob:; font-src 'self'; "
        f"connect-src 'self'{ws}; frame-src 'self'; child-src 'self'; "
        "frame-ancestors 'none'; base-uri 'none'; form-action 'self'; object-src 'none'"
    )
    return {
        "Content-Security-Policy": csp,
        "X-Frame-Options": "DENY",
        "X-Content-Type-Options": "nosniff",
        "Referrer-Policy": "same-origin",
        "Cache-Control": "no-store",
    }


@dataclass
class Visit:
    """One console request by a signed-in agent."""

    request: Request
    ctx: AppContext
    uow: UnitOfWork
    actor: Actor
    agent: Agent
    locale: str

    @property
    def settings(self) -> Settings:
        return self.ctx.settings

    def t(self, key: str, **values: object) -> str:
        return translate(self.locale, key, **values)

    def render(self, template: str, status: int = 200, **context: Any) -> HTMLResponse:
        return render(self.request, template, self.locale, status, visit=self, **context)


def ice_for_agent(visit: Visit) -> list[dict[str, str]]:
    """The STUN/TURN servers for this agent's call legs, TURN credentials fresh."""
    return visit.settings.ice.for_peer(f"w{visit.actor.workspace_id}-agent{visit.actor.id}")


def render(
    request: Request, template: str, locale: str, status: int = 200, **context: Any
) -> HTMLResponse:
    visit: Visit | None = context.get("visit")

    def t(key: str, **values: object) -> str:
        return translate(locale, key, **values)

    boot = {
        "locale": locale,
        "strings": catalog(locale),
        **(context.pop("boot", None) or {}),
    }
    if visit is not None:
        boot["me"] = {
            "id": visit.agent.id,
            "name": visit.agent.name,
            "role": visit.agent.role.value,
            "team_ids": sorted(visit.actor.team_ids),
            "capacity": visit.agent.capacity,
        }
        # The call UI's STUN/TURN servers; /console/api/ice gives fresh TURN credentials
        # to a console that has been open for long.
        boot["ice_servers"] = ice_for_agent(visit)
    html = env.get_template(template).render(
        request=request,
        t=t,
        locale=locale,
        path=request.url.path,
        boot_json=json.dumps(boot, default=str),
        Role=Role,
        **context,
    )
    return HTMLResponse(html, status_code=status, headers=security_headers(request))


def wants_json(request: Request) -> bool:
    return request.url.path.startswith("/console/api/")


def error_page(request: Request, locale: str, status: int, message: str) -> Response:
    if wants_json(request):
        code = {401: "unauthorized", 403: "forbidden", 404: "not_found"}.get(status, "error")
        return JSONResponse(
            {"error": {"code": code, "message": message, "details": None}}, status_code=status
        )
    return render(request, "console/error.html", locale, status, message=message, visit=None)


Handler = Callable[[Visit], Awaitable[Response]]


def console_route(
    path: str, *, methods: tuple[str, ...] = ("GET",), role: Role = Role.agent
) -> Callable[[Handler], Route]:
    def decorate(handler: Handler) -> Route:
        @functools.wraps(handler)
        async def endpoint(request: Request) -> Response:
            ctx: AppContext = request.app.state.ctx
            settings = ctx.settings
            fallback = pick_locale(None, request.headers.get("accept-language"))
            if request.method in UNSAFE_METHODS and not same_origin(request, settings.public_url):
                return error_page(request, fallback, 403, translate(fallback, "error.origin"))
            async with ctx.uow() as uow:
                data = read_session(request, settings)
                actor = None
                if data is not None:
                    actor = await actor_for_session(
                        uow.session, int(data["a"]), int(data["w"]), str(data["f"])
                    )
                if actor is None:
                    if wants_json(request) or request.method != "GET":
                        return error_page(request, fallback, 401, "sign in first")
                    target = request.url.path + (
                        "?" + request.url.query if request.url.query else ""
                    )
                    return RedirectResponse(
                        "/console/login?next=" + quote(target, safe=""), status_code=303
                    )
                agent = await uow.session.get(Agent, actor.id)
                assert agent is not None
                locale = pick_locale(agent.locale)
                if not actor.role.at_least(role):
                    return error_page(request, locale, 403, translate(locale, "error.forbidden"))
                visit = Visit(request, ctx, uow, actor, agent, locale)
                try:
                    return await handler(visit)
                except ServiceError as exc:
                    await uow.rollback()
                    message = exc.message
                    if exc.status == 404:
                        message = translate(locale, "error.not_found")
                    return error_page(request, locale, exc.status, message)

        return Route(path, endpoint, methods=list(methods), name=handler.__name__)

    return decorate


async def form_data(request: Request, max_fields: int = 200) -> dict[str, str]:
    """Text fields of a posted form (repeated names keep the last value)."""
    form = await request.form(max_files=0, max_fields=max_fields)
    return {k: v for k, v in form.items() if isinstance(v, str)}


async def json_body(request: Request) -> dict[str, Any]:
    try:
        data = await request.json()
    except ValueError:
        raise_invalid("the body must be a JSON object")
    if not isinstance(data, dict):
        raise_invalid("the body must be a JSON object")
    body: dict[str, Any] = data
    return body


def raise_invalid(message: str) -> NoReturn:
    from app.services.errors import Invalid

    raise Invalid(message)
