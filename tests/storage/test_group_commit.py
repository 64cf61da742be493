"""Group commit (app.group_commit): writes queued together share one transaction, an
answer means "committed", and one failing write costs the others nothing; on SQLite
and PostgreSQL."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
from sqlmodel import col, select

from app.context import AppContext
from app.events import UnitOfWork
from app.group_commit import Together, Work, WorkQueue
from app.models import Ticket, TicketEvent
from app.models.ticket import EventKind
from app.services import tickets
from app.services.actors import Actor
from app.services.errors import Invalid, ServiceError
from app.services.timeline import do_append_event
from tests.conftest import SeededWorkspace

both = pytest.mark.parametrize("database_url", ["sqlite", "pg"], indirect=True)


class CountingQueue:
    """A WorkQueue over the app's units of work that counts its transactions."""

    def __init__(self, ctx: AppContext) -> None:
        self.ctx = ctx
        self.transactions = 0
        self.queue = WorkQueue(self.unit_of_work, ctx.spawn, "test-writer")

    @asynccontextmanager
    async def unit_of_work(self) -> AsyncIterator[UnitOfWork]:
        self.transactions += 1
        async with self.ctx.uow() as uow:
            yield uow


async def new_ticket(ctx: AppContext, ws: SeededWorkspace) -> int:
    async with ctx.uow() as uow:
        ticket, _ = await tickets.do_create_ticket(uow, Actor.system(ws.id), subject="batch")
        await uow.commit()
    assert ticket.id is not None
    return ticket.id


def append(ws: SeededWorkspace, ticket_id: int, body: str) -> Work[int]:
    async def work(uow: UnitOfWork) -> int:
        if body == "bad":
            # Written first, then refused: the batch must not keep the half-done write.
            ticket = await uow.session.get(Ticket, ticket_id)
            assert ticket is not None
            await do_append_event(
                uow, ticket, kind=EventKind.message, actor=Actor.system(ws.id), body=body
            )
            raise Invalid("refused after writing")
        ticket = await uow.session.get(Ticket, ticket_id)
        assert ticket is not None
        event, _ = await do_append_event(
            uow, ticket, kind=EventKind.message, actor=Actor.system(ws.id), body=body
        )
        return event.seq

    return work


async def bodies(ctx: AppContext, ticket_id: int) -> list[str]:
    async with ctx.sessions() as session:
        stmt = (
            select(TicketEvent.body)
            .where(TicketEvent.ticket_id == ticket_id, TicketEvent.kind == EventKind.message)
            .order_by(col(TicketEvent.seq))
        )
        return list((await session.exec(stmt)).all())


@both
async def test_writes_queued_together_share_one_commit(
    ctx: AppContext, workspace: SeededWorkspace
) -> None:
    ticket_id = await new_ticket(ctx, workspace)
    counting = CountingQueue(ctx)
    seen_after_answer: list[list[str]] = []

    async def write(body: str) -> int:
        seq = await counting.queue.run(append(workspace, ticket_id, body))
        # The answer comes after the commit: another session already reads it.
        seen_after_answer.append(await bodies(ctx, ticket_id))
        return seq

    seqs = await asyncio.gather(*(write(f"m{i}") for i in range(10)))
    assert counting.transactions == 1
    assert sorted(seqs) == list(range(seqs[0], seqs[0] + 10))  # arrival order, gap-free
    assert all(len(seen) == 10 for seen in seen_after_answer)
    assert await bodies(ctx, ticket_id) == [f"m{i}" for i in range(10)]


@both
async def test_a_failing_write_costs_the_others_nothing(
    ctx: AppContext, workspace: SeededWorkspace
) -> None:
    ticket_id = await new_ticket(ctx, workspace)
    counting = CountingQueue(ctx)
    names = ["a", "b", "bad", "c", "d"]
    results = await asyncio.gather(
        *(counting.queue.run(append(workspace, ticket_id, n)) for n in names),
        return_exceptions=True,
    )
    refused = results[names.index("bad")]
    assert isinstance(refused, ServiceError) and refused.message == "refused after writing"
    assert all(isinstance(r, int) for i, r in enumerate(results) if names[i] != "bad")
    # The shared transaction was rolled back and each write redone alone.
    assert counting.transactions == 1 + len(names)
    assert await bodies(ctx, ticket_id) == ["a", "b", "c", "d"]


async def test_a_caller_that_gives_up_before_its_batch_writes_nothing(
    ctx: AppContext, workspace: SeededWorkspace
) -> None:
    ticket_id = await new_ticket(ctx, workspace)
    counting = CountingQueue(ctx)
    first = asyncio.ensure_future(counting.queue.run(append(workspace, ticket_id, "kept")))
    gone = asyncio.ensure_future(counting.queue.run(append(workspace, ticket_id, "dropped")))
    await asyncio.sleep(0)  # both queued, the writer not yet started
    gone.cancel()
    await first
    with pytest.raises(asyncio.CancelledError):
        await gone
    assert await bodies(ctx, ticket_id) == ["kept"]


class Tagged(Together[str]):
    """A piece written together with the others of its class: records each call."""

    calls: list[list[str]] = []

    def __init__(self, name: str) -> None:
        self.name = name

    @classmethod
    async def write_many(cls, uow: UnitOfWork, works: list[Any]) -> list[Any]:
        cls.calls.append([work.name for work in works])
        return [f"{work.name}!" for work in works]


async def test_pieces_of_one_class_are_written_together_first(ctx: AppContext) -> None:
    counting = CountingQueue(ctx)
    order: list[str] = []

    def plain(name: str) -> Work[str]:
        async def work(uow: UnitOfWork) -> str:
            order.append(name)
            return name

        return work

    Tagged.calls = []
    pieces: list[Work[Any]] = [plain("p1"), Tagged("t1"), plain("p2"), Tagged("t2")]
    results = await asyncio.gather(*(counting.queue.run(piece) for piece in pieces))
    assert counting.transactions == 1
    assert Tagged.calls == [["t1", "t2"]]  # one call, in the order they were queued
    assert order == ["p1", "p2"]
    assert results == ["p1", "t1!", "p2", "t2!"]  # each caller gets its own answer

    # Alone, a piece is a batch of one.
    assert await counting.queue.run(Tagged("t3")) == "t3!"
    assert Tagged.calls[-1] == ["t3"]
