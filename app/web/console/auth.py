"""Sign-in, workspace choice, sign-out, profile and password change."""

from __future__ import annotations

from itsdangerous import BadSignature, URLSafeTimedSerializer
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from app.context import AppContext
from app.models import Agent
from app.services import workspaces
from app.services.agent_auth import authenticate_agent
from app.services.errors import Invalid
from app.services.passwords import verify_password
from app.settings import Settings
from app.web.console.base import Visit, console_route, form_data, render
from app.web.console.i18n import LOCALES, pick_locale, translate
from app.web.console.ratelimit import LoginLimiter
from app.web.origin import same_origin
from app.web.sessions import clear_session_cookie, read_session, set_session_cookie

CHOICE_MAX_AGE = 300
MAX_EMAIL = 254
MAX_PASSWORD = 1024


def limiter(ctx: AppContext) -> LoginLimiter:
    found = ctx.extras.get("console.login_limiter")
    if not isinstance(found, LoginLimiter):
        found = LoginLimiter()
        ctx.extras["console.login_limiter"] = found
    return found


def _choice_serializer(settings: Settings) -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(settings.secret, salt="console-workspace-choice")


def safe_next(value: str | None) -> str:
    """Only local console paths; never `//evil` or absolute URLs."""
    if value and value.startswith("/console") and not value.startswith("//"):
        return value
    return "/console"


def client_ip(request: Request) -> str:
    return request.client.host if request.client else "unknown"


def _login_page(
    request: Request, status: int = 200, error: str | None = None, email: str = ""
) -> Response:
    locale = pick_locale(None, request.headers.get("accept-language"))
    return render(
        request,
        "console/login.html",
        locale,
        status,
        error=error,
        email=email,
        next=safe_next(request.query_params.get("next")),
    )


async def login_get(request: Request) -> Response:
    ctx: AppContext = request.app.state.ctx
    if read_session(request, ctx.settings) is not None:
        async with ctx.read_sessions() as session:
            from app.web.sessions import session_actor

            if await session_actor(request, session) is not None:
                return RedirectResponse(
                    safe_next(request.query_params.get("next")), status_code=303
                )
    return _login_page(request)


def _signed_in(request: Request, settings: Settings, agent: Agent, target: str) -> Response:
    response = RedirectResponse(safe_next(target), status_code=303)
    set_session_cookie(response, settings, agent)
    return response


async def login_post(request: Request) -> Response:
    ctx: AppContext = request.app.state.ctx
    settings = ctx.settings
    locale = pick_locale(None, request.headers.get("accept-language"))
    if not same_origin(request, settings.public_url):
        return render(
            request,
            "console/error.html",
            locale,
            403,
            message=translate(locale, "error.origin"),
            visit=None,
        )
    form = await form_data(request, max_fields=10)
    email = form.get("email", "").strip()[:MAX_EMAIL]
    password = form.get("password", "")[:MAX_PASSWORD]
    target = form.get("next", "/console")
    ip = client_ip(request)
    limits = limiter(ctx)
    wait = limits.retry_after(ip, email)
    if wait:
        response = _login_page(
            request, 429, translate(locale, "login.rate_limited", seconds=wait), email
        )
        response.headers["Retry-After"] = str(wait)
        return response
    async with ctx.uow() as uow:
        agents = await authenticate_agent(uow.session, email, password) if email else []
        await uow.commit()
    if not agents:
        limits.failed(ip, email)
        return _login_page(request, 401, translate(locale, "login.failed"), email)
    limits.succeeded(ip, email)
    if len(agents) == 1:
        return _signed_in(request, settings, agents[0], target)
    # Several workspaces share this email: a short-lived signed ticket names the agents
    # that passed the password check, so the choice page needs no second password.
    choice = _choice_serializer(settings).dumps({"ids": [a.id for a in agents]})
    async with ctx.read_sessions() as session:
        names = await workspaces.workspace_names(session, [a.workspace_id for a in agents])
    options = [{"agent_id": a.id, "workspace": names.get(a.workspace_id, "?")} for a in agents]
    options.sort(key=lambda o: str(o["workspace"]))
    return render(
        request,
        "console/choose_workspace.html",
        locale,
        choice=choice,
        options=options,
        next=safe_next(target),
    )


