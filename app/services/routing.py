"""Chat routing: offer each waiting chat to the best available agent of its team.

Best = free chat capacity (`Agent.capacity["chat"]`), then least busy, then idle
longest (earliest last assignment). Chats nobody can take wait in the team queue
in arrival order (ticket creation), so a requeued chat goes back to the front.
Every node may run this; a per-team transaction lock (PostgreSQL advisory lock,
SQLite's write lock) keeps two nodes from giving one agent more than capacity.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, text
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession
from sqlmodel.sql.expression import SelectOfScalar

from app.events import UnitOfWork
from app.models import Agent, AgentRouting, Channel, Ticket, TicketStatus
from app.models.base import utcnow
from app.services import presence
from app.services.actors import Actor
from app.services.sql_dialect import is_postgres, without_index
from app.services.tickets import do_update_ticket

OPEN_CHAT_STATUSES = (TicketStatus.new, TicketStatus.open, TicketStatus.pending)
LOCK_TEAM = 7301
LOCK_REQUEUE = 7302
LOCK_CONTACT = 7303
EPOCH = datetime(1970, 1, 1).astimezone()


async def xact_lock(session: AsyncSession, space: int, key: int) -> None:
    """Serialise a critical section across nodes on PostgreSQL (SQLite already
    serialises every write transaction with BEGIN IMMEDIATE)."""
    if is_postgres(session):
        await session.exec(  # type: ignore[call-overload]
            text("SELECT pg_advisory_xact_lock(:a, :b)").bindparams(a=space, b=key)
        )


def chat_capacity(agent: Agent) -> int:
    value = agent.capacity.get("chat", 0) if isinstance(agent.capacity, dict) else 0
    return value if isinstance(value, int) and value > 0 else 0


async def chat_loads(session: AsyncSession, agent_ids: list[int]) -> dict[int, int]:
    if not agent_ids:
        return {}
    stmt = (
        select(Ticket.assignee_id, func.count())
        .where(
            col(Ticket.assignee_id).in_(agent_ids),
            Ticket.channel == Channel.chat,
            col(Ticket.status).in_(OPEN_CHAT_STATUSES),
            col(Ticket.merged_into_id).is_(None),
        )
        .group_by(col(Ticket.assignee_id))
    )
    loads = {agent_id: 0 for agent_id in agent_ids}
    for agent_id, count in (await session.exec(stmt)).all():
        if agent_id is not None:
            loads[agent_id] = int(count)
    return loads


async def waiting_teams(session: AsyncSession) -> list[tuple[int, int]]:
    """(workspace, team) pairs with chats waiting; a global background query."""
    stmt = (
        select(Ticket.workspace_id, Ticket.team_id)
        .where(
            col(Ticket.assignee_id).is_(None),
            Ticket.channel == Channel.chat,
            col(Ticket.status).in_(OPEN_CHAT_STATUSES),
            col(Ticket.merged_into_id).is_(None),
            col(Ticket.team_id).is_not(None),
        )
        .distinct()
    )
    return [(ws, team) for ws, team in (await session.exec(stmt)).all() if team is not None]


async def assigned_open_tickets(
    session: AsyncSession, workspace_id: int, agent_id: int
) -> list[int]:
    """The open conversations an agent holds: what its console's `assigned` stream follows."""
    stmt = select(Ticket.id).where(
        # Through (assignee_id, status), the agent's open tickets, rather than
        # (workspace_id, assignee_id, …), the agent's whole history.
        without_index(session, col(Ticket.workspace_id)) == workspace_id,
        Ticket.assignee_id == agent_id,
        col(Ticket.status).in_(OPEN_CHAT_STATUSES),
        col(Ticket.merged_into_id).is_(None),
    )
    return [ticket_id for ticket_id in (await session.exec(stmt)).all() if ticket_id is not None]


async def queue_position(session: AsyncSession, ticket: Ticket) -> int:
    """1-based place of a waiting chat in its team queue."""
    stmt = select(func.count()).where(
        # Through the team's queue (team_id, assignee_id, status), not every ticket of
        # the workspace older than this one.
        without_index(session, col(Ticket.workspace_id)) == ticket.workspace_id,
        Ticket.team_id == ticket.team_id,
        col(Ticket.assignee_id).is_(None),
        Ticket.channel == Channel.chat,
        col(Ticket.status).in_(OPEN_CHAT_STATUSES),
        col(Ticket.id) <= (ticket.id or 0),
    )
    return int((await session.exec(stmt)).one())


