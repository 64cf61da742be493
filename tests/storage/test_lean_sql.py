"""`Lean` statements (app.lean_sql) return what SQLAlchemy's own execution returns,
run in the caller's transaction, and fail with SQLAlchemy's exceptions; on SQLite and
PostgreSQL. The hot chat lookups read through an index, never the whole workspace."""

from __future__ import annotations

import asyncio
import sqlite3
from datetime import timedelta
from pathlib import Path

import asyncpg
import pytest
from sqlalchemy import bindparam, func, text, update
from sqlalchemy.dialects.sqlite import aiosqlite
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.ext.asyncio import create_async_engine
from sqlmodel import col, select

from app.context import AppContext
from app.lean_sql import Lean, LeanInsert
from app.models import Ticket, TicketEvent, TicketStatus
from app.models.base import utcnow
from app.services import tickets
from app.services.actors import Actor
from app.services.chat_batch import _CONTACTS_BY_IDENTITY, _OPEN_CHAT_TICKETS, _USED_CLIENT_IDS
from app.sqlite_inline import InlineConnection
from tests.conftest import create_pg_database, drop_pg_database, requires_pg, seed_workspace

both = pytest.mark.parametrize("database_url", ["sqlite", "pg"], indirect=True)

_TICKETS_OF = Lean(
    select(Ticket.id, Ticket.status, Ticket.updated_at, Ticket.tags)  # type: ignore[call-overload]
    .where(
        col(Ticket.workspace_id) == bindparam("workspace_id"),
        col(Ticket.id).in_(bindparam("ids", expanding=True)),
        col(Ticket.status).in_([TicketStatus.new, TicketStatus.open]),
    )
    .order_by(col(Ticket.id)),
    expanding=["ids"],
)

_TOUCH = Lean(
    update(Ticket)
    .where(col(Ticket.id).in_(bindparam("ids", expanding=True)))
    .values(updated_at=bindparam("now"))
    .returning(col(Ticket.id), col(Ticket.updated_at)),
    expanding=["ids"],
)


async def make_tickets(ctx: AppContext, workspace_id: int, count: int) -> list[Ticket]:
    made = []
    async with ctx.uow() as uow:
        for i in range(count):
            ticket, _ = await tickets.do_create_ticket(
                uow, Actor.system(workspace_id), subject=f"t{i}", tags=[f"tag{i}"]
            )
            made.append(ticket)
        await uow.commit()
    return made


@both
async def test_rows_and_types_match_sqlalchemys_own_execution(ctx: AppContext) -> None:
    ws = await seed_workspace(ctx, "lean")
    other = await seed_workspace(ctx, "other")
    made = await make_tickets(ctx, ws.id, 5)
    theirs = await make_tickets(ctx, other.id, 2)
    ids = [t.id for t in made] + [t.id for t in theirs]
    for length in (1, 3, len(ids)):  # a shape per list length
        params = {"workspace_id": ws.id, "ids": ids[:length]}
        async with ctx.uow() as uow:
            connection = await uow.session.connection()
            lean = await _TICKETS_OF.execute(connection, params)
            own = [tuple(row) for row in await connection.execute(_TICKETS_OF.statement, params)]
        assert lean == own
        assert len(lean) == min(length, 5)  # the other workspace's tickets never
        for ticket_id, status, updated_at, tags in lean:
            assert isinstance(status, TicketStatus)  # result processors ran
            assert updated_at.tzinfo is not None
            assert tags == [f"tag{ids.index(ticket_id)}"]
    async with ctx.uow() as uow:
        connection = await uow.session.connection()
        assert await _TICKETS_OF.execute(connection, {"workspace_id": ws.id, "ids": []}) == []


