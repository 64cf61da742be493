"""Tickets: create, change, reply, note, merge, and the scoped queries behind every view."""

from __future__ import annotations

import base64
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, and_, bindparam, case, exists, func, or_, text, update
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from app.events import UnitOfWork, workspace_topic
from app.models import (
    ActorType,
    AgentTeam,
    Channel,
    Priority,
    Ticket,
    TicketEvent,
    TicketStatus,
    Workspace,
)
from app.models.base import utcnow
from app.models.ticket import EventKind
from app.services import webhook_outbox
from app.services.actors import Actor
from app.services.errors import Conflict, Forbidden, Invalid, NotFound
from app.services.row_insert import core_connection, insert_row
from app.services.sql_dialect import is_postgres, without_index
from app.services.timeline import Columns, Fields, do_append_event, find_by_client_id, iso
from app.services.workspaces import get_agent, get_inbox, get_team

MAX_TAGS = 50
MAX_TAG_LEN = 64
MAX_SUBJECT = 500


def ticket_public(ticket: Ticket) -> dict[str, Any]:
    return ticket_fields_public(Columns(ticket))


def ticket_fields_public(v: Fields) -> dict[str, Any]:
    return {
        "id": v["id"],
        "number": v["number"],
        "subject": v["subject"],
        "status": v["status"].value,
        "priority": v["priority"].value,
        "channel": v["channel"].value,
        "contact_id": v["contact_id"],
        "assignee_id": v["assignee_id"],
        "team_id": v["team_id"],
        "inbox_id": v["inbox_id"],
        "tags": v["tags"],
        "custom_fields": v["custom_fields"],
        "participants": v["participants"],
        "last_seq": v["last_seq"],
        "merged_into_id": v["merged_into_id"],
        "created_at": iso(v["created_at"]),
        "updated_at": iso(v["updated_at"]),
        "first_response_at": iso(v["first_response_at"]),
        "resolved_at": iso(v["resolved_at"]),
        "closed_at": iso(v["closed_at"]),
        "due_at": iso(v["due_at"]),
    }


def check_tags(tags: Sequence[str]) -> list[str]:
    cleaned: list[str] = []
    for tag in tags:
        tag = tag.strip().lower()
        if not tag or len(tag) > MAX_TAG_LEN:
            raise Invalid(f"tags must be 1 to {MAX_TAG_LEN} characters")
        if tag not in cleaned:
            cleaned.append(tag)
    if len(cleaned) > MAX_TAGS:
        raise Invalid(f"at most {MAX_TAGS} tags")
    return cleaned


def check_subject(subject: str) -> str:
    subject = " ".join(subject.split())
    if len(subject) > MAX_SUBJECT:
        raise Invalid(f"subject is longer than {MAX_SUBJECT} characters")
    return subject


def visibility_clause(actor: Actor) -> ColumnElement[bool] | None:
    """Agents bound to teams see their teams' tickets, unteamed ones and their own."""
    if actor.type is ActorType.contact:
        return col(Ticket.contact_id) == actor.id
    if actor.sees_all_tickets:
        return None
    return or_(
        col(Ticket.team_id).is_(None),
        col(Ticket.team_id).in_(sorted(actor.team_ids)),
        col(Ticket.assignee_id) == actor.id,
    )


def can_see(actor: Actor, ticket: Ticket) -> bool:
    if ticket.workspace_id != actor.workspace_id:
        return False
    if actor.type is ActorType.contact:
        return ticket.contact_id == actor.id
    if actor.sees_all_tickets:
        return True
    return (
        ticket.team_id is None
        or ticket.team_id in actor.team_ids
        or (ticket.assignee_id is not None and ticket.assignee_id == actor.id)
    )


async def get_ticket(session: AsyncSession, actor: Actor, ticket_id: int) -> Ticket:
    ticket = await session.get(Ticket, ticket_id)
    if ticket is None or not can_see(actor, ticket):
        raise NotFound("ticket not found")
    return ticket


