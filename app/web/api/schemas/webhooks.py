"""Webhook shapes."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

from app.web.api.schemas.common import Strict

WebhookEvent = Literal[
    "ticket.created",
    "ticket.updated",
    "ticket.event.created",
    "ticket.deleted",
    "contact.created",
    "contact.updated",
]


class WebhookCreate(Strict):
    url: str = Field(min_length=1, max_length=2000, description="http(s) URL that receives POSTs.")
    events: list[WebhookEvent] = Field(
        default_factory=list, max_length=20, description="Empty means every event."
    )
    description: str = Field(default="", max_length=500)
    secret: str | None = Field(
        default=None, min_length=16, max_length=128, description="Generated when omitted."
    )
    active: bool = True


class WebhookUpdate(Strict):
    url: str | None = Field(default=None, min_length=1, max_length=2000)
    events: list[WebhookEvent] | None = Field(default=None, max_length=20)
    description: str | None = Field(default=None, max_length=500)
    secret: str | None = Field(default=None, min_length=16, max_length=128)
    rotate_secret: bool = Field(default=False, description="Generate a new signing secret.")
    active: bool | None = None


class WebhookOut(BaseModel):
    id: int
    url: str
    events: list[str]
    description: str
    active: bool
    created_at: str
    secret: str = Field(description="Signs `Helpdesk-Signature`: HMAC-SHA256 of `<t>.<body>`.")


class DeliveryOut(BaseModel):
    id: str
    webhook_id: int
    event: str
    status: str = Field(description="pending, delivered or failed")
    attempts: int
    next_attempt_at: str | None
    last_status_code: int | None
    last_error: str | None
    created_at: str
    delivered_at: str | None
    history: list[dict[str, object]]
    body: str = Field(description="The exact JSON body that is (or was) POSTed.")
