"""The per-ticket event log: gap-free `seq`, idempotent client ids, publish after commit."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime
from typing import Any, Protocol

from sqlalchemy import bindparam, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm.attributes import set_committed_value
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from app.events import (
    TicketEventPublished,
    UnitOfWork,
    contact_topic,
    ticket_topic,
    workspace_topic,
)
from app.models import ActorType, Ticket, TicketEvent
from app.models.base import TZDateTime, utcnow
from app.models.ticket import CUSTOMER_VISIBLE_KINDS, EventKind
from app.services import webhook_outbox
from app.services.actors import Actor
from app.services.errors import Invalid
from app.services.row_insert import core_connection, insert_row
from app.services.sql_dialect import dialect_of

MAX_BODY_CHARS = 100_000

# Channels hook in here to act inside the same transaction (e.g. the email outbox).
EventHook = Callable[[UnitOfWork, Ticket, TicketEvent], Awaitable[None]]
event_hooks: list[EventHook] = []


def iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


class Fields(Protocol):
    """A row's columns by name: a dict of values, or `Columns` of an ORM object."""

    def __getitem__(self, name: str, /) -> Any: ...


class Columns:
    """An ORM object's attributes as `Fields`, so one function renders a stored row
    and a row still given as values (`ticket_batch`) alike."""

    __slots__ = ("row",)

    def __init__(self, row: object) -> None:
        self.row = row

    def __getitem__(self, name: str, /) -> Any:
        return getattr(self.row, name)


def event_public(event: TicketEvent) -> dict[str, Any]:
    return event_fields_public(Columns(event))


def event_fields_public(v: Fields) -> dict[str, Any]:
    return {
        "id": v["id"],
        "ticket_id": v["ticket_id"],
        "seq": v["seq"],
        "kind": v["kind"].value,
        "author": {"type": v["actor_type"].value, "id": v["actor_id"], "name": v["actor_name"]},
        "body": v["body"],
        "payload": v["payload"],
        "internal": v["internal"],
        "client_id": v["client_id"],
        "created_at": iso(v["created_at"]),
    }


def customer_visible(event: TicketEvent) -> bool:
    return not event.internal and event.kind in CUSTOMER_VISIBLE_KINDS


# Hot lookups are built once with bind parameters: building a select costs more
# than SQLite takes to answer it.
_BY_CLIENT_ID = select(TicketEvent).where(
    TicketEvent.workspace_id == bindparam("workspace_id"),
    TicketEvent.client_id == bindparam("client_id"),
)


_ID_BY_CLIENT_ID = select(TicketEvent.id).where(
    TicketEvent.workspace_id == bindparam("workspace_id"),
    TicketEvent.client_id == bindparam("client_id"),
)


async def find_by_client_id(
    session: AsyncSession, workspace_id: int, client_id: str
) -> TicketEvent | None:
    params = {"workspace_id": workspace_id, "client_id": client_id}
    # Nearly always a new id: ask for it through Core (a third of what an ORM query
    # costs) and load the entity only when there is one.
    connection = await core_connection(session)
    if (await connection.execute(_ID_BY_CLIENT_ID, params)).first() is None:
        return None
    return (await session.exec(_BY_CLIENT_ID, params=params)).first()


# One atomic UPDATE ... RETURNING: the row lock (PostgreSQL) or the write lock
# (SQLite, BEGIN IMMEDIATE) serialises concurrent appenders, so seqs never gap
# or collide and nobody reads a stale counter. Built once (building it costs more
# than running it); the caller syncs the ticket itself, so no ORM synchronisation.
_NEXT_SEQ = (
    update(Ticket)
    .where(col(Ticket.id) == bindparam("ticket_id"))
    .values(last_seq=col(Ticket.last_seq) + 1, updated_at=bindparam("now", type_=TZDateTime()))
    .returning(col(Ticket.last_seq))
    .execution_options(synchronize_session=False)
)


async def _next_seq(session: AsyncSession, ticket: Ticket, now: datetime) -> int:
    params = {"ticket_id": ticket.id, "now": now}
    # Core, not session.exec: the ORM's bulk-update path adds several times the cost
    # of the statement, for a synchronisation done by hand just below anyway.
    connection = await core_connection(session)
    seq = int((await connection.execute(_NEXT_SEQ, params)).scalar_one())
    set_committed_value(ticket, "last_seq", seq)
    set_committed_value(ticket, "updated_at", now)
    return seq


async def _store(
    session: AsyncSession,
    ticket: Ticket,
    event: TicketEvent,
    now: datetime,
    reserved_seq: int | None = None,
) -> None:
    if reserved_seq is not None:
        event.seq = reserved_seq
    else:
        event.seq = await _next_seq(session, ticket, now)
    await insert_row(session, event)


