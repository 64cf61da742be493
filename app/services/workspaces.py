"""Workspaces, teams, agents and inboxes: the admin side of a tenant."""

from __future__ import annotations

import re
import secrets
from collections.abc import Sequence
from typing import Any

from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from app.events import UnitOfWork
from app.models import Agent, AgentTeam, Inbox, InboxKind, Role, Team, Workspace
from app.services import audit
from app.services.actors import Actor
from app.services.errors import Conflict, Invalid, NotFound
from app.services.inbox_addresses import forget_inbox_addresses
from app.services.passwords import hash_password

SLUG_RE = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")
EMAIL_RE = re.compile(r"^[^@\s]+@[^@\s]+$")


async def get_workspace_by_slug(session: AsyncSession, slug: str) -> Workspace | None:
    return (await session.exec(select(Workspace).where(Workspace.slug == slug))).first()


async def do_create_workspace(uow: UnitOfWork, slug: str, name: str) -> Workspace:
    if not SLUG_RE.match(slug):
        raise Invalid("workspace slug must be lowercase letters, digits and dashes")
    if await get_workspace_by_slug(uow.session, slug):
        raise Conflict(f"workspace {slug!r} exists")
    workspace = Workspace(slug=slug, name=name)
    uow.session.add(workspace)
    await uow.session.flush()
    return workspace


async def workspace_names(session: AsyncSession, ids: list[int]) -> dict[int, str]:
    rows = await session.exec(select(Workspace).where(col(Workspace.id).in_(ids)))
    return {w.id: w.name for w in rows.all() if w.id is not None}


# -- teams -------------------------------------------------------------------------


async def list_teams(session: AsyncSession, workspace_id: int) -> Sequence[Team]:
    stmt = select(Team).where(Team.workspace_id == workspace_id).order_by(col(Team.id))
    return (await session.exec(stmt)).all()


async def get_team(session: AsyncSession, workspace_id: int, team_id: int) -> Team:
    team = await session.get(Team, team_id)
    if team is None or team.workspace_id != workspace_id:
        raise NotFound("team not found")
    return team


async def do_create_team(uow: UnitOfWork, actor: Actor, name: str) -> Team:
    actor.require(Role.admin)
    name = name.strip()
    if not name:
        raise Invalid("team name is required")
    exists = await uow.session.exec(
        select(Team).where(Team.workspace_id == actor.workspace_id, Team.name == name)
    )
    if exists.first():
        raise Conflict(f"team {name!r} exists")
    team = Team(workspace_id=actor.workspace_id, name=name)
    uow.session.add(team)
    await uow.session.flush()
    audit.record(uow, actor, "team.create", "team", team.id, {"name": name})
    return team


async def do_update_team(uow: UnitOfWork, actor: Actor, team_id: int, name: str) -> Team:
    actor.require(Role.admin)
    team = await get_team(uow.session, actor.workspace_id, team_id)
    name = name.strip()
    if not name:
        raise Invalid("team name is required")
    if name != team.name:
        exists = await uow.session.exec(
            select(Team).where(Team.workspace_id == actor.workspace_id, Team.name == name)
        )
        if exists.first():
            raise Conflict(f"team {name!r} exists")
    team.name = name
    uow.session.add(team)
    audit.record(uow, actor, "team.update", "team", team.id, {"name": team.name})
    return team


async def do_delete_team(uow: UnitOfWork, actor: Actor, team_id: int) -> None:
    actor.require(Role.admin)
    team = await get_team(uow.session, actor.workspace_id, team_id)
    await uow.session.delete(team)
    audit.record(uow, actor, "team.delete", "team", team_id, {})


# -- agents ------------------------------------------------------------------------


async def list_agents(session: AsyncSession, workspace_id: int) -> Sequence[Agent]:
    stmt = select(Agent).where(Agent.workspace_id == workspace_id).order_by(col(Agent.id))
    return (await session.exec(stmt)).all()


async def get_agent(session: AsyncSession, workspace_id: int, agent_id: int) -> Agent:
    agent = await session.get(Agent, agent_id)
    if agent is None or agent.workspace_id != workspace_id:
        raise NotFound("agent not found")
    return agent


async def agent_team_ids(session: AsyncSession, agent_id: int) -> list[int]:
    rows = await session.exec(select(AgentTeam.team_id).where(AgentTeam.agent_id == agent_id))
    return sorted(rows.all())


