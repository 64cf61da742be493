"""Widget messages stored as a batch (app.services.chat_batch) end up exactly as if
each had been stored alone (chat.do_visitor_message): same acks, same timelines,
same tickets, same bus messages; on SQLite and PostgreSQL.

The batch below mixes what takes the set-based path (next lines of open
conversations, two of them to one ticket) with everything that must not: a resent
client_id, a client_id queued twice, a message that reopens a ticket, a first
message, a pre-chat email. It also holds two workspaces whose visitors have the
same ids, so any lookup that forgot the workspace would show.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import pytest
from sqlalchemy import event
from sqlmodel import col, select

from app.bus.base import Message, Subscription
from app.context import AppContext
from app.events import workspace_topic
from app.models import Inbox, Ticket, TicketEvent, TicketStatus
from app.services import tickets
from app.services.actors import Actor
from app.services.chat import ChatVisitor, MessageResult, VisitorMessage, do_visitor_message
from app.services.chat_batch import do_visitor_messages
from tests.conftest import SeededWorkspace, make_widget_inbox, seed_workspace

both = pytest.mark.parametrize("database_url", ["sqlite", "pg"], indirect=True)

TTL = 30.0


@dataclass
class Site:
    """One workspace with a widget inbox and its visitors v0..v5."""

    ws: SeededWorkspace
    inbox: Inbox
    visitors: dict[str, ChatVisitor]
    feed: Subscription

    def says(self, who: str, client_id: str, body: str, **extra: Any) -> VisitorMessage:
        return VisitorMessage(self.visitors[who], self.inbox, client_id, body, **extra)


async def open_site(ctx: AppContext, slug: str) -> Site:
    ws = await seed_workspace(ctx, slug)
    inbox = await make_widget_inbox(ctx, ws.id, ws.team_ids["Support"], [], name="Site")
    assert inbox.id is not None
    visitors = {f"v{i}": ChatVisitor(ws.id, inbox.id, f"visitor-{i}") for i in range(6)}
    feed = await ctx.bus.subscribe([workspace_topic(ws.id)], maxsize=10_000)
    site = Site(ws, inbox, visitors, feed)
    # Conversations v0..v4 exist; v3's waits for the customer (a message reopens it).
    for i in range(5):
        await store_alone(ctx, [site.says(f"v{i}", f"first-{i}", f"hello {i}")])
    async with ctx.uow() as uow:
        ticket_id = await ticket_of(ctx, site, "v3")
        await tickets.do_update_ticket(
            uow, Actor.system(ws.id), ticket_id, {"status": TicketStatus.pending}
        )
        await uow.commit()
    return site


def second_round(site: Site) -> list[VisitorMessage]:
    return [
        site.says("v0", "next-0", "how are you"),
        site.says("v1", "next-1", "still there?"),
        site.says("v0", "next-0b", "and one more"),  # same ticket, same batch
        site.says("v1", "first-1", "hello 1"),  # a resend of a stored message
        site.says("v2", "dup-2", "sent twice"),
        site.says("v2", "dup-2", "sent twice"),  # the resend is in the same batch
        site.says("v3", "wake-3", "back again"),  # reopens the pending ticket
        site.says("v5", "first-5", "hi, new here"),  # opens a conversation
        site.says("v4", "mail-4", "mail me", email="v4@example.com"),
        site.says("v4", "mail-4", "mail me"),  # a plain copy of a message that is not
    ]


async def store_alone(ctx: AppContext, messages: list[VisitorMessage]) -> list[MessageResult]:
    results = []
    for message in messages:
        async with ctx.uow() as uow:
            results.append(await do_visitor_message(uow, message, presence_ttl=TTL))
            await uow.commit()
    adopt(messages, results)
    return results


def adopt(messages: list[VisitorMessage], results: list[MessageResult]) -> None:
    """What the widget connection does once a message is committed."""
    for message, result in zip(messages, results, strict=True):
        message.visitor.contact_id = result.contact_id


async def ticket_of(ctx: AppContext, site: Site, who: str) -> int:
    contact_id = site.visitors[who].contact_id
    async with ctx.sessions() as session:
        stmt = select(Ticket.id).where(Ticket.contact_id == contact_id)
        ticket_id = (await session.exec(stmt)).one()
    assert ticket_id is not None
    return ticket_id


async def picture(ctx: AppContext, site: Site, results: list[MessageResult]) -> dict[str, Any]:
    """What a site looks like, with ids replaced by the visitor they belong to."""
    names = {v.contact_id: who for who, v in site.visitors.items()}
    tickets_by_id: dict[int, str] = {}
    timelines: dict[str, Any] = {}
    async with ctx.sessions() as session:
        for ticket in (
            await session.exec(select(Ticket).where(Ticket.workspace_id == site.ws.id))
        ).all():
            who = names[ticket.contact_id]
            assert ticket.id is not None
            tickets_by_id[ticket.id] = who
            events = (
                await session.exec(
                    select(TicketEvent)
                    .where(TicketEvent.ticket_id == ticket.id)
                    .order_by(col(TicketEvent.seq))
                )
            ).all()
            timelines[who] = {
                "status": ticket.status,
                "channel": ticket.channel,
                "participants": ticket.participants,
                "last_seq": ticket.last_seq,
                "events": [
                    (
                        e.seq,
                        e.kind,
                        e.actor_type,
                        names.get(e.actor_id),
                        e.actor_name,
                        e.body,
                        e.client_id,
                    )
                    for e in events
                ],
            }
    published: dict[str, list[Any]] = {}
    while (message := site.feed.get_nowait()) is not None:
        published.setdefault(tickets_by_id.get(ticket_id(message), "?"), []).append(
            shape(message, tickets_by_id, names)
        )
    acks = [
        (tickets_by_id[r.ticket_id], r.seq, r.created, r.ticket_created, r.contact_created)
        for r in results
    ]
    return {"acks": acks, "timelines": timelines, "published": published}


@contextmanager
def counting_event_inserts(ctx: AppContext) -> Iterator[list[int]]:
    """Rows per INSERT into ticket_event while the block runs."""
    rows: list[int] = []

    def seen(
        _conn: Any, _cursor: Any, statement: str, params: Any, _context: Any, _many: bool
    ) -> None:
        if statement.startswith("INSERT INTO ticket_event "):
            columns = statement.split(")", 1)[0].count(",") + 1
            # A multi-row INSERT arrives as one statement with its values flattened.
            rows.append(len(params) // columns)

    event.listen(ctx.engine.sync_engine, "before_cursor_execute", seen)
    try:
        yield rows
    finally:
        event.remove(ctx.engine.sync_engine, "before_cursor_execute", seen)


def ticket_id(message: Message) -> int:
    """ticket.event names its ticket by id; ticket.created/updated carry the row."""
    found = message["ticket"]
    return int(found["id"] if isinstance(found, dict) else found)


def shape(message: Message, tickets_by_id: dict[int, str], names: dict[int | None, str]) -> Any:
    """A bus message without the ids and times that differ between two workspaces."""
    out: dict[str, Any] = {}
    for key, value in message.items():
        if key in (
            "workspace",
            "id",
            "created_at",
            "updated_at",
            "number",
            "team",
            "team_id",
            "inbox_id",
        ):
            continue
        if key in ("ticket", "ticket_id") and isinstance(value, int):
            value = tickets_by_id.get(value)
        elif key in ("contact", "contact_id") and isinstance(value, int):
            value = names.get(value)
        elif isinstance(value, dict):
            value = shape(value, tickets_by_id, names)
        out[key] = value
    return out


@both
async def test_a_batch_stores_what_one_by_one_stores(ctx: AppContext) -> None:
    alone = await open_site(ctx, "alone")
    first = await open_site(ctx, "first")
    second = await open_site(ctx, "second")
    for site in (alone, first, second):
        site.feed.get_nowait()
        while site.feed.get_nowait() is not None:
            pass  # the setup's messages

    alone_results = await store_alone(ctx, second_round(alone))
    # Both workspaces' messages interleaved in one transaction.
    mixed = [
        m for pair in zip(second_round(first), second_round(second), strict=True) for m in pair
    ]
    with counting_event_inserts(ctx) as inserts:
        async with ctx.uow() as uow:
            batch_results = await do_visitor_messages(uow, mixed, presence_ttl=TTL)
            await uow.commit()
    adopt(mixed, batch_results)
    # The next lines of both workspaces' conversations were one INSERT. In each
    # workspace, one each for the message that opens a conversation, the one that
    # brings an email address, and the one that reopens a ticket (plus its status change).
    assert inserts == [8] + [1] * 8

    expected = await picture(ctx, alone, alone_results)
    assert expected["acks"][3][2] is False  # the resend stored nothing
    assert expected["acks"][5] == (*expected["acks"][4][:2], False, False, False)
    assert expected["timelines"]["v3"]["status"] is TicketStatus.open  # reopened
    for site, results in ((first, batch_results[0::2]), (second, batch_results[1::2])):
        assert await picture(ctx, site, results) == expected


@both
async def test_a_resend_through_another_node_waits_and_gets_the_same_ack(
    ctx: AppContext,
) -> None:
    """Two transactions (two nodes, on PostgreSQL) store the same client_id at once:
    the second waits for the first and answers its ack instead of colliding."""
    site = await open_site(ctx, "nodes")
    first_node_holds = asyncio.Event()
    first_node_may_commit = asyncio.Event()

    async def first_node() -> MessageResult:
        async with ctx.uow() as uow:
            [result] = await do_visitor_messages(
                uow, [site.says("v0", "twice", "sent once")], presence_ttl=TTL
            )
            first_node_holds.set()
            await first_node_may_commit.wait()
            await uow.commit()
        return result

    async def second_node() -> MessageResult:
        await first_node_holds.wait()
        async with ctx.uow() as uow:
            [result] = await do_visitor_messages(
                uow, [site.says("v0", "twice", "sent once")], presence_ttl=TTL
            )
            await uow.commit()
        return result

    first = asyncio.create_task(first_node())
    second = asyncio.create_task(second_node())
    await first_node_holds.wait()
    await asyncio.sleep(0.2)  # the second is waiting for the first by now
    assert not second.done()
    first_node_may_commit.set()
    stored, resent = await first, await second
    assert stored.created and not resent.created
    assert (resent.ticket_id, resent.seq) == (stored.ticket_id, stored.seq)