def team_queue(workspace_id: int, team_id: int, limit: int) -> SelectOfScalar[Ticket]:
    """A team's waiting chats, oldest first (read through `(team_id, assignee_id,
    status)`: the queue, not the team's history)."""
    return (
        select(Ticket)
        .where(
            Ticket.workspace_id == workspace_id,
            Ticket.team_id == team_id,
            col(Ticket.assignee_id).is_(None),
            Ticket.channel == Channel.chat,
            col(Ticket.status).in_(OPEN_CHAT_STATUSES),
            col(Ticket.merged_into_id).is_(None),
        )
        .order_by(col(Ticket.created_at), col(Ticket.id))
        .limit(limit)
    )


@dataclass
class Candidate:
    agent: Agent
    load: int
    capacity: int
    last_assigned_at: datetime

    def key(self) -> tuple[int, datetime, int]:
        return (self.load, self.last_assigned_at, self.agent.id or 0)


async def do_route_team(
    uow: UnitOfWork, workspace_id: int, team_id: int, *, ttl: float, limit: int = 100
) -> list[tuple[int, int]]:
    """Assign waiting chats of one team; returns [(ticket id, agent id)]."""
    session = uow.session
    await xact_lock(session, LOCK_TEAM, team_id)
    agents = await presence.available_agents(session, workspace_id, team_id, ttl)
    candidates: list[Candidate] = []
    loads = await chat_loads(session, [a.id for a in agents if a.id is not None])
    for agent in agents:
        assert agent.id is not None
        routing = await session.get(AgentRouting, agent.id)
        last = routing.last_assigned_at if routing and routing.last_assigned_at else EPOCH
        candidates.append(Candidate(agent, loads.get(agent.id, 0), chat_capacity(agent), last))
    free = [c for c in candidates if c.load < c.capacity]
    if not free:
        return []
    waiting = list((await session.exec(team_queue(workspace_id, team_id, limit))).all())
    system = Actor.system(workspace_id, "Routing")
    assigned: list[tuple[int, int]] = []
    now = utcnow()
    for ticket in waiting:
        free = [c for c in free if c.load < c.capacity]
        if not free:
            break
        best = min(free, key=Candidate.key)
        assert ticket.id is not None and best.agent.id is not None
        await do_update_ticket(uow, system, ticket.id, {"assignee_id": best.agent.id})
        best.load += 1
        best.last_assigned_at = now
        await presence.ensure_routing_row(session, workspace_id, best.agent.id)
        routing = await session.get(AgentRouting, best.agent.id)
        assert routing is not None
        routing.last_assigned_at = now
        session.add(routing)
        assigned.append((ticket.id, best.agent.id))
        # An assignment costs milliseconds (the ticket update, its events, webhooks):
        # a pass over a full queue held every connection of the node for up to 0.15 s.
        # The transaction stays open while the loop serves the others.
        await asyncio.sleep(0)
    return assigned


async def do_requeue_lost(uow: UnitOfWork, *, grace: float, ttl: float) -> list[int]:
    """Put the open chats of agents offline for longer than `grace` back in the queue."""
    session = uow.session
    await xact_lock(session, LOCK_REQUEUE, 0)
    lost = presence.lost_agents_query(grace, ttl)
    stmt = (
        select(Ticket)
        .where(
            col(Ticket.assignee_id).in_(lost),
            Ticket.channel == Channel.chat,
            col(Ticket.status).in_(OPEN_CHAT_STATUSES),
            col(Ticket.merged_into_id).is_(None),
        )
        .order_by(col(Ticket.id))
        .limit(500)
    )
    requeued: list[int] = []
    for ticket in (await session.exec(stmt)).all():
        assert ticket.id is not None
        system = Actor.system(ticket.workspace_id, "Routing")
        await do_update_ticket(uow, system, ticket.id, {"assignee_id": None})
        requeued.append(ticket.id)
    return requeued
