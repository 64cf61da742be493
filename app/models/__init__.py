"""SQLModel tables, one module per aggregate; importing this registers them all."""

from __future__ import annotations

from app.models.access import ApiToken, AuditLog, IdempotencyRecord
from app.models.contact import Contact, ContactIdentity, IdentityKind
from app.models.ticket import (
    ActorType,
    Attachment,
    Channel,
    EventKind,
    Priority,
    Ticket,
    TicketEvent,
    TicketStatus,
)
from app.models.webhook import DeliveryStatus, Webhook, WebhookDelivery
from app.models.workspace import Agent, AgentTeam, Inbox, InboxKind, Role, Team, Workspace

__all__ = [
    "ActorType",
    "Agent",
    "AgentTeam",
    "ApiToken",
    "Attachment",
    "AuditLog",
    "Channel",
    "Contact",
    "ContactIdentity",
    "DeliveryStatus",
    "EventKind",
    "IdempotencyRecord",
    "IdentityKind",
    "Inbox",
    "InboxKind",
    "Priority",
    "Role",
    "Team",
    "Ticket",
    "TicketEvent",
    "TicketStatus",
    "Webhook",
    "WebhookDelivery",
    "Workspace",
]