async def get_ticket_by_number(
    session: AsyncSession, workspace_id: int, number: int
) -> Ticket | None:
    stmt = select(Ticket).where(Ticket.workspace_id == workspace_id, Ticket.number == number)
    return (await session.exec(stmt)).first()


# Built once: on the ticket-create path, building it costs more than running it.
# No loaded object tracks the counter, so the ORM need not synchronise anything.
_NEXT_NUMBER = (
    update(Workspace)
    .where(col(Workspace.id) == bindparam("workspace_id"))
    .values(ticket_counter=col(Workspace.ticket_counter) + 1)
    .returning(col(Workspace.ticket_counter))
    .execution_options(synchronize_session=False)
)


async def _next_number(session: AsyncSession, workspace_id: int) -> int:
    params = {"workspace_id": workspace_id}
    return int((await session.exec(_NEXT_NUMBER, params=params)).scalar_one())


_TAKE_NUMBERS = (
    update(Workspace)
    .where(col(Workspace.id) == bindparam("workspace_id"))
    .values(ticket_counter=col(Workspace.ticket_counter) + bindparam("count"))
    .returning(col(Workspace.ticket_counter))
    .execution_options(synchronize_session=False)
)
_RETURN_NUMBERS = (
    update(Workspace)
    .where(
        col(Workspace.id) == bindparam("workspace_id"),
        col(Workspace.ticket_counter) == bindparam("top"),
    )
    .values(ticket_counter=bindparam("last"))
    .execution_options(synchronize_session=False)
)


async def take_numbers(session: AsyncSession, workspace_id: int, count: int) -> range:
    """Reserve `count` ticket numbers at once, for tickets this transaction creates
    (`do_create_ticket(number=...)`); hand the unused ones back with `return_numbers`.
    Core statements: an ORM one costs about three times as much, on a hot path."""
    params = {"workspace_id": workspace_id, "count": count}
    connection = await core_connection(session)
    top = int((await connection.execute(_TAKE_NUMBERS, params)).scalar_one())
    return range(top - count + 1, top + 1)


async def return_numbers(session: AsyncSession, workspace_id: int, unused: range) -> None:
    """Give back the unused tail of `take_numbers`, so numbers stay gap-free; only if
    nobody took a number after it (this transaction holds the counter, so only itself)."""
    if unused:
        params = {"workspace_id": workspace_id, "top": unused[-1], "last": unused[0] - 1}
        connection = await core_connection(session)
        await connection.execute(_RETURN_NUMBERS, params)


async def _check_refs(
    session: AsyncSession,
    workspace_id: int,
    *,
    team_id: int | None = None,
    assignee_id: int | None = None,
    inbox_id: int | None = None,
    contact_id: int | None = None,
) -> None:
    from app.services.contacts import get_contact

    if team_id is not None:
        await get_team(session, workspace_id, team_id)
    if assignee_id is not None:
        agent = await get_agent(session, workspace_id, assignee_id)
        if not agent.is_active:
            raise Invalid("cannot assign to a deactivated agent")
    if inbox_id is not None:
        await get_inbox(session, workspace_id, inbox_id)
    if contact_id is not None:
        await get_contact(session, workspace_id, contact_id)


