"""Read-only transactions (deferred BEGIN on SQLite) and the per-process token cache."""

from __future__ import annotations

import sqlite3
from typing import Any

from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlmodel.ext.asyncio.session import AsyncSession

from app.context import AppContext
from app.services import tokens
from app.services.tokens import TokenCache
from tests.conftest import SeededWorkspace, seed_workspace


def _sqlite_path(ctx: AppContext) -> str:
    database = make_url(ctx.settings.database_url).database
    assert database
    return database


async def _scalar(session: AsyncSession, sql: str) -> Any:
    return (await session.exec(text(sql))).scalar_one()  # type: ignore[call-overload]


def _other_process_write(path: str, sql: str, *params: object) -> None:
    """A write from another connection that refuses to wait for the lock."""
    conn = sqlite3.connect(path, timeout=0, isolation_level=None)
    try:
        conn.execute("BEGIN IMMEDIATE")
        conn.execute(sql, params)
        conn.execute("COMMIT")
    finally:
        conn.close()


async def test_a_read_transaction_does_not_hold_the_write_lock(ctx: AppContext) -> None:
    await seed_workspace(ctx, "acme")
    path = _sqlite_path(ctx)
    async with ctx.uow(read_only=True) as uow:
        assert await _scalar(uow.session, "SELECT count(*) FROM ticket") == 0
        # With BEGIN IMMEDIATE this would fail at once with "database is locked".
        _other_process_write(path, "UPDATE workspace SET name = ? WHERE slug = ?", "A", "acme")
    async with ctx.uow() as uow:
        await _scalar(uow.session, "SELECT 1")
        try:
            _other_process_write(path, "UPDATE workspace SET name = ? WHERE slug = ?", "B", "acme")
        except sqlite3.OperationalError as exc:
            assert "locked" in str(exc)
        else:
            raise AssertionError("a write transaction must hold the write lock")


async def test_touching_last_used_at_from_a_stale_read_snapshot(ctx: AppContext) -> None:
    """A GET's read transaction may be older than the last commit when the token's
    once-a-minute touch is due; upgrading it would fail with SQLITE_BUSY_SNAPSHOT."""
    seeded = await seed_workspace(ctx, "acme")
    path = _sqlite_path(ctx)
    async with ctx.uow(read_only=True) as uow:
        await _scalar(uow.session, "SELECT count(*) FROM api_token")
        _other_process_write(path, "UPDATE workspace SET name = ? WHERE slug = ?", "A", "acme")
        actor = await tokens.authenticate(uow.session, seeded.tokens["admin"], TokenCache())
    assert actor is not None and actor.workspace_id == seeded.id
    async with ctx.uow(read_only=True) as uow:
        token = await tokens.get_token(uow.session, seeded.id, actor.id or 0)
        assert token.last_used_at is not None


def _revoke_elsewhere(ctx: AppContext, seeded: SeededWorkspace, role: str) -> None:
    """Revoked by another process: only the database knows."""
    _other_process_write(
        _sqlite_path(ctx),
        "UPDATE api_token SET revoked_at = CURRENT_TIMESTAMP WHERE token_hash = ?",
        tokens.digest(seeded.tokens[role]),
    )


async def test_cached_tokens_expire_and_local_revocation_is_immediate(ctx: AppContext) -> None:
    seeded = await seed_workspace(ctx, "acme")
    now = [1000.0]
    cache = TokenCache(ttl=5.0, clock=lambda: now[0])
    async with ctx.uow(read_only=True) as uow:
        for role in ("admin", "agent"):
            assert await tokens.authenticate(uow.session, seeded.tokens[role], cache) is not None

    # Revoked elsewhere: still accepted from the cache until the entry expires.
    _revoke_elsewhere(ctx, seeded, "agent")
    async with ctx.uow(read_only=True) as uow:
        assert await tokens.authenticate(uow.session, seeded.tokens["agent"], cache) is not None
        now[0] += 5.0
        assert await tokens.authenticate(uow.session, seeded.tokens["agent"], cache) is None
        # Unknown and malformed tokens are never cached as valid.
        assert await tokens.authenticate(uow.session, "hd_" + "x" * 43, cache) is None

    # Revoked in this process: evicted from every cache when the revocation commits.
    async with ctx.uow() as uow:
        admin = await tokens.authenticate(uow.session, seeded.tokens["admin"], cache)
        assert admin is not None and admin.id is not None
        await tokens.do_revoke_token(uow, admin, admin.id)
        # Not committed yet: still valid.
        assert await tokens.authenticate(uow.session, seeded.tokens["admin"], cache) is not None
        await uow.commit()
    async with ctx.uow(read_only=True) as uow:
        assert await tokens.authenticate(uow.session, seeded.tokens["admin"], cache) is None
