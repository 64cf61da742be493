"""Read-only views of calls for the console: live calls, one call, a ticket's calls.

The voice channel owns the call rows (channels/voice, app/services/calls.py); this
module only reads them, scoped to the workspace and to the tickets the agent may see.
"""

from __future__ import annotations

from typing import Any

from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from app.models import Agent, Call, CallbackRequest, CallbackState, Contact, Team, Ticket
from app.models.call import LIVE_CALL_STATES
from app.services.actors import Actor
from app.services.calls import call_public
from app.services.errors import NotFound
from app.services.tickets import can_see, get_ticket, visibility_clause

MAX_LIVE_CALLS = 500
MAX_CALLBACKS = 50
OPEN_CALLBACK_STATES = (CallbackState.pending, CallbackState.dialing)


async def _names(session: AsyncSession, model: Any, ids: set[int]) -> dict[int, str]:
    if not ids:
        return {}
    rows = await session.exec(select(model.id, model.name).where(col(model.id).in_(sorted(ids))))
    return {int(i): str(n or "") for i, n in rows.all()}


async def _rows(session: AsyncSession, pairs: list[tuple[Call, Ticket]]) -> list[dict[str, Any]]:
    """Calls with the names the console shows next to them."""
    agents = await _names(session, Agent, {c.agent_id for c, _ in pairs if c.agent_id})
    teams = await _names(session, Team, {c.team_id for c, _ in pairs if c.team_id})
    contacts = await _names(session, Contact, {c.contact_id for c, _ in pairs if c.contact_id})
    out = []
    for call, ticket in pairs:
        row = call_public(call)
        row.update(
            ticket_number=ticket.number,
            ticket_subject=ticket.subject,
            agent_name=agents.get(call.agent_id or 0, ""),
            team_name=teams.get(call.team_id or 0, ""),
            contact_name=contacts.get(call.contact_id or 0, ""),
        )
        out.append(row)
    return out


async def live_calls(session: AsyncSession, actor: Actor) -> list[dict[str, Any]]:
    """Every live call of the workspace on a ticket the actor may see, oldest first."""
    stmt = (
        select(Call, Ticket)
        .join(Ticket, col(Ticket.id) == col(Call.ticket_id))
        .where(
            Call.workspace_id == actor.workspace_id,
            col(Call.state).in_(LIVE_CALL_STATES),
        )
        .order_by(col(Call.queued_at), col(Call.id))
        .limit(MAX_LIVE_CALLS)
    )
    clause = visibility_clause(actor)
    if clause is not None:
        stmt = stmt.where(clause)
    pairs = [(c, t) for c, t in (await session.exec(stmt)).all()]
    return await _rows(session, pairs)


async def call_detail(session: AsyncSession, actor: Actor, call_id: int) -> dict[str, Any]:
    """One call, for the agent it is with (or offered to) or anyone who sees its ticket."""
    call = await session.get(Call, call_id)
    if call is None or call.workspace_id != actor.workspace_id:
        raise NotFound("call not found")
    ticket = await session.get(Ticket, call.ticket_id)
    assert ticket is not None
    mine = call.agent_id is not None and call.agent_id == actor.agent_id
    if not mine and not can_see(actor, ticket):
        raise NotFound("call not found")
    return (await _rows(session, [(call, ticket)]))[0]


async def ticket_calls(session: AsyncSession, actor: Actor, ticket_id: int) -> dict[str, Any]:
    """A ticket's live call (if any) and its callback requests, newest first."""
    ticket = await get_ticket(session, actor, ticket_id)
    stmt = (
        select(Call)
        .where(
            Call.workspace_id == actor.workspace_id,
            Call.ticket_id == ticket_id,
            col(Call.state).in_(LIVE_CALL_STATES),
        )
        .order_by(col(Call.id).desc())
        .limit(1)
    )
    call = (await session.exec(stmt)).first()
    live = (await _rows(session, [(call, ticket)]))[0] if call is not None else None
    cb_stmt = (
        select(CallbackRequest)
        .where(
            CallbackRequest.workspace_id == actor.workspace_id,
            CallbackRequest.ticket_id == ticket_id,
        )
        .order_by(col(CallbackRequest.id).desc())
        .limit(MAX_CALLBACKS)
    )
    requests = list((await session.exec(cb_stmt)).all())
    agents = await _names(session, Agent, {r.agent_id for r in requests if r.agent_id})
    callbacks = [
        {
            "id": r.id,
            "state": r.state.value,
            "open": r.state in OPEN_CALLBACK_STATES,
            "attempts": r.attempts,
            "agent_name": agents.get(r.agent_id or 0, ""),
            "created_at": r.created_at.isoformat(),
            "updated_at": r.updated_at.isoformat(),
        }
        for r in requests
    ]
    return {
        "ticket_id": ticket_id,
        "contact_id": ticket.contact_id,
        "live": live,
        "callbacks": callbacks,
    }


async def pending_callbacks(session: AsyncSession, actor: Actor) -> int:
    """How many callback requests wait to be dialed (supervisor station)."""
    from sqlalchemy import func

    stmt = (
        select(func.count())
        .select_from(CallbackRequest)
        .join(Ticket, col(Ticket.id) == col(CallbackRequest.ticket_id))
        .where(
            CallbackRequest.workspace_id == actor.workspace_id,
            col(CallbackRequest.state).in_(OPEN_CALLBACK_STATES),
        )
    )
    clause = visibility_clause(actor)
    if clause is not None:
        stmt = stmt.where(clause)
    return int((await session.exec(stmt)).one())