async def choose_post(request: Request) -> Response:
    ctx: AppContext = request.app.state.ctx
    settings = ctx.settings
    locale = pick_locale(None, request.headers.get("accept-language"))
    if not same_origin(request, settings.public_url):
        return render(
            request,
            "console/error.html",
            locale,
            403,
            message=translate(locale, "error.origin"),
            visit=None,
        )
    form = await form_data(request, max_fields=10)
    try:
        data = _choice_serializer(settings).loads(form.get("choice", ""), max_age=CHOICE_MAX_AGE)
        allowed = [int(i) for i in data["ids"]]
        chosen = int(form.get("agent_id", "0"))
    except (BadSignature, KeyError, TypeError, ValueError):
        return _login_page(request, 400, translate(locale, "login.expired"))
    if chosen not in allowed:
        return _login_page(request, 400, translate(locale, "login.expired"))
    async with ctx.read_sessions() as session:
        agent = await session.get(Agent, chosen)
    if agent is None or not agent.is_active:
        return _login_page(request, 400, translate(locale, "login.expired"))
    return _signed_in(request, settings, agent, form.get("next", "/console"))


@console_route("/console/logout", methods=("POST",))
async def logout(visit: Visit) -> Response:
    response = RedirectResponse("/console/login", status_code=303)
    clear_session_cookie(response)
    return response


@console_route("/console/profile")
async def profile(visit: Visit) -> Response:
    flash = visit.request.query_params.get("saved")
    message = {"1": visit.t("profile.saved"), "pw": visit.t("password.changed")}.get(flash or "")
    return visit.render("console/profile.html", message=message, locales=LOCALES)


@console_route("/console/profile", methods=("POST",))
async def profile_post(visit: Visit) -> Response:
    form = await form_data(visit.request, max_fields=10)
    locale = form.get("locale", visit.agent.locale)
    if locale not in LOCALES:
        raise Invalid("unknown language")
    name = " ".join(form.get("name", visit.agent.name).split())[:200] or visit.agent.name
    assert visit.agent.id is not None
    await workspaces.do_update_agent(
        visit.uow, visit.actor, visit.agent.id, locale=locale, name=name
    )
    await visit.uow.commit()
    return RedirectResponse("/console/profile?saved=1", status_code=303)


@console_route("/console/password", methods=("POST",))
async def password_post(visit: Visit) -> Response:
    form = await form_data(visit.request, max_fields=10)
    current = form.get("current", "")[:MAX_PASSWORD]
    new = form.get("new", "")[:MAX_PASSWORD]
    error = None
    if not verify_password(visit.agent.password_hash, current):
        error = visit.t("password.wrong")
    elif new != form.get("confirm", ""):
        error = visit.t("password.mismatch")
    if error is None:
        try:
            workspaces.check_password(new)
        except Invalid as exc:
            error = exc.message
    if error is not None:
        return visit.render("console/profile.html", status=422, error=error, locales=LOCALES)
    assert visit.agent.id is not None
    agent = await workspaces.do_update_agent(visit.uow, visit.actor, visit.agent.id, password=new)
    await visit.uow.commit()
    # The fingerprint in every other session cookie no longer matches: they are signed out.
    response = RedirectResponse("/console/profile?saved=pw", status_code=303)
    set_session_cookie(response, visit.settings, agent)
    return response


routes = [
    Route("/console/login", login_get, methods=["GET"]),
    Route("/console/login", login_post, methods=["POST"]),
    Route("/console/login/workspace", choose_post, methods=["POST"]),
    logout,
    profile,
    profile_post,
    password_post,
]
