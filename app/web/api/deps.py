"""Dependencies: the app context, a unit of work, and who is calling."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import Depends, HTTPException, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlmodel.ext.asyncio.session import AsyncSession

from app.context import AppContext
from app.events import UnitOfWork
from app.models import Role
from app.services import tokens
from app.services.actors import Actor
from app.services.errors import Forbidden

bearer = HTTPBearer(auto_error=False, description="An API token: `Authorization: Bearer hd_…`")


def get_ctx(request: Request) -> AppContext:
    ctx: AppContext = request.app.state.ctx
    return ctx


Ctx = Annotated[AppContext, Depends(get_ctx)]


async def get_uow(ctx: Ctx) -> AsyncIterator[UnitOfWork]:
    async with ctx.uow() as uow:
        yield uow


Uow = Annotated[UnitOfWork, Depends(get_uow)]


async def get_session(uow: Uow) -> AsyncSession:
    return uow.session


Session = Annotated[AsyncSession, Depends(get_session)]


async def current_actor(
    request: Request,
    uow: Uow,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
) -> Actor:
    """A bearer token, or else a signed-in console agent (session cookie)."""
    actor: Actor | None = None
    if credentials is not None:
        actor = await tokens.authenticate(uow.session, credentials.credentials)
    else:
        resolver = getattr(request.app.state, "session_actor", None)
        if resolver is not None:
            actor = await resolver(request, uow.session)
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

    return Depends(_check)


AdminActor = Annotated[Actor, require(Role.admin)]
SupervisorActor = Annotated[Actor, require(Role.supervisor)]