async def do_create_ticket(
    uow: UnitOfWork,
    actor: Actor,
    *,
    subject: str = "",
    contact_id: int | None = None,
    channel: Channel = Channel.api,
    inbox_id: int | None = None,
    priority: Priority = Priority.normal,
    tags: Sequence[str] = (),
    team_id: int | None = None,
    assignee_id: int | None = None,
    custom_fields: dict[str, Any] | None = None,
    message: str | None = None,
    message_kind: EventKind = EventKind.message,
    message_actor: Actor | None = None,
    message_payload: dict[str, Any] | None = None,
    client_id: str | None = None,
    number: int | None = None,
) -> tuple[Ticket, TicketEvent | None]:
    """Open a ticket, optionally with its first message (authored by the contact).

    `number`: one this transaction reserved with `take_numbers`; else the next one."""
    ws = actor.workspace_id
    # Callers dedupe first; reaching here with a known id would attach another
    # ticket's message to a new ticket.
    if client_id is not None and await find_by_client_id(uow.session, ws, client_id):
        raise Conflict("client_id was already used for another message")
    await _check_refs(
        uow.session,
        ws,
        team_id=team_id,
        assignee_id=assignee_id,
        inbox_id=inbox_id,
        contact_id=contact_id,
    )
    if team_id is not None and not actor.sees_all_tickets and team_id not in actor.team_ids:
        raise Forbidden("you cannot create tickets for another team")
    now = utcnow()
    # The first message takes seq 1 in the ticket's own INSERT: the row is new in this
    # transaction, so nobody else can append to it (saves the counter UPDATE).
    reserve = message is not None and client_id is None
    ticket = Ticket(
        workspace_id=ws,
        number=number if number is not None else await _next_number(uow.session, ws),
        subject=check_subject(subject),
        status=TicketStatus.new if assignee_id is None else TicketStatus.open,
        priority=priority,
        channel=channel,
        contact_id=contact_id,
        team_id=team_id,
        assignee_id=assignee_id,
        inbox_id=inbox_id,
        tags=check_tags(tags),
        custom_fields=custom_fields or {},
        # Passed, not defaulted: pydantic inspects a default_factory's signature per call.
        participants=[],
        last_seq=1 if reserve else 0,
        created_at=now,
        updated_at=now,
    )
    await insert_row(uow.session, ticket)
    first: TicketEvent | None = None
    if message is not None:
        first, _ = await do_append_event(
            uow,
            ticket,
            kind=message_kind,
            actor=message_actor or actor,
            body=message,
            payload=message_payload,
            client_id=client_id,
            reserved_seq=1 if reserve else None,
        )
    await announce_created(uow, ws, ticket_public(ticket))
    return ticket, first


async def announce_created(uow: UnitOfWork, workspace_id: int, public: dict[str, Any]) -> None:
    """A new ticket (`ticket_public`), to the workspace once committed and to webhooks."""
    uow.publish_on_commit(
        workspace_topic(workspace_id), {"type": "ticket.created", "ticket": public}
    )
    await webhook_outbox.enqueue(uow, workspace_id, "ticket.created", public)


STATUS_TIMESTAMPS = {TicketStatus.resolved: "resolved_at", TicketStatus.closed: "closed_at"}


async def do_update_ticket(
    uow: UnitOfWork, actor: Actor, ticket_id: int, changes: dict[str, Any]
) -> Ticket:
    """Apply field changes; each one lands on the timeline as a system event."""
    ticket = await get_ticket(uow.session, actor, ticket_id)
    if ticket.merged_into_id is not None:
        raise Conflict("this ticket was merged; change the ticket it was merged into")
    changes = {k: v for k, v in changes.items() if getattr(ticket, k) != v}
    if not changes:
        return ticket
    await _check_refs(
        uow.session,
        actor.workspace_id,
        team_id=changes.get("team_id"),
        assignee_id=changes.get("assignee_id"),
    )
    if "tags" in changes:
        changes["tags"] = check_tags(changes["tags"])
    if "subject" in changes:
        changes["subject"] = check_subject(changes["subject"])
    before = {k: _plain(getattr(ticket, k)) for k in changes}
    for key, value in changes.items():
        setattr(ticket, key, value)
    now = utcnow()
    if "status" in changes:
        stamp = STATUS_TIMESTAMPS.get(changes["status"])
        if stamp:
            setattr(ticket, stamp, now)
        if changes["status"] in (TicketStatus.new, TicketStatus.open, TicketStatus.pending):
            ticket.resolved_at = None
            ticket.closed_at = None
    if "assignee_id" in changes and ticket.status is TicketStatus.new and ticket.assignee_id:
        ticket.status = TicketStatus.open
    uow.session.add(ticket)
    after = {k: _plain(getattr(ticket, k)) for k in changes}
    for kind, keys in (
        (EventKind.status, ("status",)),
        (EventKind.assignment, ("assignee_id", "team_id")),
    ):
        part = {k: {"from": before[k], "to": after[k]} for k in keys if k in changes}
        if part:
            await do_append_event(uow, ticket, kind=kind, actor=actor, payload={"changes": part})
    rest = {
        k: {"from": before[k], "to": after[k]}
        for k in changes
        if k not in ("status", "assignee_id", "team_id")
    }
    if rest:
        await do_append_event(
            uow, ticket, kind=EventKind.update, actor=actor, payload={"changes": rest}
        )
    public = ticket_public(ticket)
    uow.publish_on_commit(
        workspace_topic(ticket.workspace_id),
        {"type": "ticket.updated", "ticket": public, "changes": sorted(changes)},
    )
    await webhook_outbox.enqueue(
        uow,
        ticket.workspace_id,
        "ticket.updated",
        {"ticket": public, "changes": {**rest}} | {"changed_fields": sorted(changes)},
    )
    return ticket


