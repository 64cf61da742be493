"""Stored mail (both directions) and the outbox that delivers agent mail to the relay."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import Column, Index, LargeBinary, Text, UniqueConstraint
from sqlalchemy.orm import deferred
from sqlmodel import Field, SQLModel

from app.models.base import created_at_field, datetime_field, json_field, never_reused_ids


class MailDirection(StrEnum):
    inbound = "inbound"
    outbound = "outbound"


# The original bytes of a small inbound mail, kept in its row (see MailMessage).
_RAW_DATA = Column("raw_data", LargeBinary, nullable=True)


class MailMessage(SQLModel, table=True):
    """One message as it crossed the wire, with its original bytes: in the row
    (`raw_data`) for inbound mail up to `Settings.email_inline_raw_bytes`, else in
    blob storage under `raw_key`. In the row, one commit makes the mail and its source
    durable together and no file is created (creating one measured 0.5-0.8 ms of
    kernel CPU on a disk). `raw_data` is never loaded with the entity: read it on purpose
    (`email_messages.raw_bytes`); touching it on a loaded row raises.

    `message_id` is the dedupe key per inbox (a content hash when a mail has none)
    and, across the workspace, the key In-Reply-To/References thread against.
    """

    __tablename__ = "mail_message"
    __table_args__ = (
        UniqueConstraint("inbox_id", "message_id"),
        Index("ix_mail_message_ws_msgid", "workspace_id", "message_id"),
        never_reused_ids(),
    )

    id: int | None = Field(default=None, primary_key=True)
    workspace_id: int = Field(foreign_key="workspace.id", index=True, ondelete="CASCADE")
    inbox_id: int = Field(foreign_key="inbox.id", index=True, ondelete="CASCADE")
    ticket_id: int | None = Field(
        default=None, foreign_key="ticket.id", index=True, ondelete="SET NULL"
    )
    event_id: int | None = Field(
        index=True, default=None, foreign_key="ticket_event.id", ondelete="SET NULL"
    )
    direction: MailDirection
    message_id: str = Field(max_length=255)
    subject: str = Field(default="", max_length=500)
    from_address: str = Field(default="", max_length=254)
    raw_key: str | None = Field(default=None, max_length=255)
    raw_data: bytes | None = Field(default=None, sa_column=_RAW_DATA)
    size: int = Field(default=0)
    # Sanitized HTML and the unsplit text, "one click away" from the timeline entry.
    html: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    full_text: str = Field(default="", sa_column=Column(Text, nullable=False, default=""))
    auto_reasons: list[str] = json_field(list)
    parse_errors: list[str] = json_field(list)
    source: str = Field(default="smtp", max_length=16)  # smtp | imap | outbox
    created_at: datetime = created_at_field()

    __mapper_args__ = {"properties": {"raw_data": deferred(_RAW_DATA, raiseload=True)}}


class OutboxState(StrEnum):
    pending = "pending"
    sending = "sending"
    sent = "sent"
    failed = "failed"


class OutboundKind(StrEnum):
    reply = "reply"
    auto_ack = "auto_ack"


class OutboundEmail(SQLModel, table=True):
    """A message waiting for (or done with) the relay.

    The worker claims a row (`sending`, attempts+1) and commits *before* talking to
    the relay; a row found in `sending` after a crash is never retried blindly, so a
    restart cannot send the same mail twice.
    """

    __tablename__ = "outbound_email"
    __table_args__ = (
        Index("ix_outbound_email_due", "state", "next_attempt_at"),
        Index("ix_outbound_email_throttle", "inbox_id", "kind", "to_address", "created_at"),
        never_reused_ids(),
    )

    id: int | None = Field(default=None, primary_key=True)
    workspace_id: int = Field(foreign_key="workspace.id", index=True, ondelete="CASCADE")
    inbox_id: int = Field(foreign_key="inbox.id", ondelete="CASCADE")
    ticket_id: int = Field(foreign_key="ticket.id", index=True, ondelete="CASCADE")
    event_id: int | None = Field(
        index=True, default=None, foreign_key="ticket_event.id", ondelete="SET NULL"
    )
    mail_id: int = Field(index=True, foreign_key="mail_message.id", ondelete="CASCADE")
    kind: OutboundKind = Field(default=OutboundKind.reply)
    message_id: str = Field(max_length=255)
    to_address: str = Field(max_length=254)
    recipients: dict[str, Any] = json_field()  # {"to": [...], "cc": [...]}
    in_reply_to: str | None = Field(default=None, max_length=255)
    references: list[str] = json_field(list)
    state: OutboxState = Field(default=OutboxState.pending)
    attempts: int = Field(default=0)
    next_attempt_at: datetime = created_at_field()
    claimed_at: datetime | None = datetime_field()
    sent_at: datetime | None = datetime_field()
    last_error: str = Field(default="", max_length=1000)
    created_at: datetime = created_at_field()
