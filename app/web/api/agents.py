"""/agents and /teams: everyone reads, admins write."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from app.models import Agent, Team
from app.models.workspace import default_capacity
from app.services import workspaces
from app.services.timeline import iso
from app.web.api.deps import AdminActor, CurrentActor, Session, Uow
from app.web.api.errors import COMMON_ERRORS, error_responses
from app.web.api.schemas.agents import (
    AgentCreate,
    AgentOut,
    AgentUpdate,
    TeamCreate,
    TeamOut,
    TeamUpdate,
)
from app.web.api.schemas.common import Deleted, Page, PathId

agents_router = APIRouter(prefix="/agents", tags=["agents"], responses=COMMON_ERRORS)
teams_router = APIRouter(prefix="/teams", tags=["teams"], responses=COMMON_ERRORS)

# A workspace has tens of agents, not thousands: lists are one page.
NO_MORE = None


def agent_out(agent: Agent, team_ids: list[int]) -> dict[str, Any]:
    return {
        "id": agent.id,
        "email": agent.email,
        "name": agent.name,
        "role": agent.role,
        "team_ids": sorted(team_ids),
        "skills": agent.skills,
        "languages": agent.languages,
        "time_zone": agent.time_zone,
        "locale": agent.locale,
        "capacity": agent.capacity,
        "is_active": agent.is_active,
        "created_at": iso(agent.created_at),
        "last_seen_at": iso(agent.last_seen_at),
    }


def team_out(team: Team, agent_ids: list[int]) -> dict[str, Any]:
    return {
        "id": team.id,
        "name": team.name,
        "agent_ids": sorted(agent_ids),
        "created_at": iso(team.created_at),
    }


@agents_router.get("", response_model=Page[AgentOut], summary="List agents")
async def list_agents(actor: CurrentActor, session: Session) -> dict[str, Any]:
    rows = await workspaces.list_agents(session, actor.workspace_id)
    teams = await workspaces.team_ids_by_agent(session, actor.workspace_id)
    items = [agent_out(a, teams.get(a.id or 0, [])) for a in rows]
    return {"items": items, "next_cursor": NO_MORE}


@agents_router.get("/{agent_id}", response_model=AgentOut, summary="Get an agent")
async def get_agent(agent_id: PathId, actor: CurrentActor, session: Session) -> dict[str, Any]:
    agent = await workspaces.get_agent(session, actor.workspace_id, agent_id)
    return agent_out(agent, await workspaces.agent_team_ids(session, agent_id))


@agents_router.post(
    "",
    status_code=201,
    response_model=AgentOut,
    summary="Create an agent (admin)",
    responses=error_responses(409),
)
async def create_agent(body: AgentCreate, actor: AdminActor, uow: Uow) -> dict[str, Any]:
    profile = body.model_dump(exclude={"email", "name", "password", "role", "team_ids", "capacity"})
    if body.capacity is not None:
        profile["capacity"] = {**default_capacity(), **body.capacity}
    agent = await workspaces.do_create_agent(
        uow,
        actor,
        email=str(body.email),
        name=body.name,
        password=body.password,
        role=body.role,
        team_ids=body.team_ids,
        **profile,
    )
    assert agent.id is not None
    await uow.session.flush()
    out = agent_out(agent, await workspaces.agent_team_ids(uow.session, agent.id))
    await uow.commit()
    return out


@agents_router.patch(
    "/{agent_id}",
    response_model=AgentOut,
    summary="Change an agent",
    description="Admins change anything (`is_active: false` deactivates); an agent may change "
    "their own name, locale, time zone and password.",
    responses=error_responses(409),
)
async def update_agent(
    agent_id: PathId, body: AgentUpdate, actor: CurrentActor, uow: Uow
) -> dict[str, Any]:
    changes = body.model_dump(exclude_unset=True)
    for key in list(changes):
        if changes[key] is None:
            changes.pop(key)
    if "email" in changes:
        changes["email"] = str(changes["email"])
    if "capacity" in changes:
        current = await workspaces.get_agent(uow.session, actor.workspace_id, agent_id)
        changes["capacity"] = {**current.capacity, **changes["capacity"]}
    agent = await workspaces.do_update_agent(uow, actor, agent_id, **changes)
    await uow.session.flush()
    out = agent_out(agent, await workspaces.agent_team_ids(uow.session, agent_id))
    await uow.commit()
    return out


@teams_router.get("", response_model=Page[TeamOut], summary="List teams")
async def list_teams(actor: CurrentActor, session: Session) -> dict[str, Any]:
    rows = await workspaces.list_teams(session, actor.workspace_id)
    members = await workspaces.agent_ids_by_team(session, actor.workspace_id)
    return {
        "items": [team_out(t, members.get(t.id or 0, [])) for t in rows],
        "next_cursor": NO_MORE,
    }


@teams_router.get("/{team_id}", response_model=TeamOut, summary="Get a team")
async def get_team(team_id: PathId, actor: CurrentActor, session: Session) -> dict[str, Any]:
    team = await workspaces.get_team(session, actor.workspace_id, team_id)
    members = await workspaces.agent_ids_by_team(session, actor.workspace_id)
    return team_out(team, members.get(team_id, []))


@teams_router.post(
    "",
    status_code=201,
    response_model=TeamOut,
    summary="Create a team (admin)",
    responses=error_responses(409),
)
async def create_team(body: TeamCreate, actor: AdminActor, uow: Uow) -> dict[str, Any]:
    team = await workspaces.do_create_team(uow, actor, body.name)
    out = team_out(team, [])
    await uow.commit()
    return out


@teams_router.patch(
    "/{team_id}",
    response_model=TeamOut,
    summary="Rename a team (admin)",
    responses=error_responses(409),
)
async def update_team(
    team_id: PathId, body: TeamUpdate, actor: AdminActor, uow: Uow
) -> dict[str, Any]:
    team = await workspaces.do_update_team(uow, actor, team_id, body.name)
    await uow.session.flush()
    members = await workspaces.agent_ids_by_team(uow.session, actor.workspace_id)
    out = team_out(team, members.get(team_id, []))
    await uow.commit()
    return out


@teams_router.delete(
    "/{team_id}",
    response_model=Deleted,
    summary="Delete a team (admin)",
    description="Its tickets and inboxes keep working, without a team.",
)
async def delete_team(team_id: PathId, actor: AdminActor, uow: Uow) -> dict[str, Any]:
    await workspaces.do_delete_team(uow, actor, team_id)
    await uow.commit()
    return {"deleted": True}
