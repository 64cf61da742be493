"""Inbound mail is written in batches (`ticket_batch`), from row values rather than ORM
objects, so its announcements render those values (`ticket_fields_public`,
`event_fields_public`). What consoles, widgets and webhooks hear must still be exactly
what `ticket_public`/`event_public` make of the rows in the database, field by field,
type by type.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest
from mailtools import compose, create_email_inbox, events, port, send

from app.bus import Subscription
from app.context import AppContext
from app.events import workspace_topic
from app.models import Ticket
from app.services import ticket_batch
from app.services.tickets import ticket_public
from app.services.timeline import event_public
from tests.conftest import SeededWorkspace

BOTH_DATABASES = pytest.mark.parametrize("database_url", ["sqlite", "pg"], indirect=True)
ANNOUNCED = ("ticket.created", "ticket.event")


async def deliver(ctx: AppContext, sub: Subscription, raw: bytes, count: int) -> list[Any]:
    """Send one mail; the `count` ticket announcements it causes, in order."""
    reply = await send(port(ctx), raw)
    assert isinstance(reply, tuple) and reply[0] == 250, reply
    heard: list[Any] = []
    while len(heard) < count:
        message = await asyncio.wait_for(sub.get(), 5)
        if message["type"] in ANNOUNCED:
            heard.append(message)
    return heard


async def stored_ticket(ctx: AppContext, ticket_id: int) -> dict[str, Any]:
    async with ctx.sessions() as session:
        ticket = await session.get(Ticket, ticket_id)
        assert ticket is not None
        return ticket_public(ticket)


async def stored_event(ctx: AppContext, ticket_id: int, seq: int) -> dict[str, Any]:
    [event] = [e for e in await events(ctx, ticket_id) if e.seq == seq]
    return event_public(event)


def assert_same(published: dict[str, Any], stored: dict[str, Any], where: str = "") -> None:
    """Equal, with the same fields and the same types (a datetime is not its ISO string)."""
    assert sorted(published) == sorted(stored), where
    for key, value in stored.items():
        got, at = published[key], f"{where}.{key}"
        assert type(got) is type(value), (at, got, value)
        if isinstance(value, dict):
            assert_same(got, value, at)
        else:
            assert got == value, at


@pytest.fixture
def batched(monkeypatch: pytest.MonkeyPatch) -> dict[str, int]:
    """How often ticket_batch rendered rows given as values: proof that the mail took
    the batched path."""
    calls = {"ticket_fields_public": 0, "event_fields_public": 0}

    def counted(name: str) -> Callable[..., dict[str, Any]]:
        original = getattr(ticket_batch, name)

        def wrapper(*args: Any) -> dict[str, Any]:
            calls[name] += 1
            result: dict[str, Any] = original(*args)
            return result

        return wrapper

    for name in calls:
        monkeypatch.setattr(ticket_batch, name, counted(name))
    return calls


@BOTH_DATABASES
async def test_batched_mail_announces_what_the_database_holds(
    ctx: AppContext, workspace: SeededWorkspace, batched: dict[str, int]
) -> None:
    await create_email_inbox(ctx, workspace.id)
    sub = await ctx.bus.subscribe([workspace_topic(workspace.id)])
    try:
        # A new ticket with its first message.
        first, created = await deliver(ctx, sub, compose("m1@x", "Lid broken"), 2)
        assert (first["type"], created["type"]) == ("ticket.event", "ticket.created")
        ticket_id = created["ticket"]["id"]
        assert_same(created["ticket"], await stored_ticket(ctx, ticket_id), "ticket")
        assert_same(first["event"], await stored_event(ctx, ticket_id, 1), "event")

        # A reply appended to it.
        [reply] = await deliver(ctx, sub, compose("m2@x", "Re: Lid", In_Reply_To="<m1@x>"), 1)
        assert (reply["ticket"], reply["seq"]) == (ticket_id, 2)
        assert_same(reply["event"], await stored_event(ctx, ticket_id, 2), "reply")

        # With a Cc the row gets participants after the announcement; the one-by-one
        # path (`do_create_ticket`) announces before setting them too.
        cc = compose("m3@x", "Invoice", Cc="bob@example.com")
        _, created = await deliver(ctx, sub, cc, 2)
        stored = await stored_ticket(ctx, created["ticket"]["id"])
        assert stored["participants"] == ["bob@example.com"]
        assert created["ticket"]["participants"] == []
        assert_same(created["ticket"], {**stored, "participants": []}, "cc")
    finally:
        await sub.close()
    assert batched == {"ticket_fields_public": 2, "event_fields_public": 3}