async def do_append_event(
    uow: UnitOfWork,
    ticket: Ticket,
    *,
    kind: EventKind,
    actor: Actor,
    body: str = "",
    payload: dict[str, Any] | None = None,
    internal: bool = False,
    client_id: str | None = None,
    reserved_seq: int | None = None,
    client_id_checked: bool = False,
) -> tuple[TicketEvent, bool]:
    """Append to the ticket's timeline. Returns (event, created); a known client_id
    returns the event stored the first time and writes nothing.

    `client_id_checked`: the caller looked the client_id up in this transaction
    and found nothing; the insert's savepoint still catches a concurrent writer.

    `reserved_seq`: the caller inserted the ticket in this transaction with its
    `last_seq` already counting this event (no other writer can see the row yet),
    so the counter UPDATE is skipped. Not with a client_id (its savepoint retry
    would leave the reserved seq unused).
    """
    assert ticket.id is not None
    assert reserved_seq is None or client_id is None
    if len(body) > MAX_BODY_CHARS:
        raise Invalid(f"body is longer than {MAX_BODY_CHARS} characters")
    if client_id is not None:
        if not 1 <= len(client_id) <= 64:
            raise Invalid("client_id must be 1 to 64 characters")
        if not client_id_checked:
            existing = await find_by_client_id(uow.session, ticket.workspace_id, client_id)
            if existing is not None:
                return existing, False
    now = utcnow()
    event = TicketEvent(
        workspace_id=ticket.workspace_id,
        ticket_id=ticket.id,
        seq=0,
        kind=kind,
        actor_type=actor.type,
        actor_id=actor.id,
        actor_name=actor.name,
        body=body,
        payload=payload or {},
        internal=internal,
        client_id=client_id,
        created_at=now,
    )
    if client_id is None or dialect_of(uow.session) == "sqlite":
        # SQLite serialises writers (BEGIN IMMEDIATE holds the lock from the start; a
        # deferred transaction cannot upgrade a stale snapshot), so the client_id
        # looked up in this transaction cannot have been stored by anyone since: the
        # savepoint below, two statements and an ORM nested transaction, buys nothing.
        await _store(uow.session, ticket, event, now, reserved_seq)
    else:
        # Two writers with the same new client_id can both pass the lookup above (on
        # PostgreSQL; SQLite's BEGIN IMMEDIATE serialises them); the second INSERT then
        # hits the unique constraint. The savepoint also undoes that writer's seq
        # increment, so the counter stays gap-free, and the first event is returned.
        workspace_id = ticket.workspace_id
        try:
            async with uow.session.begin_nested():
                await _store(uow.session, ticket, event, now)
        except IntegrityError:
            # The savepoint rollback expired the ticket; reload it (callers keep using it).
            await uow.session.refresh(ticket)
            existing = await find_by_client_id(uow.session, workspace_id, client_id)
            if existing is None:
                raise
            return existing, False
    seq = event.seq
    if (
        actor.type is ActorType.agent
        and ticket.first_response_at is None
        and customer_visible(event)
    ):
        ticket.first_response_at = now
        uow.session.add(ticket)
    for hook in event_hooks:
        await hook(uow, ticket, event)
    await announce_event(
        uow,
        TicketEventPublished(
            workspace_id=ticket.workspace_id,
            ticket_id=ticket.id,
            seq=seq,
            kind=kind.value,
            contact_id=ticket.contact_id,
            team_id=ticket.team_id,
            internal=not customer_visible(event),
            event=event_public(event),
        ),
    )
    return event, True


async def announce_event(uow: UnitOfWork, published: TicketEventPublished) -> None:
    """Tell everyone of a stored event once the transaction commits: the workspace,
    ticket and contact topics, and the webhook outbox."""
    ws, ticket_id = published.workspace_id, published.ticket_id
    message = published.message()
    uow.publish_on_commit(workspace_topic(ws), message)
    uow.publish_on_commit(ticket_topic(ws, ticket_id), message)
    if published.contact_id is not None:
        uow.publish_on_commit(contact_topic(ws, published.contact_id), message)
    await webhook_outbox.enqueue(
        uow, ws, "ticket.event.created", {"ticket_id": ticket_id, "event": published.event}
    )


async def list_events(
    session: AsyncSession,
    ticket_id: int,
    *,
    after_seq: int = 0,
    limit: int = 100,
    customer_view: bool = False,
) -> Sequence[TicketEvent]:
    stmt = select(TicketEvent).where(
        TicketEvent.ticket_id == ticket_id, col(TicketEvent.seq) > after_seq
    )
    if customer_view:
        stmt = stmt.where(
            col(TicketEvent.internal).is_(False),
            col(TicketEvent.kind).in_(list(CUSTOMER_VISIBLE_KINDS)),
        )
    stmt = stmt.order_by(col(TicketEvent.seq)).limit(limit)
    return (await session.exec(stmt)).all()