@both
async def test_writes_belong_to_the_callers_transaction(ctx: AppContext) -> None:
    ws = await seed_workspace(ctx, "lean")
    made = await make_tickets(ctx, ws.id, 2)
    ids = [t.id for t in made]
    later = utcnow() + timedelta(days=1)

    async with ctx.uow() as uow:  # left without commit: rolled back
        connection = await uow.session.connection()
        touched = await _TOUCH.execute(connection, {"ids": ids, "now": later})
        assert sorted(ticket_id for ticket_id, _ in touched) == ids
        assert all(moment == later for _, moment in touched)
    async with ctx.uow() as uow:
        for ticket in made:
            fresh = await uow.session.get(Ticket, ticket.id)
            assert fresh is not None and fresh.updated_at != later

    async with ctx.uow() as uow:
        await _TOUCH.execute(await uow.session.connection(), {"ids": ids, "now": later})
        await uow.commit()
    async with ctx.uow() as uow:
        fresh = await uow.session.get(Ticket, ids[0])
        assert fresh is not None and fresh.updated_at == later


@both
async def test_inserted_ids_come_back_in_row_order_and_errors_are_sqlalchemys(
    ctx: AppContext,
) -> None:
    ws = await seed_workspace(ctx, "lean")
    (ticket,) = await make_tickets(ctx, ws.id, 1)
    table = TicketEvent.__table__  # type: ignore[attr-defined]
    events = LeanInsert(table)

    def row(seq: int, client_id: str) -> dict[str, object]:
        return {
            "workspace_id": ws.id,
            "ticket_id": ticket.id,
            "seq": seq,
            "kind": "message",
            "actor_type": "system",
            "actor_id": None,
            "actor_name": "",
            "body": f"line {seq}",
            "payload": {"n": seq},
            "internal": False,
            "client_id": client_id,
            "created_at": utcnow(),
        }

    rows = [row(seq, f"c{seq}") for seq in range(100, 140)]
    rows[-1]["payload"] = None  # stored as JSON null, as SQLAlchemy stores it
    async with ctx.uow() as uow:
        ids = await events.insert(await uow.session.connection(), rows)
        await uow.commit()
    async with ctx.sessions() as session:
        stored = {
            e.id: (e.seq, e.payload)
            for e in (
                await session.exec(select(TicketEvent).where(col(TicketEvent.id).in_(ids)))
            ).all()  # type: ignore[call-overload]
        }
    assert [stored[i] for i in ids] == [(r["seq"], r["payload"]) for r in rows]
    async with ctx.sessions() as session:
        json_null = text("CAST(payload AS TEXT) = 'null'")
        raw = select(func.count()).where(col(TicketEvent.id) == ids[-1], json_null)
        assert (await session.exec(raw)).one() == 1

    async with ctx.uow() as uow:
        with pytest.raises(IntegrityError):  # (workspace, client_id) is unique
            await events.insert(await uow.session.connection(), [row(200, "c100")])


async def _holding_the_write_lock(path: str, seconds: float) -> None:
    """Another connection holds SQLite's write lock for `seconds`, then lets go."""
    other = sqlite3.connect(path, timeout=0, isolation_level=None)
    try:
        other.execute("BEGIN IMMEDIATE")
        await asyncio.sleep(seconds)
        other.execute("COMMIT")
    finally:
        other.close()


async def _ticks_while(work: asyncio.Future[object]) -> int:
    """How often the loop ran another task while `work` was pending."""
    ticks = 0
    while not work.done():
        ticks += 1
        await asyncio.sleep(0.01)
    return ticks


async def test_on_sqlite_a_busy_database_is_awaited_not_blocked_on(ctx: AppContext) -> None:
    """Inside a transaction, statements skip SQLAlchemy's async adapter and call
    SQLite at once; BEGIN does too when the database is free. Whenever SQLite is
    busy, both fall back to the adapter's path, which waits for the lock without
    holding up the event loop, and the work completes once the lock is free."""
    ws = await seed_workspace(ctx, "lean")
    made = await make_tickets(ctx, ws.id, 2)
    ids = [t.id for t in made]
    path = ctx.engine.url.database
    assert path is not None
    later = utcnow() + timedelta(days=1)

    async def write(read_only: bool) -> None:
        # A read-only unit begins deferred: its first write meets the lock inside
        # the transaction, in the statement itself rather than at BEGIN.
        async with ctx.uow(read_only=read_only) as uow:
            await _TOUCH.execute(await uow.session.connection(), {"ids": ids, "now": later})
            await uow.commit()

    for read_only in (False, True):
        holder = asyncio.create_task(_holding_the_write_lock(path, 0.3))
        await asyncio.sleep(0.05)
        writing = asyncio.ensure_future(write(read_only))
        assert await _ticks_while(writing) >= 10, read_only  # the loop ran on meanwhile
        await writing
        assert holder.done()  # it could only finish once the lock was let go
        later += timedelta(days=1)
        async with ctx.uow() as uow:
            fresh = await uow.session.get(Ticket, ids[0])
            assert fresh is not None and fresh.updated_at == later - timedelta(days=1)


