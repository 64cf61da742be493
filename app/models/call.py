"""Voice calls (one row per call, bound to a ticket) and the callback request queue."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from sqlalchemy import Index
from sqlmodel import Field, SQLModel

from app.models.base import created_at_field, datetime_field, json_field, never_reused_ids


class CallState(StrEnum):
    queued = "queued"  # waiting in the team queue, hearing hold audio
    offered = "offered"  # ringing one agent's console (inbound) or the customer's widget
    ringing = "ringing"  # outbound: the customer's widget is ringing
    active = "active"  # customer and agent bridged
    held = "held"  # the agent put the customer on hold
    transferring = "transferring"  # warm transfer consult or blind transfer in flight
    ended = "ended"
    abandoned = "abandoned"  # the customer left before anyone answered
    callback_requested = "callback_requested"  # the customer chose a callback instead


LIVE_CALL_STATES = (
    CallState.queued,
    CallState.offered,
    CallState.ringing,
    CallState.active,
    CallState.held,
    CallState.transferring,
)
# States in which an agent is taken by the call (not free for another one).
AGENT_BUSY_STATES = (
    CallState.offered,
    CallState.ringing,
    CallState.active,
    CallState.held,
    CallState.transferring,
)


class CallDirection(StrEnum):
    inbound = "inbound"
    outbound = "outbound"


class Call(SQLModel, table=True):
    __table_args__ = (
        Index("ix_call_ws_state", "workspace_id", "state"),
        Index("ix_call_agent_state", "agent_id", "state"),
        never_reused_ids(),
    )

    id: int | None = Field(default=None, primary_key=True)
    workspace_id: int = Field(foreign_key="workspace.id", index=True, ondelete="CASCADE")
    ticket_id: int = Field(foreign_key="ticket.id", index=True, ondelete="CASCADE")
    inbox_id: int | None = Field(default=None, foreign_key="inbox.id", ondelete="SET NULL")
    team_id: int | None = Field(default=None, foreign_key="team.id", ondelete="SET NULL")
    contact_id: int | None = Field(default=None, foreign_key="contact.id", ondelete="SET NULL")
    # The agent talking (or being offered the call); None while queued.
    agent_id: int | None = Field(default=None, foreign_key="agent.id", ondelete="SET NULL")
    direction: CallDirection = Field(default=CallDirection.inbound)
    state: CallState = Field(default=CallState.queued)
    # The process that terminates the call's media; its signaling is routed there.
    owner_node: str = Field(max_length=64, index=True)
    language: str | None = Field(default=None, max_length=16)
    skills: list[str] = json_field(list)
    # Agents who declined or let the current queue round ring out (skipped by the ACD).
    declined: list[int] = json_field(list)
    queued_at: datetime = created_at_field()
    offered_at: datetime | None = datetime_field()
    answered_at: datetime | None = datetime_field()
    ended_at: datetime | None = datetime_field()
    wait_seconds: float | None = None
    duration_seconds: float | None = None
    hangup_by: str | None = Field(default=None, max_length=16)  # customer | agent | system
    end_reason: str | None = Field(default=None, max_length=32)
    recording_attachment_id: int | None = Field(
        default=None, index=True, foreign_key="attachment.id", ondelete="SET NULL"
    )
    callback_id: int | None = Field(index=True, default=None, foreign_key="callback_request.id")
    created_at: datetime = created_at_field()


class CallbackState(StrEnum):
    pending = "pending"
    dialing = "dialing"
    connected = "connected"
    no_answer = "no_answer"
    declined = "declined"
    offline = "offline"
    cancelled = "cancelled"


class CallbackRequest(SQLModel, table=True):
    """A customer who chose to be called back; dialed progressively as agents free up."""

    __tablename__ = "callback_request"
    __table_args__ = (
        Index("ix_callback_ws_state", "workspace_id", "state", "created_at"),
        never_reused_ids(),
    )

    id: int | None = Field(default=None, primary_key=True)
    workspace_id: int = Field(foreign_key="workspace.id", index=True, ondelete="CASCADE")
    ticket_id: int = Field(foreign_key="ticket.id", index=True, ondelete="CASCADE")
    contact_id: int | None = Field(
        index=True, default=None, foreign_key="contact.id", ondelete="SET NULL"
    )
    team_id: int | None = Field(
        index=True, default=None, foreign_key="team.id", ondelete="SET NULL"
    )
    inbox_id: int | None = Field(
        index=True, default=None, foreign_key="inbox.id", ondelete="SET NULL"
    )
    state: CallbackState = Field(default=CallbackState.pending)
    agent_id: int | None = Field(
        index=True, default=None, foreign_key="agent.id", ondelete="SET NULL"
    )
    attempts: int = Field(default=0)
    created_at: datetime = created_at_field()
    updated_at: datetime = created_at_field()
