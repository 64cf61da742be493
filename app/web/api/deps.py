"""Dependencies: the app context, a unit of work, and who is calling."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import Depends, HTTPException, Request
from fastapi.security import APIKeyCookie, HTTPAuthorizationCredentials, HTTPBearer
from sqlmodel.ext.asyncio.session import AsyncSession

from app.context import AppContext
from app.events import UnitOfWork
from app.models import Role
from app.services import tokens
from app.services.actors import Actor
from app.services.errors import Forbidden
from app.web.origin import UNSAFE_METHODS, same_origin

bearer = HTTPBearer(auto_error=False, description="An API token: `Authorization: Bearer hd_…`")
# Documented so the spec shows the console's way in; the value is read by `session_actor`.
console_cookie = APIKeyCookie(
    name="hd_session",
    auto_error=False,
    description="The console's signed session cookie (unsafe methods also need a same-origin "
    "`Origin` header).",
)
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def _same_origin(request: Request) -> bool:
    """Cookie-authenticated writes must come from our own pages (CSRF defence)."""
    origin = request.headers.get("origin")
    if not origin:
        return False
    settings = getattr(request.app.state, "settings", None)
    allowed = {f"{request.url.scheme}://{request.headers.get('host', '')}"}
    if settings is not None:
        allowed.add(settings.public_url.rstrip("/"))
    return origin.rstrip("/") in allowed


async def get_ctx(request: Request) -> AppContext:
    # async on purpose: FastAPI runs plain `def` dependencies in a worker thread.
    ctx: AppContext = request.app.state.ctx
    return ctx


Ctx = Annotated[AppContext, Depends(get_ctx)]


async def get_uow(request: Request, ctx: Ctx) -> AsyncIterator[UnitOfWork]:
    # Safe methods only read: on SQLite they then skip the write lock (app.db).
    async with ctx.uow(read_only=request.method in SAFE_METHODS) as uow:
        yield uow


Uow = Annotated[UnitOfWork, Depends(get_uow)]


async def get_session(uow: Uow) -> AsyncSession:
    return uow.session


Session = Annotated[AsyncSession, Depends(get_session)]


def _token_cache(ctx: AppContext) -> tokens.TokenCache:
    cache = ctx.extras.get("token_cache")
    if cache is None:
        cache = ctx.extras["token_cache"] = tokens.TokenCache()
    assert isinstance(cache, tokens.TokenCache)
    return cache


async def current_actor(
    request: Request,
    ctx: Ctx,
    uow: Uow,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
    _cookie: Annotated[str | None, Depends(console_cookie)],
) -> Actor:
    """A bearer token, or else a signed-in console agent (session cookie)."""
    actor: Actor | None = None
    if credentials is not None:
        actor = await tokens.authenticate(uow.session, credentials.credentials, _token_cache(ctx))
    else:
        resolver = getattr(request.app.state, "session_actor", None)
        if resolver is not None:
            actor = await resolver(request, uow.session)
        if actor is not None and request.method not in SAFE_METHODS and not _same_origin(request):
            raise Forbidden("cookie-authenticated writes need a same-origin Origin header")
        if (
            actor is not None
            and request.method in UNSAFE_METHODS
            and not same_origin(request, request.app.state.settings.public_url)
        ):
            # A cookie rides along on cross-site requests; only our own pages may write.
            raise HTTPException(status_code=403, detail="cross-origin request refused")
    if actor is None:
        raise HTTPException(
            status_code=401,
            detail="a valid bearer token is required",
            headers={"WWW-Authenticate": "Bearer"},
        )
    request.state.actor = actor
    return actor


CurrentActor = Annotated[Actor, Depends(current_actor)]


def require(role: Role) -> object:
    async def _check(actor: CurrentActor) -> Actor:
        if not actor.role.at_least(role):
            raise Forbidden(f"this action needs the {role.value} role")
        return actor

    # build_api reads this to publish `x-required-role` on every route that uses it.
    _check.required_role = role  # type: ignore[attr-defined]
    return Depends(_check)


AdminActor = Annotated[Actor, require(Role.admin)]
SupervisorActor = Annotated[Actor, require(Role.supervisor)]
