"""API bearer tokens: 256 random bits shown once, stored as a SHA-256 digest."""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Sequence

from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from app.events import UnitOfWork
from app.models import ActorType, ApiToken, Role
from app.models.base import utcnow
from app.services import audit
from app.services.actors import Actor
from app.services.errors import Invalid, NotFound

TOKEN_PREFIX = "hd_"


def digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


async def do_create_token(
    uow: UnitOfWork, actor: Actor, *, name: str, role: Role
) -> tuple[ApiToken, str]:
    actor.require(Role.admin)
    name = name.strip()
    if not name or len(name) > 100:
        raise Invalid("token name must be 1 to 100 characters")
    plaintext = TOKEN_PREFIX + secrets.token_urlsafe(32)
    token = ApiToken(
        workspace_id=actor.workspace_id,
        name=name,
        token_hash=digest(plaintext),
        prefix=plaintext[:10],
        role=role,
    )
    uow.session.add(token)
    await uow.session.flush()
    audit.record(uow, actor, "token.create", "api_token", token.id, {"name": name, "role": role})
    return token, plaintext


async def list_tokens(session: AsyncSession, workspace_id: int) -> Sequence[ApiToken]:
    stmt = select(ApiToken).where(ApiToken.workspace_id == workspace_id).order_by(col(ApiToken.id))
    return (await session.exec(stmt)).all()


async def get_token(session: AsyncSession, workspace_id: int, token_id: int) -> ApiToken:
    token = await session.get(ApiToken, token_id)
    if token is None or token.workspace_id != workspace_id:
        raise NotFound("token not found")
    return token


async def do_revoke_token(uow: UnitOfWork, actor: Actor, token_id: int) -> ApiToken:
    actor.require(Role.admin)
    token = await get_token(uow.session, actor.workspace_id, token_id)
    token.revoked_at = token.revoked_at or utcnow()
    uow.session.add(token)
    audit.record(uow, actor, "token.revoke", "api_token", token.id, {})
    return token


async def authenticate(session: AsyncSession, plaintext: str) -> Actor | None:
    """The actor behind a bearer token, or None. Touches last_used_at at most once a minute."""
    if not plaintext.startswith(TOKEN_PREFIX) or len(plaintext) > 100:
        return None
    stmt = select(ApiToken).where(ApiToken.token_hash == digest(plaintext))
    token = (await session.exec(stmt)).first()
    if token is None or token.revoked_at is not None:
        return None
    now = utcnow()
    if token.last_used_at is None or (now - token.last_used_at).total_seconds() > 60:
        token.last_used_at = now
        session.add(token)
        await session.commit()
    return Actor(
        workspace_id=token.workspace_id,
        type=ActorType.api,
        id=token.id,
        name=f"API: {token.name}",
        role=token.role,
    )
