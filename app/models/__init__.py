"""SQLModel tables, one module per aggregate; importing this registers them all."""

from __future__ import annotations

from app.models.access import ApiToken, AuditLog, IdempotencyRecord
from app.models.call import (
    Call,
    CallbackRequest,
    CallbackState,
    CallDirection,
    CallState,
)
from app.models.canned import CannedResponse
from app.models.contact import Contact, ContactIdentity, IdentityKind
from app.models.email import (
    MailDirection,
    MailMessage,
    OutboundEmail,
    OutboundKind,
    OutboxState,
)
from app.models.presence import AgentPresence, AgentRouting
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
from app.models.visitor_presence import VisitorPresence
from app.models.webhook import DeliveryStatus, Webhook, WebhookDelivery
from app.models.workspace import Agent, AgentTeam, Inbox, InboxKind, Role, Team, Workspace

__all__ = [
    "ActorType",
    "Agent",
    "AgentPresence",
    "AgentRouting",
    "AgentTeam",
    "ApiToken",
    "Attachment",
    "AuditLog",
    "Call",
    "CallDirection",
    "CallState",
    "CallbackRequest",
    "CallbackState",
    "CannedResponse",
    "Channel",
    "Contact",
    "ContactIdentity",
    "DeliveryStatus",
    "EventKind",
    "IdempotencyRecord",
    "IdentityKind",
    "Inbox",
    "InboxKind",
    "MailDirection",
    "MailMessage",
    "OutboundEmail",
    "OutboundKind",
    "OutboxState",
    "Priority",
    "Role",
    "Team",
    "Ticket",
    "TicketEvent",
    "TicketStatus",
    "VisitorPresence",
    "Webhook",
    "WebhookDelivery",
    "Workspace",
]