async def test_on_sqlite_an_error_at_begin_is_sqlalchemys(ctx: AppContext) -> None:
    """BEGIN skips SQLAlchemy's execution when it can; an error there (here SQLite's
    authorizer refuses transactions) must still arrive as SQLAlchemy's exception, the
    kind the group commit tells apart, not as a bare sqlite3 one."""
    async with ctx.engine.connect() as connection:
        inline = (await connection.get_raw_connection()).driver_connection
        assert isinstance(inline, InlineConnection)
        sqlite = inline._conn  # the sqlite3 connection underneath

        def no_transactions(action: int, *_: object) -> int:
            refuse = action == sqlite3.SQLITE_TRANSACTION
            return sqlite3.SQLITE_DENY if refuse else sqlite3.SQLITE_OK

        sqlite.set_authorizer(no_transactions)
        try:
            with pytest.raises(DBAPIError) as caught:
                await connection.execute(text("SELECT 1"))
            assert isinstance(caught.value.orig, sqlite3.DatabaseError)
            await connection.rollback()
        finally:
            sqlite.set_authorizer(None)


def test_chat_batch_lookups_read_through_an_index(sqlite_template: Path) -> None:
    """SQLite without statistics once read every ticket of the workspace for each
    batch of chat messages (the IN list of contacts looked dearer than the
    workspace); whatever the batch's size, the plan must stay an index search on
    the batch's own keys."""
    dialect = aiosqlite.dialect()
    db = sqlite3.connect(sqlite_template)
    try:
        for size in (1, 4, 32):
            many = list(range(size))
            lookups = {
                _OPEN_CHAT_TICKETS: (
                    {"workspace_id": 1, "contact_ids": many, "inbox_ids": [1]},
                    "ix_ticket_contact_id (contact_id=?)",
                ),
                _USED_CLIENT_IDS: (
                    {"workspace_id": 1, "client_ids": [str(i) for i in many]},
                    "(workspace_id=? AND client_id=?)",
                ),
                _CONTACTS_BY_IDENTITY: (
                    {"workspace_id": 1, "kind": "visitor", "values": [str(i) for i in many]},
                    "(workspace_id=? AND kind=? AND value=?)",
                ),
            }
            for lean, (params, expected) in lookups.items():
                sql, values = lean.render(dialect, params)
                plan = [row[3] for row in db.execute(f"EXPLAIN QUERY PLAN {sql}", values)]
                assert expected in plan[0], (size, plan)
                assert not any(step.startswith("SCAN") for step in plan), plan
    finally:
        db.close()


_BACKEND = Lean(text("SELECT pg_backend_pid()"))


@requires_pg
async def test_a_connection_that_died_is_invalidated_not_pooled() -> None:
    """Without the pool's pre-ping, a dead connection handed out again would fail the
    next checkout too; SQLAlchemy's own execute invalidates it, so must this."""
    url, name = await create_pg_database()
    engine = create_async_engine(url, pool_size=1, max_overflow=0)
    try:
        async with engine.connect() as connection:
            await connection.begin()
            ((pid,),) = await _BACKEND.execute(connection, {})
            admin = await asyncpg.connect(url.replace("postgresql+asyncpg", "postgresql"))
            try:
                await admin.execute("SELECT pg_terminate_backend($1)", pid)
            finally:
                await admin.close()
            await asyncio.sleep(0.2)
            with pytest.raises(DBAPIError) as caught:
                await _BACKEND.execute(connection, {})
            assert caught.value.connection_invalidated
        async with engine.connect() as connection:
            ((other,),) = await _BACKEND.execute(connection, {})
        assert other != pid
    finally:
        await engine.dispose()
        await drop_pg_database(name)