def _plain(value: Any) -> Any:
    return value.value if hasattr(value, "value") else value


REOPEN_ON_CUSTOMER = (TicketStatus.pending, TicketStatus.resolved, TicketStatus.closed)


async def do_customer_message(
    uow: UnitOfWork,
    ticket: Ticket,
    actor: Actor,
    *,
    body: str,
    kind: EventKind = EventKind.message,
    payload: dict[str, Any] | None = None,
    client_id: str | None = None,
    client_id_checked: bool = False,
) -> tuple[TicketEvent, bool]:
    """A message from the customer; it reopens a ticket that was waiting or done."""
    event, created = await do_append_event(
        uow,
        ticket,
        kind=kind,
        actor=actor,
        body=body,
        payload=payload,
        client_id=client_id,
        client_id_checked=client_id_checked,
    )
    if created and ticket.status in REOPEN_ON_CUSTOMER:
        system = Actor.system(ticket.workspace_id)
        await do_update_ticket(uow, system, ticket.id or 0, {"status": TicketStatus.open})
    return event, created


def reply_kind(ticket: Ticket) -> EventKind:
    return {
        Channel.chat: EventKind.message,
        Channel.voice: EventKind.message,
        Channel.email: EventKind.email_out,
    }.get(ticket.channel, EventKind.reply)


async def do_reply(
    uow: UnitOfWork,
    actor: Actor,
    ticket_id: int,
    *,
    body: str,
    client_id: str | None = None,
    payload: dict[str, Any] | None = None,
    kind: EventKind | None = None,
) -> tuple[TicketEvent, bool]:
    """A public answer to the customer on the ticket's channel."""
    ticket = await get_ticket(uow.session, actor, ticket_id)
    if not body.strip() and not (payload or {}).get("attachments"):
        raise Invalid("a reply needs a body")
    event, created = await do_append_event(
        uow,
        ticket,
        kind=kind or reply_kind(ticket),
        actor=actor,
        body=body,
        payload=payload,
        client_id=client_id,
    )
    if created and ticket.status is TicketStatus.new:
        await do_update_ticket(uow, actor, ticket_id, {"status": TicketStatus.open})
    return event, created


async def do_note(
    uow: UnitOfWork, actor: Actor, ticket_id: int, *, body: str, client_id: str | None = None
) -> tuple[TicketEvent, bool]:
    ticket = await get_ticket(uow.session, actor, ticket_id)
    if not body.strip():
        raise Invalid("a note needs a body")
    return await do_append_event(
        uow,
        ticket,
        kind=EventKind.note,
        actor=actor,
        body=body,
        internal=True,
        client_id=client_id,
    )


