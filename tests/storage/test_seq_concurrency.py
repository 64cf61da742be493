"""Many writers at once: per-ticket seq and per-workspace numbers stay gap-free and unique,
and a client_id is stored once, on SQLite (separate connections) and PostgreSQL."""

from __future__ import annotations

import asyncio

import pytest
from sqlalchemy import func, text
from sqlmodel import col, select

from app.context import AppContext
from app.models import Ticket, TicketEvent
from app.models.ticket import EventKind
from app.services import tickets
from app.services.actors import Actor
from app.services.timeline import do_append_event
from tests.conftest import SeededWorkspace

both = pytest.mark.parametrize("database_url", ["sqlite", "pg"], indirect=True)

WRITERS = 20
APPENDS = 25


async def new_ticket(ctx: AppContext, ws: SeededWorkspace) -> int:
    async with ctx.uow() as uow:
        ticket, _ = await tickets.do_create_ticket(uow, Actor.system(ws.id), subject="busy")
        await uow.commit()
    assert ticket.id is not None
    return ticket.id


async def append(
    ctx: AppContext, ws: SeededWorkspace, ticket_id: int, body: str, client_id: str | None = None
) -> tuple[int, bool]:
    """One append in its own session and transaction, as a request would do it."""
    async with ctx.uow() as uow:
        ticket = await uow.session.get(Ticket, ticket_id)
        assert ticket is not None
        event, created = await do_append_event(
            uow,
            ticket,
            kind=EventKind.message,
            actor=Actor.system(ws.id),
            body=body,
            client_id=client_id,
        )
        await uow.commit()
    assert event.id is not None
    return event.id, created


async def seqs(ctx: AppContext, ticket_id: int) -> list[int]:
    async with ctx.sessions() as session:
        stmt = select(TicketEvent.seq).where(TicketEvent.ticket_id == ticket_id)
        return sorted((await session.exec(stmt)).all())


async def last_seq(ctx: AppContext, ticket_id: int) -> int:
    async with ctx.sessions() as session:
        ticket = await session.get(Ticket, ticket_id)
        assert ticket is not None
        return ticket.last_seq


@both
async def test_concurrent_appends_to_one_ticket_are_gap_free(
    ctx: AppContext, workspace: SeededWorkspace
) -> None:
    ticket_id = await new_ticket(ctx, workspace)
    start = asyncio.Event()

    async def writer(w: int) -> None:
        await start.wait()
        for i in range(APPENDS):
            await append(ctx, workspace, ticket_id, f"writer {w} message {i}")

    tasks = [asyncio.create_task(writer(w)) for w in range(WRITERS)]
    start.set()
    await asyncio.gather(*tasks)
    total = WRITERS * APPENDS
    assert await seqs(ctx, ticket_id) == list(range(1, total + 1))
    assert await last_seq(ctx, ticket_id) == total
    # Each writer's own messages are in the order it wrote them.
    async with ctx.sessions() as session:
        stmt = (
            select(TicketEvent.body)
            .where(TicketEvent.ticket_id == ticket_id)
            .order_by(col(TicketEvent.seq))
        )
        bodies = list((await session.exec(stmt)).all())
    for w in range(WRITERS):
        mine = [b for b in bodies if b.startswith(f"writer {w} ")]
        assert mine == [f"writer {w} message {i}" for i in range(APPENDS)]


@both
async def test_concurrent_ticket_creation_numbers_are_unique_and_gap_free(
    ctx: AppContext, workspace: SeededWorkspace, other_workspace: SeededWorkspace
) -> None:
    per_task = 5

    async def creator(ws: SeededWorkspace) -> None:
        for i in range(per_task):
            async with ctx.uow() as uow:
                await tickets.do_create_ticket(
                    uow, Actor.system(ws.id), subject=f"t{i}", message="hello"
                )
                await uow.commit()

    await asyncio.gather(
        *(creator(ws) for ws in [workspace, other_workspace] for _ in range(WRITERS // 2))
    )
    expected = list(range(1, WRITERS // 2 * per_task + 1))
    async with ctx.sessions() as session:
        for ws in (workspace, other_workspace):
            stmt = select(Ticket.number).where(Ticket.workspace_id == ws.id)
            assert sorted((await session.exec(stmt)).all()) == expected


@both
async def test_concurrent_same_client_id_is_stored_once(
    ctx: AppContext, workspace: SeededWorkspace
) -> None:
    ticket_id = await new_ticket(ctx, workspace)
    for round_ in range(5):
        results = await asyncio.gather(
            *(append(ctx, workspace, ticket_id, f"r{round_}", f"c-{round_}") for _ in range(8))
        )
        assert len({event_id for event_id, _ in results}) == 1
        assert sum(created for _, created in results) == 1
    # One event per client id, and the counter did not skip for the duplicates.
    assert await seqs(ctx, ticket_id) == [1, 2, 3, 4, 5]
    assert await last_seq(ctx, ticket_id) == 5


@pytest.mark.parametrize("database_url", ["pg"], indirect=True)
async def test_client_id_race_past_the_lookup_returns_the_first_event(
    ctx: AppContext, workspace: SeededWorkspace
) -> None:
    """Force the interleaving: the second writer passes the client_id lookup while the
    first is still uncommitted, so its INSERT must hit the unique constraint."""
    ticket_id = await new_ticket(ctx, workspace)
    async with ctx.uow() as first:
        ticket = await first.session.get(Ticket, ticket_id)
        assert ticket is not None
        event, created = await do_append_event(
            first,
            ticket,
            kind=EventKind.message,
            actor=Actor.system(workspace.id),
            body="once",
            client_id="dup",
        )
        assert created
        second = asyncio.create_task(append(ctx, workspace, ticket_id, "once", "dup"))
        # Wait until the second writer is blocked on the ticket row lock we hold.
        async with ctx.engine.connect() as probe:
            while not (
                await probe.execute(text("SELECT count(*) FROM pg_locks WHERE NOT granted"))
            ).scalar_one():
                await asyncio.sleep(0.01)
                await probe.rollback()
        await first.commit()
    second_id, second_created = await second
    assert (second_id, second_created) == (event.id, False)
    assert await seqs(ctx, ticket_id) == [1]
    assert await last_seq(ctx, ticket_id) == 1
    async with ctx.sessions() as session:
        count = (await session.exec(select(func.count()).select_from(TicketEvent))).one()
    assert count == 1
