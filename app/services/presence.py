"""Agent presence from console connections, consistent across app processes.

Each console connection writes one `agent_presence` row; its node refreshes the
heartbeat of all its rows in one UPDATE. An agent's presence is the best status
among their live rows (fresh heartbeat), so it is the same on every node. Rows
of a node that died stop being refreshed and are swept after the TTL.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import delete, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from app.events import UnitOfWork, workspace_topic
from app.models import Agent, AgentPresence, AgentRouting, AgentTeam
from app.models.base import utcnow
from app.services.errors import Invalid
from app.services.sql_dialect import is_postgres

AVAILABLE = "available"
AWAY = "away"
OFFLINE = "offline"
STATUSES = (AVAILABLE, AWAY, OFFLINE)
_RANK = {OFFLINE: 0, AWAY: 1, AVAILABLE: 2}


def check_status(status: object) -> str:
    if not isinstance(status, str) or status not in STATUSES:
        raise Invalid("presence must be available, away or offline")
    return status


def best_status(statuses: Iterable[str]) -> str:
    return max(statuses, key=lambda s: _RANK.get(s, 0), default=OFFLINE)


def _fresh_after(ttl: float, now: datetime | None = None) -> datetime:
    return (now or utcnow()) - timedelta(seconds=ttl)


async def ensure_routing_row(session: AsyncSession, workspace_id: int, agent_id: int) -> None:
    """Insert the agent's routing row unless it exists (safe when nodes race)."""
    values = {"agent_id": agent_id, "workspace_id": workspace_id}
    insert = postgresql.insert if is_postgres(session) else sqlite.insert
    stmt = insert(AgentRouting).values(**values).on_conflict_do_nothing()
    await session.exec(stmt)


async def agent_status(session: AsyncSession, agent_id: int, ttl: float) -> str:
    stmt = select(AgentPresence.status).where(
        AgentPresence.agent_id == agent_id, col(AgentPresence.heartbeat_at) > _fresh_after(ttl)
    )
    return best_status((await session.exec(stmt)).all())


async def _refresh_agent(uow: UnitOfWork, workspace_id: int, agent_id: int, ttl: float) -> str:
    """Recompute the agent's presence; stamp when they went offline (requeue grace)."""
    status = await agent_status(uow.session, agent_id, ttl)
    await ensure_routing_row(uow.session, workspace_id, agent_id)
    routing = await uow.session.get(AgentRouting, agent_id)
    assert routing is not None
    if status == OFFLINE and routing.offline_since is None:
        routing.offline_since = utcnow()
    elif status != OFFLINE:
        routing.offline_since = None
    uow.session.add(routing)
    uow.publish_on_commit(
        workspace_topic(workspace_id), {"type": "presence", "agent": agent_id, "status": status}
    )
    return status


async def do_connect(
    uow: UnitOfWork,
    *,
    conn_id: str,
    workspace_id: int,
    agent_id: int,
    node: str,
    status: str,
    ttl: float,
) -> str:
    now = utcnow()
    uow.session.add(
        AgentPresence(
            id=conn_id,
            workspace_id=workspace_id,
            agent_id=agent_id,
            node=node,
            status=check_status(status),
            connected_at=now,
            heartbeat_at=now,
        )
    )
    await uow.session.flush()
    return await _refresh_agent(uow, workspace_id, agent_id, ttl)


async def do_set_status(uow: UnitOfWork, conn_id: str, status: str, ttl: float) -> str | None:
    row = await uow.session.get(AgentPresence, conn_id)
    if row is None:
        return None
    row.status = check_status(status)
    row.heartbeat_at = utcnow()
    uow.session.add(row)
    await uow.session.flush()
    return await _refresh_agent(uow, row.workspace_id, row.agent_id, ttl)


async def do_disconnect(uow: UnitOfWork, conn_id: str, ttl: float) -> str | None:
    row = await uow.session.get(AgentPresence, conn_id)
    if row is None:
        return None
    workspace_id, agent_id = row.workspace_id, row.agent_id
    await uow.session.delete(row)
    await uow.session.flush()
    return await _refresh_agent(uow, workspace_id, agent_id, ttl)


async def do_heartbeat(uow: UnitOfWork, node: str) -> None:
    await uow.session.exec(
        update(AgentPresence).where(col(AgentPresence.node) == node).values(heartbeat_at=utcnow())
    )


async def do_drop_node(uow: UnitOfWork, node: str) -> None:
    """A node shutting down cleanly takes its connections' rows with it."""
    await uow.session.exec(delete(AgentPresence).where(col(AgentPresence.node) == node))


async def do_sweep_stale(uow: UnitOfWork, ttl: float) -> list[int]:
    """Drop rows whose node stopped heartbeating; returns the agents affected."""
    cutoff = _fresh_after(ttl)
    stmt = select(AgentPresence.workspace_id, AgentPresence.agent_id).where(
        col(AgentPresence.heartbeat_at) <= cutoff
    )
    stale = set((await uow.session.exec(stmt)).all())
    if not stale:
        return []
    await uow.session.exec(delete(AgentPresence).where(col(AgentPresence.heartbeat_at) <= cutoff))
    for workspace_id, agent_id in sorted(stale):
        await _refresh_agent(uow, workspace_id, agent_id, ttl)
    return sorted(agent_id for _, agent_id in stale)


def _available_where(workspace_id: int, team_id: int | None, ttl: float) -> list[Any]:
    live = (
        select(AgentPresence.agent_id)
        .where(
            AgentPresence.workspace_id == workspace_id,
            AgentPresence.status == AVAILABLE,
            col(AgentPresence.heartbeat_at) > _fresh_after(ttl),
        )
        .distinct()
    )
    where = [
        Agent.workspace_id == workspace_id,
        col(Agent.is_active).is_(True),
        col(Agent.id).in_(live),
    ]
    if team_id is not None:
        where.append(
            col(Agent.id).in_(select(AgentTeam.agent_id).where(AgentTeam.team_id == team_id))
        )
    return where


async def available_agents(
    session: AsyncSession, workspace_id: int, team_id: int | None, ttl: float
) -> list[Agent]:
    """Active agents (of the team, if any) with at least one live `available` connection."""
    stmt = select(Agent).where(*_available_where(workspace_id, team_id, ttl))
    return list((await session.exec(stmt.order_by(col(Agent.id)))).all())


async def team_available(
    session: AsyncSession, workspace_id: int, team_id: int | None, ttl: float
) -> bool:
    """Whether `available_agents` would find anyone (one id read, no rows loaded)."""
    stmt = select(Agent.id).where(*_available_where(workspace_id, team_id, ttl)).limit(1)
    return (await session.exec(stmt)).first() is not None


def lost_agents_query(grace: float, ttl: float) -> Any:
    """Ids of agents offline for longer than the grace period with no live connection."""
    now = utcnow()
    live = select(AgentPresence.agent_id).where(
        col(AgentPresence.heartbeat_at) > _fresh_after(ttl, now)
    )
    return select(AgentRouting.agent_id).where(
        col(AgentRouting.offline_since).is_not(None),
        col(AgentRouting.offline_since) <= now - timedelta(seconds=grace),
        col(AgentRouting.agent_id).not_in(live),
    )
