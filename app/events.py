"""Typed bus events and the unit of work that publishes them only after commit.

Writes commit first; only then does anything leave the process. A reader that
sees an event can therefore always find its row in the database, which is what
makes "replay from the DB after my cursor, then live" exact.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sqlmodel.ext.asyncio.session import AsyncSession

from app.bus.base import EventBus, Message


def workspace_topic(workspace_id: int) -> str:
    return f"ws.{workspace_id}"


def ticket_topic(workspace_id: int, ticket_id: int) -> str:
    return f"ws.{workspace_id}.ticket.{ticket_id}"


def contact_topic(workspace_id: int, contact_id: int) -> str:
    return f"ws.{workspace_id}.contact.{contact_id}"


@dataclass(frozen=True)
class TicketEventPublished:
    """`{workspace, ticket, seq, kind}`: enough for a client to fetch or replay."""

    workspace_id: int
    ticket_id: int
    seq: int
    kind: str
    contact_id: int | None
    team_id: int | None
    internal: bool
    event: dict[str, Any]

    def message(self) -> Message:
        return {
            "type": "ticket.event",
            "workspace": self.workspace_id,
            "ticket": self.ticket_id,
            "seq": self.seq,
            "kind": self.kind,
            "contact": self.contact_id,
            "team": self.team_id,
            "internal": self.internal,
            "event": self.event,
        }


@dataclass
class UnitOfWork:
    """A session plus the bus messages to send once it commits."""

    session: AsyncSession
    bus: EventBus
    pending: list[tuple[str, Message]] = field(default_factory=list)
    after_commit: list[Any] = field(default_factory=list)

    def publish_on_commit(self, topic: str, message: Message) -> None:
        self.pending.append((topic, message))

    async def commit(self) -> None:
        await self.session.commit()
        pending, self.pending = self.pending, []
        hooks, self.after_commit = self.after_commit, []
        for topic, message in pending:
            await self.bus.publish(topic, message)
        for hook in hooks:
            hook()

    async def rollback(self) -> None:
        self.pending.clear()
        self.after_commit.clear()
        await self.session.rollback()
