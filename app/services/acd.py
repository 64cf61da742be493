"""Automatic call distribution: which agent gets a waiting call, and the callback queue.

An agent can take a call when they are available in the console (presence), have voice
capacity (`Agent.capacity["voice"]` > 0), are not already on or offered a call, match
the call's language and skills, and have not just declined it. Among those the one idle
longest (earliest end of their last call) gets it. Calls wait in arrival order; the
node owning a call's media runs its offers, under a per-workspace lock so two nodes
never offer one agent two calls.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import func
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from app.events import UnitOfWork
from app.models import Agent, Call, CallbackRequest, CallbackState, CallState
from app.models.base import utcnow
from app.models.call import AGENT_BUSY_STATES
from app.services import calls, presence
from app.services.routing import xact_lock

LOCK_VOICE = 7310
EPOCH = datetime(1970, 1, 1).astimezone()
MAX_CALLBACK_ATTEMPTS = 3


def voice_capacity(agent: Agent) -> int:
    value = agent.capacity.get("voice", 0) if isinstance(agent.capacity, dict) else 0
    return value if isinstance(value, int) and value > 0 else 0


def matches(agent: Agent, call: Call) -> bool:
    """Language: an agent who lists languages must speak the call's; skills: all of them."""
    languages = {str(x).lower().split("-")[0] for x in agent.languages or []}
    if call.language and languages and call.language.lower().split("-")[0] not in languages:
        return False
    return set(call.skills or []) <= set(agent.skills or [])


async def busy_agents(session: AsyncSession, workspace_id: int) -> set[int]:
    stmt = select(Call.agent_id).where(
        Call.workspace_id == workspace_id,
        col(Call.state).in_(AGENT_BUSY_STATES),
        col(Call.agent_id).is_not(None),
    )
    return {a for a in (await session.exec(stmt)).all() if a is not None}


async def idle_since(session: AsyncSession, agent_ids: list[int]) -> dict[int, datetime]:
    if not agent_ids:
        return {}
    stmt = (
        select(Call.agent_id, func.max(Call.ended_at))
        .where(col(Call.agent_id).in_(agent_ids))
        .group_by(col(Call.agent_id))
    )
    out = {a: EPOCH for a in agent_ids}
    for agent_id, ended in (await session.exec(stmt)).all():
        if agent_id is not None and ended is not None:
            out[agent_id] = ended
    return out


async def free_agents(
    session: AsyncSession, workspace_id: int, team_id: int | None, ttl: float
) -> list[Agent]:
    """Available, voice-capable agents not on a call, longest idle first."""
    agents = await presence.available_agents(session, workspace_id, team_id, ttl)
    busy = await busy_agents(session, workspace_id)
    free = [a for a in agents if a.id is not None and a.id not in busy and voice_capacity(a)]
    idle = await idle_since(session, [a.id for a in free if a.id is not None])
    return sorted(free, key=lambda a: (idle.get(a.id or 0, EPOCH), a.id or 0))


async def do_pick_agent(uow: UnitOfWork, call: Call, ttl: float) -> Agent | None:
    """Offer a queued call to the best free agent (the caller commits)."""
    await xact_lock(uow.session, LOCK_VOICE, call.workspace_id)
    await uow.session.refresh(call)
    if call.state is not CallState.queued:
        return None
    candidates = [
        a
        for a in await free_agents(uow.session, call.workspace_id, call.team_id, ttl)
        if matches(a, call)
    ]
    if not candidates:
        return None
    fresh = [a for a in candidates if a.id not in set(call.declined)]
    if not fresh:
        # Everyone declined once: start a new round rather than leave the caller stranded.
        call.declined = []
        fresh = candidates
    agent = fresh[0]
    await calls.do_offer(uow, call, agent)
    return agent


async def agent_is_free(session: AsyncSession, agent: Agent, ttl: float) -> bool:
    assert agent.id is not None
    if not voice_capacity(agent) or agent.id in await busy_agents(session, agent.workspace_id):
        return False
    status = await presence.agent_status(session, agent.id, ttl)
    return status == presence.AVAILABLE


async def queue_position(session: AsyncSession, call: Call) -> int:
    """1-based place of a queued call in its team's queue."""
    stmt = select(func.count()).where(
        Call.workspace_id == call.workspace_id,
        Call.team_id == call.team_id,
        Call.state == CallState.queued,
        col(Call.queued_at) <= call.queued_at,
    )
    return max(1, int((await session.exec(stmt)).one()))


# -- callbacks -------------------------------------------------------------------------


async def do_request_callback(uow: UnitOfWork, call: Call) -> CallbackRequest:
    """The customer stopped waiting and asked to be called back: the call ends, a request
    joins the team's callback queue."""
    request = CallbackRequest(
        workspace_id=call.workspace_id,
        ticket_id=call.ticket_id,
        contact_id=call.contact_id,
        team_id=call.team_id,
        inbox_id=call.inbox_id,
    )
    uow.session.add(request)
    await uow.session.flush()
    now = utcnow()
    call.state = CallState.callback_requested
    call.ended_at = now
    call.wait_seconds = calls.seconds_between(call.queued_at, now)
    call.hangup_by = "customer"
    call.end_reason = "callback"
    uow.session.add(call)
    await calls.record(uow, call, "callback_requested", callback=request.id, wait=call.wait_seconds)
    return request


async def queued_teams_waiting(
    session: AsyncSession, workspace_id: int, team_id: int | None
) -> bool:
    stmt = select(func.count()).where(
        Call.workspace_id == workspace_id, Call.team_id == team_id, Call.state == CallState.queued
    )
    return int((await session.exec(stmt)).one()) > 0


async def do_next_callback(
    uow: UnitOfWork, workspace_id: int, ttl: float
) -> tuple[CallbackRequest, Agent] | None:
    """Progressive dialing: the oldest pending callback whose team has a free agent and no
    live callers waiting is given to that agent (state `dialing`)."""
    await xact_lock(uow.session, LOCK_VOICE, workspace_id)
    stmt = (
        select(CallbackRequest)
        .where(
            CallbackRequest.workspace_id == workspace_id,
            CallbackRequest.state == CallbackState.pending,
        )
        .order_by(col(CallbackRequest.created_at), col(CallbackRequest.id))
        .limit(50)
    )
    for request in (await uow.session.exec(stmt)).all():
        if await queued_teams_waiting(uow.session, workspace_id, request.team_id):
            continue  # callers on the line come first
        agents = await free_agents(uow.session, workspace_id, request.team_id, ttl)
        if not agents:
            continue
        agent = agents[0]
        request.state = CallbackState.dialing
        request.agent_id = agent.id
        request.attempts += 1
        request.updated_at = utcnow()
        uow.session.add(request)
        return request, agent
    return None


async def pending_callback_workspaces(session: AsyncSession) -> list[int]:
    stmt = (
        select(CallbackRequest.workspace_id)
        .where(CallbackRequest.state == CallbackState.pending)
        .distinct()
    )
    return list((await session.exec(stmt)).all())


async def do_callback_outcome(
    uow: UnitOfWork, request_id: int, outcome: CallbackState, *, retry: bool = False
) -> CallbackRequest | None:
    """Record how a dialed callback went; failed attempts go back to pending until the
    attempt limit (`retry`), agent declines go straight back to pending."""
    request = await uow.session.get(CallbackRequest, request_id)
    if request is None:
        return None
    if retry and request.attempts < MAX_CALLBACK_ATTEMPTS:
        request.state = CallbackState.pending
    else:
        request.state = outcome
    request.updated_at = utcnow()
    uow.session.add(request)
    return request
