"""Callbacks: a waiting caller asks to be called back; requests are dialed progressively.

When an agent of the request's team is free and no caller of that team is waiting, the
oldest request becomes an outbound call offered to that agent; on accept the customer's
widget rings (channels/voice/outbound.py). Outcomes land on the request and the ticket.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from app.events import UnitOfWork
from app.models import ActorType, Call, CallbackState, CallState, Role, Ticket, Workspace
from app.services import acd, calls
from app.services.actors import Actor
from app.services.errors import ServiceError
from channels.voice.live import LiveCall

if TYPE_CHECKING:
    from channels.voice.controller import CallController

log = logging.getLogger(__name__)

OUTCOMES = {
    "connected": CallbackState.connected,
    "declined": CallbackState.declined,
    "no_answer": CallbackState.no_answer,
    "offline": CallbackState.offline,
}


async def request_callback(ctrl: CallController, live: LiveCall) -> None:
    if live.direction != "inbound" or live.state not in ("queued", "offered"):
        from channels.voice.protocol import CallProtocolError

        raise CallProtocolError("conflict", "a callback can be requested while waiting")
    if live.offered_to is not None:
        await ctrl.withdraw(live, live.offered_to, "callback")
    await ctrl._write(live, lambda uow, call: acd.do_request_callback(uow, call))
    await ctrl.end_call(live, hangup_by="customer", reason="callback")


async def dial_callbacks(ctrl: CallController) -> None:
    ttl = ctrl.ctx.settings.chat_presence_ttl_seconds
    async with ctrl.ctx.read_sessions() as session:
        workspaces = await acd.pending_callback_workspaces(session)
    for workspace_id in workspaces:
        try:
            async with ctrl.ctx.uow() as uow:
                picked = await acd.do_next_callback(uow, workspace_id, ttl)
                if picked is None:
                    continue
                request, agent = picked
                ticket = await uow.session.get(Ticket, request.ticket_id)
                assert ticket is not None and agent.id is not None
                actor = Actor(workspace_id, ActorType.agent, agent.id, agent.name, Role(agent.role))
                call = await calls.do_start_outbound(uow, actor, ticket, ctrl.node, request.id)
                call.state = CallState.offered
                uow.session.add(call)
                workspace = await uow.session.get(Workspace, workspace_id)
                await uow.commit()
        except ServiceError as exc:
            log.info("callback in workspace %s not dialed: %s", workspace_id, exc.message)
            continue
        live = ctrl.new_live(
            call, recording=calls.recording_enabled(workspace.settings if workspace else None)
        )
        async with live.lock:
            live.state = "offered"
            await ctrl.ring_agent(live, agent.id, "callback", callback=request.id)


async def agent_missed(ctrl: CallController, live: LiveCall, outcome: str) -> None:
    """The agent did not take the callback: it goes back to the queue."""
    live.outcome = f"agent_{outcome}"
    await ctrl.end_call(live, hangup_by="agent", reason=f"agent_{outcome}")


async def record_outcome(uow: UnitOfWork, live: LiveCall, call: Call) -> None:
    """In the call's final transaction: how the dialed callback went. Failures other than
    a customer's decline go back to the queue until the attempt limit."""
    assert live.callback_id is not None
    outcome = live.outcome or ("connected" if call.answered_at else "no_answer")
    state = OUTCOMES.get(outcome, CallbackState.pending)
    retry = outcome not in ("connected", "declined")
    await acd.do_callback_outcome(uow, live.callback_id, state, retry=retry)