async def team_ids_by_agent(session: AsyncSession, workspace_id: int) -> dict[int, list[int]]:
    stmt = (
        select(AgentTeam.agent_id, AgentTeam.team_id)
        .join(Agent, col(Agent.id) == AgentTeam.agent_id)
        .where(Agent.workspace_id == workspace_id)
    )
    out: dict[int, list[int]] = {}
    for agent_id, team_id in (await session.exec(stmt)).all():
        out.setdefault(agent_id, []).append(team_id)
    return out


def check_password(password: str) -> None:
    if len(password) < 8:
        raise Invalid("password must have at least 8 characters")
    if len(password) > 1024:
        raise Invalid("password is too long")


async def _set_teams(uow: UnitOfWork, agent: Agent, team_ids: list[int]) -> None:
    assert agent.id is not None
    for team_id in team_ids:
        await get_team(uow.session, agent.workspace_id, team_id)
    existing = await uow.session.exec(select(AgentTeam).where(AgentTeam.agent_id == agent.id))
    for link in existing.all():
        await uow.session.delete(link)
    await uow.session.flush()
    for team_id in sorted(set(team_ids)):
        uow.session.add(AgentTeam(agent_id=agent.id, team_id=team_id))


async def do_create_agent(
    uow: UnitOfWork,
    actor: Actor,
    *,
    email: str,
    name: str,
    password: str | None,
    role: Role = Role.agent,
    team_ids: list[int] | None = None,
    **profile: Any,
) -> Agent:
    actor.require(Role.admin)
    email = email.strip().lower()
    if not EMAIL_RE.match(email):
        raise Invalid("a valid email address is required")
    if password is not None:
        check_password(password)
    exists = await uow.session.exec(
        select(Agent).where(Agent.workspace_id == actor.workspace_id, Agent.email == email)
    )
    if exists.first():
        raise Conflict(f"an agent with email {email} exists")
    agent = Agent(
        workspace_id=actor.workspace_id,
        email=email,
        name=name.strip() or email,
        password_hash=hash_password(password) if password else "",
        role=role,
        **profile,
    )
    uow.session.add(agent)
    await uow.session.flush()
    await _set_teams(uow, agent, team_ids or [])
    audit.record(uow, actor, "agent.create", "agent", agent.id, {"email": email, "role": role})
    return agent


async def do_update_agent(
    uow: UnitOfWork,
    actor: Actor,
    agent_id: int,
    *,
    team_ids: list[int] | None = None,
    password: str | None = None,
    **changes: Any,
) -> Agent:
    is_self = actor.agent_id == agent_id
    if not is_self or set(changes) - {"name", "locale", "time_zone"}:
        actor.require(Role.admin)
    agent = await get_agent(uow.session, actor.workspace_id, agent_id)
    if "email" in changes:
        email = changes["email"].strip().lower()
        if not EMAIL_RE.match(email):
            raise Invalid("a valid email address is required")
        if email != agent.email:
            exists = await uow.session.exec(
                select(Agent).where(Agent.workspace_id == actor.workspace_id, Agent.email == email)
            )
            if exists.first():
                raise Conflict(f"an agent with email {email} exists")
        changes["email"] = email
    if "name" in changes:
        changes["name"] = changes["name"].strip() or agent.name
    demoted = "role" in changes and changes["role"] is not Role.admin
    deactivated = changes.get("is_active") is False
    if agent.role is Role.admin and agent.is_active and (demoted or deactivated):
        await _keep_an_admin(uow.session, actor.workspace_id, agent_id)
    for key, value in changes.items():
        setattr(agent, key, value)
    if password is not None:
        check_password(password)
        agent.password_hash = hash_password(password)
    uow.session.add(agent)
    if team_ids is not None:
        actor.require(Role.admin)
        await _set_teams(uow, agent, team_ids)
    safe = {k: v for k, v in changes.items() if k != "password"}
    audit.record(uow, actor, "agent.update", "agent", agent.id, safe)
    return agent


async def _keep_an_admin(session: AsyncSession, workspace_id: int, leaving_id: int) -> None:
    """A workspace never loses its last active admin (nobody could fix that but the CLI)."""
    stmt = select(Agent.id).where(
        Agent.workspace_id == workspace_id,
        Agent.role == Role.admin,
        col(Agent.is_active).is_(True),
        Agent.id != leaving_id,
    )
    if (await session.exec(stmt)).first() is None:
        raise Conflict("this is the last active admin of the workspace")


