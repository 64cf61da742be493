"""Console sign-in: check an agent's password and build the Actor for a signed session."""

from __future__ import annotations

import hashlib

from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession

from app.models import ActorType, Agent
from app.services.actors import Actor
from app.services.passwords import hash_password, needs_rehash, verify_password
from app.services.workspaces import agent_team_ids


def password_fingerprint(agent: Agent) -> str:
    """Changes with the password, so a password change signs out every other session."""
    return hashlib.sha256(agent.password_hash.encode()).hexdigest()[:16]


async def authenticate_agent(
    session: AsyncSession, email: str, password: str, workspace_id: int | None = None
) -> list[Agent]:
    """Active agents with this email and password (one per workspace they belong to)."""
    stmt = select(Agent).where(Agent.email == email.strip().lower(), Agent.is_active)
    if workspace_id is not None:
        stmt = stmt.where(Agent.workspace_id == workspace_id)
    candidates = list((await session.exec(stmt)).all())
    if not candidates:
        verify_password(None, password)  # same cost as a real check
        return []
    matched = [a for a in candidates if verify_password(a.password_hash, password)]
    for agent in matched:
        if needs_rehash(agent.password_hash):
            agent.password_hash = hash_password(password)
            session.add(agent)
    return matched


async def agent_actor(session: AsyncSession, agent: Agent) -> Actor:
    assert agent.id is not None
    return Actor(
        workspace_id=agent.workspace_id,
        type=ActorType.agent,
        id=agent.id,
        name=agent.name,
        role=agent.role,
        team_ids=frozenset(await agent_team_ids(session, agent.id)),
        team_scoped=True,
    )


async def actor_for_session(
    session: AsyncSession, agent_id: int, workspace_id: int, fingerprint: str
) -> Actor | None:
    agent = await session.get(Agent, agent_id)
    if (
        agent is None
        or not agent.is_active
        or agent.workspace_id != workspace_id
        or password_fingerprint(agent) != fingerprint
    ):
        return None
    return await agent_actor(session, agent)
