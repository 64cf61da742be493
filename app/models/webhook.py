"""Webhook subscriptions and their delivery outbox."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import Index
from sqlmodel import Field, SQLModel

from app.models.base import created_at_field, datetime_field, json_field, never_reused_ids


class Webhook(SQLModel, table=True):
    __table_args__ = (never_reused_ids(),)

    id: int | None = Field(default=None, primary_key=True)
    workspace_id: int = Field(foreign_key="workspace.id", index=True, ondelete="CASCADE")
    url: str = Field(max_length=2000)
    secret: str = Field(max_length=128)
    events: list[str] = json_field(list)
    description: str = Field(default="", max_length=500)
    active: bool = Field(default=True)
    created_at: datetime = created_at_field()


class DeliveryStatus(StrEnum):
    pending = "pending"
    delivered = "delivered"
    failed = "failed"


class WebhookDelivery(SQLModel, table=True):
    __tablename__ = "webhook_delivery"
    __table_args__ = (
        Index("ix_webhook_delivery_due", "status", "next_attempt_at"),
        # A webhook's delivery log, newest first; also serves the foreign key.
        Index("ix_webhook_delivery_webhook_created", "webhook_id", "created_at", "id"),
    )

    id: str = Field(primary_key=True, max_length=36)
    workspace_id: int = Field(foreign_key="workspace.id", index=True, ondelete="CASCADE")
    webhook_id: int = Field(foreign_key="webhook.id", ondelete="CASCADE")
    event: str = Field(max_length=64)
    body: str
    status: DeliveryStatus = Field(default=DeliveryStatus.pending)
    attempts: int = Field(default=0)
    next_attempt_at: datetime = created_at_field()
    last_status_code: int | None = None
    last_error: str | None = Field(default=None, max_length=1000)
    created_at: datetime = created_at_field()
    delivered_at: datetime | None = datetime_field()
    history: list[dict[str, Any]] = json_field(list)
