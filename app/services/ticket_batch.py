"""Open tickets and append customer messages for many inbound messages at once.

The inbound email path (`email_batch`) and live chat (`chat_batch`) store a
group-commit batch of messages in one transaction. Written one by one, every new
ticket and every message is an ORM object (building one costs more than its
INSERT) and a statement of its own. Here they are queued as plain row values, and
`flush` writes them with one multi-row INSERT per table plus a counter UPDATE for
the existing tickets that got messages.

What reaches the database, the bus and the webhook outbox is what
`tickets.do_create_ticket(message=...)` and `tickets.do_customer_message` write
for the same input, in the same order. Not covered (callers take those functions
instead, after a `flush`): client ids already stored or queued twice (the caller
looks them up first), messages that reopen a ticket, agents' messages (first
response time), and events a timeline hook wants to see (the hooks are not run
here: `hooks_ignore_customer_messages`). A queued message cannot go to a ticket
still queued: flush first.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Table, bindparam, update
from sqlalchemy.orm.attributes import set_committed_value
from sqlmodel import col

from app.events import (
    TicketEventPublished,
    UnitOfWork,
)
from app.lean_sql import Lean
from app.models import ActorType, Channel, Priority, Ticket, TicketEvent, TicketStatus
from app.models.base import TZDateTime
from app.models.ticket import CUSTOMER_VISIBLE_KINDS, EventKind
from app.services import email_outbox, timeline
from app.services.actors import Actor
from app.services.errors import Invalid
from app.services.row_insert import core_connection, insert_rows
from app.services.tickets import (
    REOPEN_ON_CUSTOMER,
    announce_created,
    check_subject,
    ticket_fields_public,
)
from app.services.timeline import MAX_BODY_CHARS, announce_event, event_fields_public

_TICKETS: Table = Ticket.__table__  # type: ignore[attr-defined]
_EVENTS: Table = TicketEvent.__table__  # type: ignore[attr-defined]


# Like `timeline._next_seq`, for several tickets that each get `count` more messages:
# one UPDATE ... RETURNING per distinct count (nearly always one), built once. The row
# locks (PostgreSQL) or the write lock (SQLite) keep concurrent appenders gap-free.
_TAKE_SEQS = Lean(
    update(Ticket)
    .where(col(Ticket.id).in_(bindparam("ticket_ids", expanding=True)))
    .values(
        last_seq=col(Ticket.last_seq) + bindparam("count"),
        updated_at=bindparam("now", type_=TZDateTime()),
    )
    .returning(col(Ticket.id), col(Ticket.last_seq))
    .execution_options(synchronize_session=False),
    expanding=["ticket_ids"],
)


@dataclass
class NewTicket:
    """A ticket row to insert with its first message (seq 1)."""

    values: dict[str, Any]
    # Changed after the ticket was announced (ticket.created shows the row without
    # them, as the one-by-one path announces it), but written with its INSERT.
    later: dict[str, Any] = field(default_factory=dict)
    id: int | None = None

    @property
    def workspace_id(self) -> int:
        return int(self.values["workspace_id"])

    @property
    def contact_id(self) -> int | None:
        contact_id: int | None = self.values["contact_id"]
        return contact_id

    @property
    def team_id(self) -> int | None:
        team_id: int | None = self.values["team_id"]
        return team_id


@dataclass
class TicketRef:
    """An existing ticket, by the columns a queued message needs: cheaper to read than
    the ORM object (JSON columns, identity map) when nothing else of it is used."""

    id: int
    workspace_id: int
    contact_id: int | None
    team_id: int | None
    status: TicketStatus


@dataclass
class QueuedEvent:
    """One message for the timeline; `id`, `seq` and `ticket_id` are set by `flush`,
    which then calls `stored`."""

    ticket: Ticket | TicketRef | NewTicket
    values: dict[str, Any]
    stored: Callable[[QueuedEvent], None] | None = None
    id: int | None = None
    seq: int = 0

    @property
    def ticket_id(self) -> int:
        assert self.ticket.id is not None
        return self.ticket.id


def can_append(ticket: Ticket | TicketRef) -> bool:
    """A customer message to this ticket can be queued (it does not reopen it)."""
    return ticket.status not in REOPEN_ON_CUSTOMER


def hooks_ignore_customer_messages() -> bool:
    """Whether skipping the timeline hooks for a customer's message changes nothing:
    true while the one hook there is email_outbox's, which acts on agents' answers
    only (email_out, and chat answers by agents or the API), never on what a
    customer wrote."""
    return all(hook is email_outbox.on_timeline_event for hook in timeline.event_hooks)


def _event_values(
    workspace_id: int,
    kind: EventKind,
    actor: Actor,
    body: str,
    payload: dict[str, Any],
    now: datetime,
    client_id: str | None = None,
) -> dict[str, Any]:
    if len(body) > MAX_BODY_CHARS:
        raise Invalid(f"body is longer than {MAX_BODY_CHARS} characters")
    return {
        "workspace_id": workspace_id,
        "ticket_id": None,
        "seq": 0,
        "kind": kind,
        "actor_type": actor.type,
        "actor_id": actor.id,
        "actor_name": actor.name,
        "body": body,
        "payload": payload,
        "internal": False,
        "client_id": client_id,
        "created_at": now,
    }


class TimelineBatch:
    def __init__(self) -> None:
        self.tickets: list[NewTicket] = []
        self.events: list[QueuedEvent] = []

    def __len__(self) -> int:
        return len(self.events)

    def open_ticket(
        self,
        actor: Actor,
        *,
        number: int,
        subject: str,
        contact_id: int | None,
        channel: Channel,
        inbox_id: int | None,
        team_id: int | None,
        message: str,
        message_kind: EventKind,
        message_actor: Actor,
        message_payload: dict[str, Any],
        now: datetime,
    ) -> tuple[NewTicket, QueuedEvent]:
        """`do_create_ticket(..., message=...)` of a system or integration actor
        (sees all teams; the inbox, team and contact are known to exist)."""
        assert message_actor.type is not ActorType.agent
        ticket = NewTicket(
            {
                "workspace_id": actor.workspace_id,
                "number": number,
                "subject": check_subject(subject),
                "status": TicketStatus.new,
                "priority": Priority.normal,
                "channel": channel,
                "contact_id": contact_id,
                "assignee_id": None,
                "team_id": team_id,
                "inbox_id": inbox_id,
                "tags": [],
                "custom_fields": {},
                "participants": [],
                "last_seq": 1,
                "merged_into_id": None,
                "created_at": now,
                "updated_at": now,
                "first_response_at": None,
                "resolved_at": None,
                "closed_at": None,
                "due_at": None,
            }
        )
        values = _event_values(
            actor.workspace_id, message_kind, message_actor, message, message_payload, now
        )
        event = QueuedEvent(ticket, values, seq=1)
        self.tickets.append(ticket)
        self.events.append(event)
        return ticket, event

    def append(
        self,
        ticket: Ticket | TicketRef,
        actor: Actor,
        *,
        body: str,
        kind: EventKind,
        payload: dict[str, Any],
        now: datetime,
        client_id: str | None = None,
    ) -> QueuedEvent:
        """`do_customer_message` to a ticket it does not reopen (`can_append`), with a
        `client_id` the caller made sure is new."""
        assert ticket.id is not None and can_append(ticket)
        assert actor.type is not ActorType.agent  # would set first_response_at
        event = QueuedEvent(
            ticket, _event_values(ticket.workspace_id, kind, actor, body, payload, now, client_id)
        )
        self.events.append(event)
        return event

    async def flush(self, uow: UnitOfWork) -> None:
        """Write what is queued, then announce it (bus after commit, webhook outbox)."""
        if not self.events:
            return
        tickets, self.tickets = self.tickets, []
        events, self.events = self.events, []
        connection = await core_connection(uow.session)
        rows = [{**t.values, **t.later} for t in tickets]
        for new, new_id in zip(tickets, await insert_rows(connection, _TICKETS, rows), strict=True):
            new.id = new_id
        # Existing tickets: take the queued messages' seqs (see _TAKE_SEQS).
        appended: dict[int, tuple[Ticket | TicketRef, list[QueuedEvent]]] = {}
        for event in events:
            if not isinstance(event.ticket, NewTicket):
                appended.setdefault(event.ticket_id, (event.ticket, []))[1].append(event)
        if appended:
            # The batch's last moment is every touched ticket's updated_at: within the
            # transaction, and it lets tickets with as many new messages share a statement.
            now = max(queued[-1].values["created_at"] for _, queued in appended.values())
            by_count: dict[int, list[int]] = {}
            for ticket_id, (_, queued) in appended.items():
                by_count.setdefault(len(queued), []).append(ticket_id)
            tops: dict[int, int] = {}
            for count, ticket_ids in by_count.items():
                params = {"ticket_ids": ticket_ids, "count": count, "now": now}
                for row_id, top in await _TAKE_SEQS.execute(connection, params):
                    assert row_id is not None
                    tops[row_id] = top
            for ticket_id, (ticket, queued) in appended.items():
                top = tops[ticket_id]
                for seq, event in enumerate(queued, start=top - len(queued) + 1):
                    event.seq = seq
                if isinstance(ticket, Ticket):  # the session's copy stays true
                    set_committed_value(ticket, "last_seq", top)
                    set_committed_value(ticket, "updated_at", now)
        rows = [{**e.values, "ticket_id": e.ticket_id, "seq": e.seq} for e in events]
        event_ids = await insert_rows(connection, _EVENTS, rows)
        for event, event_id in zip(events, event_ids, strict=True):
            event.id = event_id
        for event in events:
            await self._announce(uow, event)
            if event.stored is not None:
                event.stored(event)

    async def _announce(self, uow: UnitOfWork, event: QueuedEvent) -> None:
        """What `do_append_event` (and, for a new ticket, `do_create_ticket`) publish."""
        ticket = event.ticket
        kind: EventKind = event.values["kind"]
        await announce_event(
            uow,
            TicketEventPublished(
                workspace_id=ticket.workspace_id,
                ticket_id=event.ticket_id,
                seq=event.seq,
                kind=kind.value,
                contact_id=ticket.contact_id,
                team_id=ticket.team_id,
                internal=event.values["internal"] or kind not in CUSTOMER_VISIBLE_KINDS,
                event=event_fields_public(
                    {**event.values, "id": event.id, "ticket_id": event.ticket_id, "seq": event.seq}
                ),
            ),
        )
        if isinstance(ticket, NewTicket):
            await announce_created(
                uow,
                ticket.workspace_id,
                ticket_fields_public({**ticket.values, "id": event.ticket_id}),
            )
