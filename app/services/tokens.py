"""API bearer tokens: 256 random bits shown once, stored as a SHA-256 digest."""

from __future__ import annotations

import hashlib
import secrets
import weakref
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import partial
from typing import Any

from sqlalchemy import update
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from app.events import UnitOfWork
from app.models import ActorType, ApiToken, Role
from app.models.base import utcnow
from app.services import audit
from app.services.actors import Actor
from app.services.errors import Invalid, NotFound
from app.services.expiring import ExpiringCache

TOKEN_PREFIX = "hd_"
# How long another process's revocation may take to reach this one (see TokenCache).
TOKEN_CACHE_TTL_SECONDS = 5.0
TOUCH_INTERVAL_SECONDS = 60


@dataclass
class _Known:
    actor: Actor
    token_id: int
    last_used_at: datetime | None
    expires: float


class TokenCache(ExpiringCache[_Known]):
    """Tokens this process authenticated recently, by digest: saves a SELECT per request.

    Only valid, unrevoked tokens are kept, for at most `ttl` seconds. A revocation
    committed in this process evicts the token from every cache at once
    (`do_revoke_token`); one committed elsewhere (another node, the CLI) takes
    effect here within `ttl` seconds, when the entry is looked up again.
    """

    def __init__(self, ttl: float = TOKEN_CACHE_TTL_SECONDS, **kwargs: Any) -> None:
        super().__init__(ttl, **kwargs)
        _caches.add(self)

    def put(self, key: str, known: _Known) -> None:
        self.store(key, known)


_caches: weakref.WeakSet[TokenCache] = weakref.WeakSet()


def _evict(key: str) -> None:
    for cache in list(_caches):
        cache.discard(key)


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
    # Revocation takes effect at once in this process (other processes: TokenCache.ttl).
    uow.after_commit.append(partial(_evict, token.token_hash))
    return token


async def authenticate(
    session: AsyncSession, plaintext: str, cache: TokenCache | None = None
) -> Actor | None:
    """The actor behind a bearer token, or None. Touches last_used_at at most once a minute
    (per process); with a `cache`, a recently seen token costs no query."""
    if not plaintext.startswith(TOKEN_PREFIX) or len(plaintext) > 100:
        return None
    key = digest(plaintext)
    known = cache.get(key) if cache is not None else None
    if known is None:
        stmt = select(ApiToken).where(ApiToken.token_hash == key)
        token = (await session.exec(stmt)).first()
        if token is None or token.revoked_at is not None:
            return None
        assert token.id is not None
        actor = Actor(
            workspace_id=token.workspace_id,
            type=ActorType.api,
            id=token.id,
            name=f"API: {token.name}",
            role=token.role,
        )
        known = _Known(actor, token.id, token.last_used_at, expires=0.0)
        if cache is not None:
            known.expires = cache.clock() + cache.ttl
            cache.put(key, known)
    now = utcnow()
    last = known.last_used_at
    if last is None or (now - last).total_seconds() > TOUCH_INTERVAL_SECONDS:
        known.last_used_at = now
        # End the read first, so the UPDATE opens its own transaction: on SQLite a
        # deferred (read-only) transaction cannot safely upgrade a stale snapshot.
        await session.commit()
        await session.exec(
            update(ApiToken).where(col(ApiToken.id) == known.token_id).values(last_used_at=now)
        )
        await session.commit()
    return known.actor
