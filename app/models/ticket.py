"""Tickets, their ordered timeline, and files attached to them."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import Index, UniqueConstraint
from sqlmodel import Field, SQLModel

from app.models.base import (
    created_at_field,
    datetime_field,
    json_field,
    never_reused_ids,
    not_null_index,
)


class TicketStatus(StrEnum):
    new = "new"
    open = "open"
    pending = "pending"
    resolved = "resolved"
    closed = "closed"


class Priority(StrEnum):
    low = "low"
    normal = "normal"
    high = "high"
    urgent = "urgent"


class Channel(StrEnum):
    chat = "chat"
    email = "email"
    voice = "voice"
    api = "api"


class Ticket(SQLModel, table=True):
    __table_args__ = (
        UniqueConstraint("workspace_id", "number"),
        Index("ix_ticket_ws_updated", "workspace_id", "updated_at", "id"),
        Index("ix_ticket_ws_status", "workspace_id", "status"),
        # An agent's (or nobody's) tickets, newest first: the console's "mine" and
        # "unassigned" views, read in order up to a page whatever their number.
        Index("ix_ticket_ws_assignee_updated", "workspace_id", "assignee_id", "updated_at", "id"),
        # An agent's active tickets (routing's capacity, the supervisor's load) without
        # their whole history; also serves the foreign key.
        Index("ix_ticket_assignee_status", "assignee_id", "status"),
        # A team's queue (its unassigned tickets in some statuses), for routing and the
        # visitor's place in line, without the team's history; also the foreign key's.
        Index("ix_ticket_team_queue", "team_id", "assignee_id", "status"),
        not_null_index("ticket", "merged_into_id"),
        never_reused_ids(),
    )

    id: int | None = Field(default=None, primary_key=True)
    workspace_id: int = Field(foreign_key="workspace.id", index=True, ondelete="CASCADE")
    number: int
    subject: str = Field(default="", max_length=500)
    status: TicketStatus = Field(default=TicketStatus.new)
    priority: Priority = Field(default=Priority.normal)
    channel: Channel = Field(default=Channel.api)
    contact_id: int | None = Field(
        default=None, foreign_key="contact.id", index=True, ondelete="SET NULL"
    )
    assignee_id: int | None = Field(default=None, foreign_key="agent.id", ondelete="SET NULL")
    team_id: int | None = Field(default=None, foreign_key="team.id", ondelete="SET NULL")
    # No index of its own: without statistics SQLite would take it for "this
    # contact's ticket in this inbox" and read every ticket of the inbox. Deleting an
    # inbox (rare) scans the tickets instead.
    inbox_id: int | None = Field(default=None, foreign_key="inbox.id", ondelete="SET NULL")
    tags: list[str] = json_field(list)
    custom_fields: dict[str, Any] = json_field()
    participants: list[str] = json_field(list)
    last_seq: int = Field(default=0)
    merged_into_id: int | None = Field(default=None, foreign_key="ticket.id")
    created_at: datetime = created_at_field()
    updated_at: datetime = created_at_field()
    first_response_at: datetime | None = datetime_field()
    resolved_at: datetime | None = datetime_field()
    closed_at: datetime | None = datetime_field()
    due_at: datetime | None = datetime_field()


class ActorType(StrEnum):
    agent = "agent"
    contact = "contact"
    system = "system"
    api = "api"


class EventKind(StrEnum):
    message = "message"  # chat message from either side
    email_in = "email_in"
    email_out = "email_out"
    reply = "reply"  # agent reply not yet bound to a channel (REST)
    note = "note"
    status = "status"
    assignment = "assignment"
    update = "update"
    merged = "merged"
    call = "call"
    recording = "recording"
    attachment = "attachment"


# Kinds a customer may see on the widget; notes and internal bookkeeping never leave.
CUSTOMER_VISIBLE_KINDS = frozenset(
    {EventKind.message, EventKind.email_in, EventKind.email_out, EventKind.reply, EventKind.call}
)


class TicketEvent(SQLModel, table=True):
    __tablename__ = "ticket_event"
    # The two unique indexes also serve lookups by workspace or ticket alone (and the
    # cascades): single-column indexes on them cost every message an index insert
    # for nothing (0005 dropped them).
    __table_args__ = (
        UniqueConstraint("ticket_id", "seq"),
        UniqueConstraint("workspace_id", "client_id"),
        never_reused_ids(),
    )

    id: int | None = Field(default=None, primary_key=True)
    workspace_id: int = Field(foreign_key="workspace.id", ondelete="CASCADE")
    ticket_id: int = Field(foreign_key="ticket.id", ondelete="CASCADE")
    seq: int
    kind: EventKind
    actor_type: ActorType = Field(default=ActorType.system)
    actor_id: int | None = None
    actor_name: str = Field(default="", max_length=200)
    body: str = Field(default="")
    payload: dict[str, Any] = json_field()
    internal: bool = Field(default=False)
    client_id: str | None = Field(default=None, max_length=64)
    created_at: datetime = created_at_field()


class Attachment(SQLModel, table=True):
    __table_args__ = (never_reused_ids(),)

    id: int | None = Field(default=None, primary_key=True)
    workspace_id: int = Field(foreign_key="workspace.id", index=True, ondelete="CASCADE")
    ticket_id: int | None = Field(
        default=None, foreign_key="ticket.id", index=True, ondelete="CASCADE"
    )
    event_id: int | None = Field(
        index=True, default=None, foreign_key="ticket_event.id", ondelete="SET NULL"
    )
    filename: str = Field(max_length=255)
    content_type: str = Field(max_length=255)
    size: int
    sha256: str = Field(max_length=64)
    storage_key: str = Field(max_length=255)
    content_id: str | None = Field(default=None, max_length=255)
    inline: bool = Field(default=False)
    created_at: datetime = created_at_field()