async def do_merge_tickets(uow: UnitOfWork, actor: Actor, target_id: int, source_id: int) -> Ticket:
    """Copy the source's timeline onto the target (in order) and close the source.

    The source keeps its own log so its seqs stay gap-free; copies carry a pointer
    to where they came from.
    """
    if target_id == source_id:
        raise Invalid("cannot merge a ticket into itself")
    target = await get_ticket(uow.session, actor, target_id)
    source = await get_ticket(uow.session, actor, source_id)
    if source.merged_into_id is not None or target.merged_into_id is not None:
        raise Conflict("one of these tickets was already merged")
    stmt = (
        select(TicketEvent).where(TicketEvent.ticket_id == source_id).order_by(col(TicketEvent.seq))
    )
    for old in (await uow.session.exec(stmt)).all():
        copy_actor = Actor(
            workspace_id=actor.workspace_id,
            type=old.actor_type,
            id=old.actor_id,
            name=old.actor_name,
        )
        await do_append_event(
            uow,
            target,
            kind=old.kind,
            actor=copy_actor,
            body=old.body,
            payload={**old.payload, "merged_from": {"ticket_id": source_id, "seq": old.seq}},
            internal=old.internal,
        )
    target.tags = check_tags([*target.tags, *source.tags])
    target.participants = sorted(set(target.participants) | set(source.participants))
    uow.session.add(target)
    await do_append_event(
        uow,
        target,
        kind=EventKind.merged,
        actor=actor,
        payload={"source_ticket_id": source_id, "source_number": source.number},
    )
    await do_append_event(
        uow,
        source,
        kind=EventKind.merged,
        actor=actor,
        payload={"target_ticket_id": target_id, "target_number": target.number},
    )
    await do_update_ticket(uow, actor, source_id, {"status": TicketStatus.closed})
    source.merged_into_id = target_id
    uow.session.add(source)
    return target


# -- queries -----------------------------------------------------------------------


SORTS: dict[str, tuple[Any, bool]] = {
    "updated_at": (Ticket.updated_at, False),
    "-updated_at": (Ticket.updated_at, True),
    # A ticket's id is taken when it is created (and never reused), so creation order
    # is id order, which `(workspace_id, id)` serves. An index on created_at would
    # serve it too, but SQLite without statistics then walked it from the oldest ticket
    # for the routing queue's "oldest waiting chat".
    "created_at": (Ticket.id, False),
    "-created_at": (Ticket.id, True),
    "number": (Ticket.number, False),
    "-number": (Ticket.number, True),
    "priority": (Ticket.priority, False),
    "-priority": (Ticket.priority, True),
}

# Priorities are stored as their names; sorted as text they would come out high,
# low, normal, urgent. Sorting and cursors use this rank instead.
PRIORITY_RANK = {p: rank for rank, p in enumerate(Priority)}
_PRIORITY_ORDER = case(
    {p.value: rank for p, rank in PRIORITY_RANK.items()}, value=col(Ticket.priority), else_=-1
)


def _sort_expression(column: Any) -> Any:
    return _PRIORITY_ORDER if column.key == "priority" else col(column)


@dataclass
class TicketFilter:
    status: list[TicketStatus] = field(default_factory=list)
    assignee_id: int | None = None
    unassigned: bool = False
    team_id: int | None = None
    tag: str | None = None
    contact_id: int | None = None
    channel: Channel | None = None
    priority: Priority | None = None
    updated_since: datetime | None = None
    q: str | None = None
    ticket_ids: list[int] | None = None