# -- inboxes -----------------------------------------------------------------------


async def list_inboxes(session: AsyncSession, workspace_id: int) -> Sequence[Inbox]:
    stmt = select(Inbox).where(Inbox.workspace_id == workspace_id).order_by(col(Inbox.id))
    return (await session.exec(stmt)).all()


async def get_inbox(session: AsyncSession, workspace_id: int, inbox_id: int) -> Inbox:
    inbox = await session.get(Inbox, inbox_id)
    if inbox is None or inbox.workspace_id != workspace_id:
        raise NotFound("inbox not found")
    return inbox


async def get_inbox_by_public_key(session: AsyncSession, public_key: str) -> Inbox | None:
    stmt = select(Inbox).where(Inbox.public_key == public_key, Inbox.kind == InboxKind.widget)
    return (await session.exec(stmt)).first()


async def get_inbox_by_address(session: AsyncSession, address: str) -> Inbox | None:
    stmt = select(Inbox).where(Inbox.address == address.lower(), Inbox.kind == InboxKind.email)
    return (await session.exec(stmt)).first()


async def do_create_inbox(
    uow: UnitOfWork, actor: Actor, *, kind: InboxKind, name: str, **fields: Any
) -> Inbox:
    actor.require(Role.admin)
    if fields.get("team_id") is not None:
        await get_team(uow.session, actor.workspace_id, fields["team_id"])
    inbox = Inbox(workspace_id=actor.workspace_id, kind=kind, name=name, **fields)
    if kind is InboxKind.widget:
        inbox.public_key = inbox.public_key or "wk_" + secrets.token_urlsafe(18)
        inbox.identity_secret = inbox.identity_secret or secrets.token_urlsafe(32)
        inbox.address = None
    else:
        if not inbox.address or not EMAIL_RE.match(inbox.address):
            raise Invalid("an email inbox needs a valid address")
        inbox.address = inbox.address.strip().lower()
        if await get_inbox_by_address(uow.session, inbox.address):
            raise Conflict(f"address {inbox.address} is already used by an inbox")
        inbox.public_key = None
    uow.session.add(inbox)
    await uow.session.flush()
    audit.record(uow, actor, "inbox.create", "inbox", inbox.id, {"kind": kind, "name": name})
    uow.after_commit.append(forget_inbox_addresses)
    return inbox


async def do_update_inbox(uow: UnitOfWork, actor: Actor, inbox_id: int, **changes: Any) -> Inbox:
    actor.require(Role.admin)
    inbox = await get_inbox(uow.session, actor.workspace_id, inbox_id)
    if changes.get("team_id") is not None:
        await get_team(uow.session, actor.workspace_id, changes["team_id"])
    if "address" in changes:
        if inbox.kind is not InboxKind.email:
            raise Invalid("only email inboxes have an address")
        address = (changes["address"] or "").strip().lower()
        if not EMAIL_RE.match(address):
            raise Invalid("an email inbox needs a valid address")
        other = await get_inbox_by_address(uow.session, address)
        if other is not None and other.id != inbox.id:
            raise Conflict(f"address {address} is already used by an inbox")
        changes["address"] = address
    for key, value in changes.items():
        setattr(inbox, key, value)
    uow.session.add(inbox)
    audit.record(uow, actor, "inbox.update", "inbox", inbox.id, {"fields": sorted(changes)})
    uow.after_commit.append(forget_inbox_addresses)
    return inbox


async def do_delete_inbox(uow: UnitOfWork, actor: Actor, inbox_id: int) -> None:
    actor.require(Role.admin)
    inbox = await get_inbox(uow.session, actor.workspace_id, inbox_id)
    await uow.session.delete(inbox)
    audit.record(uow, actor, "inbox.delete", "inbox", inbox_id, {})
    uow.after_commit.append(forget_inbox_addresses)


async def agent_ids_by_team(session: AsyncSession, workspace_id: int) -> dict[int, list[int]]:
    stmt = (
        select(AgentTeam.team_id, AgentTeam.agent_id)
        .join(Team, col(Team.id) == AgentTeam.team_id)
        .where(Team.workspace_id == workspace_id)
    )
    out: dict[int, list[int]] = {}
    for team_id, agent_id in (await session.exec(stmt)).all():
        out.setdefault(team_id, []).append(agent_id)
    return out
