"""Store the widget messages of one group-commit batch with a few statements for all.

Nearly every widget message is the next line of a conversation that already
exists: a known visitor, an open chat ticket, a new client_id. Stored one by one
(`chat.do_visitor_message`), each costs its own round of lookups (client_id,
contact, open ticket), an ORM event object and an INSERT, about 2 ms of CPU in
all; the server's whole budget for a relayed message is a twentieth of that. Here
those lookups are one statement each for the whole batch and the events are
queued in a `TimelineBatch` (one multi-row INSERT).

Whatever is not such a plain next line goes through `do_visitor_message`
afterwards, unchanged: a first message (it creates the contact or the ticket),
a resent client_id (and the second copy of a client_id queued twice in the
batch), attachments, a pre-chat name or email, a message that reopens a
ticket, a contact that was merged away. So are all of them while a timeline
hook that could care about a customer's message is installed.

Same result, bus messages and webhooks as `do_visitor_message` for each message.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from sqlalchemy import bindparam, select
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlmodel import col

from app.events import UnitOfWork
from app.lean_sql import Lean
from app.models import Contact, ContactIdentity, IdentityKind, Ticket, TicketEvent
from app.models.base import utcnow
from app.models.ticket import EventKind
from app.services.actors import Actor
from app.services.chat import MessageResult, VisitorMessage, do_visitor_message
from app.services.contacts import normalize_identity
from app.services.errors import Invalid
from app.services.routing import LOCK_CONTACT, OPEN_CHAT_STATUSES, xact_lock
from app.services.row_insert import core_connection
from app.services.ticket_batch import (
    TicketRef,
    TimelineBatch,
    can_append,
    hooks_ignore_customer_messages,
)
from app.services.timeline import MAX_BODY_CHARS

_USED_CLIENT_IDS = Lean(
    select(TicketEvent.client_id).where(  # type: ignore[call-overload]
        col(TicketEvent.workspace_id) == bindparam("workspace_id"),
        col(TicketEvent.client_id).in_(bindparam("client_ids", expanding=True)),
    ),
    expanding=["client_ids"],
)

_CONTACTS_BY_IDENTITY = Lean(
    select(ContactIdentity.value, Contact.id, Contact.name)  # type: ignore[call-overload]
    .join(Contact, col(Contact.id) == col(ContactIdentity.contact_id))
    .where(
        col(ContactIdentity.workspace_id) == bindparam("workspace_id"),
        col(ContactIdentity.kind) == bindparam("kind"),
        col(ContactIdentity.value).in_(bindparam("values", expanding=True)),
        col(Contact.merged_into_id).is_(None),
    ),
    expanding=["values"],
)

# Like `chat.open_chat_ticket`, for many contacts: newest first, the caller keeps the
# first per (inbox, contact). SQLite without statistics prices an IN list of many
# contacts above `workspace_id = ?` and read every ticket of the workspace for each
# batch (500 rows in the benchmark, the whole history in production). The workspace
# is compared as an expression (`+ 0`), which no index can serve, so the planner
# takes the index on contact_id and reads only the batch's contacts' tickets.
_OPEN_CHAT_TICKETS = Lean(
    select(  # type: ignore[call-overload]
        Ticket.id,
        Ticket.workspace_id,
        Ticket.contact_id,
        Ticket.team_id,
        Ticket.status,
        Ticket.inbox_id,
    )
    .where(
        col(Ticket.workspace_id) + 0 == bindparam("workspace_id"),
        col(Ticket.contact_id).in_(bindparam("contact_ids", expanding=True)),
        col(Ticket.inbox_id).in_(bindparam("inbox_ids", expanding=True)),
        col(Ticket.status).in_(OPEN_CHAT_STATUSES),
        col(Ticket.merged_into_id).is_(None),
    )
    .order_by(col(Ticket.id).desc()),
    expanding=["contact_ids", "inbox_ids"],
)


@dataclass
class _Line:
    """A message that qualifies, and what the lookups found for it."""

    index: int
    message: VisitorMessage
    identity: tuple[IdentityKind, str]
    contact: tuple[int, str] | None = None
    ticket: TicketRef | None = None


async def do_visitor_messages(
    uow: UnitOfWork, messages: Sequence[VisitorMessage], *, presence_ttl: float
) -> list[MessageResult]:
    """`do_visitor_message` for each message, in one transaction; the caller commits.
    Any error (one message's, or the database's) fails the whole call: the group
    commit then writes each message alone, where the error reaches its sender."""
    results: list[MessageResult | None] = [None] * len(messages)
    lines = await _plain_lines(uow, messages)
    if lines:
        queue = TimelineBatch()
        now = utcnow()
        queued = []
        for line in lines:
            assert line.contact is not None and line.ticket is not None
            contact_id, name = line.contact
            actor = Actor.contact(line.message.visitor.workspace_id, contact_id, name or "Visitor")
            event = queue.append(
                line.ticket,
                actor,
                body=line.message.body,
                kind=EventKind.message,
                payload={},
                now=now,
                client_id=line.message.client_id,
            )
            queued.append((line, event))
        await queue.flush(uow)
        for line, event in queued:
            assert line.contact is not None
            results[line.index] = MessageResult(
                event.ticket_id, event.seq, line.contact[0], True, False, False
            )
    for index, message in enumerate(messages):
        if results[index] is None:
            results[index] = await do_visitor_message(uow, message, presence_ttl=presence_ttl)
            # One by one, a message costs milliseconds (a first message creates a
            # contact and a ticket): a batch of them never suspends and held every
            # other connection of the process for up to a second. Between two of them
            # the loop serves the others; the transaction stays open meanwhile.
            await asyncio.sleep(0)
    return [result for result in results if result is not None]


async def _plain_lines(uow: UnitOfWork, messages: Sequence[VisitorMessage]) -> list[_Line]:
    """The messages that are the next line of an open conversation, with their
    contact and ticket; the others are left for `do_visitor_message`."""
    if not hooks_ignore_customer_messages():
        return []
    seen: set[tuple[int, str]] = set()
    by_workspace: dict[int, list[_Line]] = {}
    for index, message in enumerate(messages):
        key = (message.visitor.workspace_id, message.client_id)
        if key in seen:
            continue  # a later copy is answered from the first, once that is stored
        seen.add(key)
        if not _plain(message):
            continue
        visitor = message.visitor
        kind, value = (
            (IdentityKind.external, visitor.external_id)
            if visitor.external_id is not None
            else (IdentityKind.visitor, visitor.visitor_id)
        )
        try:
            identity = (kind, normalize_identity(kind, value))
        except Invalid:
            continue  # `do_visitor_message` gives the error
        line = _Line(index, message, identity)
        by_workspace.setdefault(visitor.workspace_id, []).append(line)
    connection = await core_connection(uow.session)
    for workspace_id, lines in by_workspace.items():
        by_workspace[workspace_id] = await _with_contacts(connection, workspace_id, lines)
    # As `do_visitor_message`: on PostgreSQL, another node deciding between "append"
    # and "open a new ticket" for the same contact, or storing the same client_id
    # (a resend through another node), waits for this transaction. Every contact of
    # the batch in one ascending pass, so two batches never wait for each other in a
    # circle; the client ids are looked up after it, so a resend committed meanwhile
    # is seen (READ COMMITTED) and answered instead of colliding.
    await _lock_contacts(
        uow,
        sorted(
            {line.contact[0] for lines in by_workspace.values() for line in lines if line.contact}
        ),
    )
    found: list[_Line] = []
    for workspace_id, lines in by_workspace.items():
        found.extend(await _with_tickets(connection, workspace_id, lines))
    found.sort(key=lambda line: line.index)
    return found


def _plain(message: VisitorMessage) -> bool:
    return (
        not message.attachments
        and not message.name
        and not message.email
        and bool(message.body.strip())
        and len(message.body) <= MAX_BODY_CHARS
        and 1 <= len(message.client_id) <= 64
    )


async def _with_contacts(
    connection: AsyncConnection, workspace_id: int, lines: list[_Line]
) -> list[_Line]:
    """The lines whose visitor is a known contact (not merged away), with it."""
    for kind in {line.identity[0] for line in lines}:
        values = [line.identity[1] for line in lines if line.identity[0] is kind]
        params = {"workspace_id": workspace_id, "kind": kind, "values": values}
        contacts = {
            value: (contact_id, name)
            for value, contact_id, name in await _CONTACTS_BY_IDENTITY.execute(connection, params)
        }
        for line in lines:
            if line.identity[0] is kind:
                line.contact = contacts.get(line.identity[1])
    return [line for line in lines if line.contact is not None]


async def _with_tickets(
    connection: AsyncConnection, workspace_id: int, lines: list[_Line]
) -> list[_Line]:
    """The lines with a new client_id and an open conversation it continues, with it."""
    if not lines:
        return []
    params = {"workspace_id": workspace_id, "client_ids": [x.message.client_id for x in lines]}
    used = {client_id for (client_id,) in await _USED_CLIENT_IDS.execute(connection, params)}
    lines = [line for line in lines if line.message.client_id not in used]
    if not lines:
        return []
    params = {
        "workspace_id": workspace_id,
        "contact_ids": sorted({line.contact[0] for line in lines if line.contact}),
        "inbox_ids": sorted({line.message.inbox.id or 0 for line in lines}),
    }
    newest: dict[tuple[int | None, int | None], TicketRef] = {}
    for *columns, inbox_id in await _OPEN_CHAT_TICKETS.execute(connection, params):
        ticket = TicketRef(*columns)
        newest.setdefault((inbox_id, ticket.contact_id), ticket)
    for line in lines:
        assert line.contact is not None
        line.ticket = newest.get((line.message.inbox.id, line.contact[0]))
    return [line for line in lines if line.ticket is not None and can_append(line.ticket)]


async def _lock_contacts(uow: UnitOfWork, contact_ids: Iterable[int]) -> None:
    for contact_id in contact_ids:
        await xact_lock(uow.session, LOCK_CONTACT, contact_id)