def encode_cursor(values: list[Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(values, default=str).encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> list[Any]:
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        values = json.loads(base64.urlsafe_b64decode(padded.encode()))
    except (ValueError, UnicodeDecodeError):
        raise Invalid("cursor is not valid") from None
    if not isinstance(values, list) or len(values) != 2:
        raise Invalid("cursor is not valid")
    return values


def tag_clause(session: AsyncSession, tag: str) -> ColumnElement[bool]:
    # Bound on the text clause itself: ClauseElement.params() is deprecated in SQLAlchemy 2.1.
    if is_postgres(session):
        return text("CAST(ticket.tags AS JSONB) ? :tag").bindparams(tag=tag)  # type: ignore[return-value]
    return exists(
        select(1)
        .select_from(func.json_each(Ticket.tags))
        .where(text("value = :tag").bindparams(tag=tag))
    )


async def list_tickets(
    session: AsyncSession,
    actor: Actor,
    filters: TicketFilter,
    *,
    sort: str = "-updated_at",
    limit: int = 50,
    cursor: str | None = None,
) -> tuple[Sequence[Ticket], str | None]:
    if sort not in SORTS:
        raise Invalid(f"sort must be one of {', '.join(SORTS)}")
    column, descending = SORTS[sort]
    # A contact's tickets or a search's matches are few: they must drive, not the
    # workspace's index (see `without_index`).
    narrow = filters.contact_id is not None or bool(filters.q)
    workspace = without_index(session, col(Ticket.workspace_id)) if narrow else Ticket.workspace_id
    # Besides the workspace: also what a search's candidates are drawn from.
    conditions: list[ColumnElement[bool]] = []
    clause = visibility_clause(actor)
    if clause is not None:
        conditions.append(clause)
    if filters.status:
        conditions.append(col(Ticket.status).in_(filters.status))
    if filters.assignee_id is not None:
        conditions.append(col(Ticket.assignee_id) == filters.assignee_id)
    if filters.unassigned:
        conditions.append(col(Ticket.assignee_id).is_(None))
    if filters.team_id is not None:
        conditions.append(col(Ticket.team_id) == filters.team_id)
    if filters.contact_id is not None:
        conditions.append(col(Ticket.contact_id) == filters.contact_id)
    if filters.channel is not None:
        conditions.append(col(Ticket.channel) == filters.channel)
    if filters.priority is not None:
        conditions.append(col(Ticket.priority) == filters.priority)
    if filters.updated_since is not None:
        conditions.append(col(Ticket.updated_at) >= filters.updated_since)
    if filters.tag:
        conditions.append(tag_clause(session, filters.tag.strip().lower()))
    if filters.ticket_ids is not None:
        conditions.append(col(Ticket.id).in_(filters.ticket_ids))
    stmt = select(Ticket).where(workspace == actor.workspace_id, *conditions)
    if filters.q:
        from app.services.search import matching_tickets

        stmt = stmt.where(matching_tickets(session, actor.workspace_id, filters.q, conditions))
    if cursor:
        raw_value, last_id = decode_cursor(cursor)
        if not _is_db_int(last_id):
            raise Invalid("cursor is not valid")
        value = _cursor_value(column, raw_value)
        cmp_col = _sort_expression(column)
        if descending:
            stmt = stmt.where(
                or_(cmp_col < value, and_(cmp_col == value, col(Ticket.id) < last_id))
            )
        else:
            stmt = stmt.where(
                or_(cmp_col > value, and_(cmp_col == value, col(Ticket.id) > last_id))
            )
    key = _sort_expression(column)
    order = [key.desc(), col(Ticket.id).desc()] if descending else [key.asc(), col(Ticket.id).asc()]
    stmt = stmt.order_by(*order).limit(limit + 1)
    rows = list((await session.exec(stmt)).all())
    next_cursor = None
    if len(rows) > limit:
        rows = rows[:limit]
        last = rows[-1]
        next_cursor = encode_cursor([_plain(getattr(last, column.key)), last.id])
    return rows, next_cursor


def _is_db_int(value: Any) -> bool:
    """A value that fits a 64-bit integer column (anything else overflows the driver)."""
    return isinstance(value, int) and not isinstance(value, bool) and abs(value) < 2**63


def _cursor_value(column: Any, raw: Any) -> Any:
    if column.key in ("updated_at", "created_at"):
        try:
            return datetime.fromisoformat(str(raw))
        except ValueError:
            raise Invalid("cursor is not valid") from None
    if column.key in ("number", "id"):
        if not _is_db_int(raw):
            raise Invalid("cursor is not valid")
        return raw
    if column.key == "priority":
        try:
            return PRIORITY_RANK[Priority(raw)]
        except ValueError:
            raise Invalid("cursor is not valid") from None
    return raw


async def agents_in_team(session: AsyncSession, team_id: int) -> list[int]:
    rows = await session.exec(select(AgentTeam.agent_id).where(AgentTeam.team_id == team_id))
    return list(rows.all())
