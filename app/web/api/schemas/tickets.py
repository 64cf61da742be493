"""Ticket shapes."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

from app.models import Priority, TicketStatus
from app.web.api.schemas.common import CustomFields, Email, ObjectId, Strict


class ContactRef(Strict):
    id: ObjectId | None = Field(default=None, description="An existing contact.")
    email: Email | None = Field(default=None, description="Found or created by this address.")
    name: str = Field(default="", max_length=200)
    external_id: str | None = Field(default=None, min_length=1, max_length=254)


class TicketCreate(Strict):
    subject: str = Field(default="", max_length=500)
    contact: ContactRef | None = None
    message: str | None = Field(
        default=None, max_length=100_000, description="First message, authored by the contact."
    )
    priority: Priority = Priority.normal
    tags: list[str] = Field(default_factory=list, max_length=50)
    team_id: ObjectId | None = None
    assignee_id: ObjectId | None = None
    inbox_id: ObjectId | None = None
    custom_fields: CustomFields = Field(default_factory=dict)


class TicketUpdate(Strict):
    subject: str | None = Field(default=None, max_length=500)
    status: TicketStatus | None = None
    priority: Priority | None = None
    assignee_id: ObjectId | None = None
    team_id: ObjectId | None = None
    tags: list[str] | None = Field(default=None, max_length=50)
    custom_fields: CustomFields | None = None


class TicketOut(BaseModel):
    id: int
    number: int
    subject: str
    status: TicketStatus
    priority: Priority
    channel: str
    contact_id: int | None
    assignee_id: int | None
    team_id: int | None
    inbox_id: int | None
    tags: list[str]
    custom_fields: dict[str, Any]
    participants: list[str]
    last_seq: int
    merged_into_id: int | None
    created_at: str
    updated_at: str
    first_response_at: str | None
    resolved_at: str | None
    closed_at: str | None
    due_at: str | None


class ReplyCreate(Strict):
    body: str = Field(max_length=100_000)
    client_id: str | None = Field(
        default=None, min_length=1, max_length=64, description="Idempotency key for this reply."
    )
    attachment_ids: list[ObjectId] = Field(default_factory=list, max_length=20)


class NoteCreate(Strict):
    body: str = Field(min_length=1, max_length=100_000)
    client_id: str | None = Field(default=None, min_length=1, max_length=64)


class MergeRequest(Strict):
    source_ticket_id: ObjectId = Field(description="This ticket is closed and its timeline copied.")
