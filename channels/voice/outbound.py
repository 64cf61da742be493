"""Outbound calls: an agent calls a contact who is online in the widget (the widget rings).

Outcomes: connected (answered), declined, no_answer (rang out), offline (no widget
acknowledged the ring within a few seconds). Callback dialing uses the same path once
the agent has accepted the callback.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from app.models import Agent, CallState, Workspace
from app.services import calls
from app.services.tickets import get_ticket
from channels.voice.live import CUSTOMER, LiveCall
from channels.voice.protocol import CallProtocolError, Endpoint, opt_int, sdp_of

if TYPE_CHECKING:
    from channels.voice.controller import CallController


async def dial(ctrl: CallController, ep: Endpoint, frame: dict[str, Any]) -> None:
    from channels.voice.controller import agent_actor

    if ep.side != "agent" or ep.agent_id is None:
        raise CallProtocolError("forbidden", "only agents place calls")
    ticket_id = opt_int(frame, "ticket")
    if ticket_id is None:
        raise CallProtocolError("bad_frame", "`ticket` is required")
    sdp = str(sdp_of(frame))
    actor = agent_actor(ep)
    async with ctrl.ctx.uow() as uow:
        ticket = await get_ticket(uow.session, actor, ticket_id)
        call = await calls.do_start_outbound(uow, actor, ticket, ctrl.node)
        workspace = await uow.session.get(Workspace, ep.workspace_id)
        await uow.commit()
    live = ctrl.new_live(
        call, recording=calls.recording_enabled(workspace.settings if workspace else None)
    )
    async with live.lock:
        live.state = "ringing"
        await agent_ready(ctrl, live, ep, sdp, record_dialing=False)


async def agent_ready(
    ctrl: CallController, live: LiveCall, ep: Endpoint, sdp: str, record_dialing: bool = True
) -> None:
    """The calling agent's leg is up: ring the customer's widgets."""
    leg = live.next_leg(f"agent-{ep.agent_id}")
    try:
        await ctrl.add_leg(live, leg, sdp, "agent", ep)
    except CallProtocolError:
        await ctrl.end_call(live, hangup_by="agent", reason="failed")
        raise
    live.agent, live.agent_id, live.agent_leg, live.agent_name = ep, ep.agent_id, leg, ep.name
    live.state = "ringing"
    if record_dialing:
        await ctrl._write(
            live,
            lambda uow, call: calls.do_set_state(
                uow, call, CallState.ringing, "dialing", internal=True, agent=ep.name
            ),
        )
    await ctrl.send(ep, ctrl.agent_state(live, "ringing"))
    frame = ctrl.customer_state(live, "ringing", caller={"name": ep.name})
    await ctrl.channel.deliver({"contact": live.contact_id, "workspace": live.workspace_id}, frame)
    live.ring_acked = False
    ctrl.timer(live, "ring_ack", 3.0, lambda: _no_ack(ctrl, live))
    ctrl.timer(
        live, "ring", ctrl.settings.voice_ring_timeout_seconds, lambda: _rang_out(ctrl, live)
    )


async def _no_ack(ctrl: CallController, live: LiveCall) -> None:
    if not live.ring_acked and live.state == "ringing":
        await fail(ctrl, live, "offline")


async def _rang_out(ctrl: CallController, live: LiveCall) -> None:
    if live.state == "ringing":
        await fail(ctrl, live, "no_answer")


async def fail(ctrl: CallController, live: LiveCall, outcome: str) -> None:
    live.outcome = outcome
    await ctrl._write(
        live, lambda uow, call: calls.record(uow, call, "outbound_failed", outcome=outcome)
    )
    await ctrl.channel.deliver(
        {"contact": live.contact_id, "workspace": live.workspace_id},
        ctrl.customer_state(live, "ended", reason=outcome),
    )
    await ctrl.end_call(
        live, hangup_by="customer" if outcome == "declined" else "system", reason=outcome
    )


async def widget_answer(
    ctrl: CallController, live: LiveCall, ep: Endpoint, kind: str, frame: dict[str, Any]
) -> None:
    if live.direction != "outbound" or live.state != "ringing":
        raise CallProtocolError("conflict", "this call is not ringing")
    if kind == "call.ringing":
        live.ring_acked = True
        live.cancel_timer("ring_ack")
        return
    if kind == "call.decline":
        await fail(ctrl, live, "declined")
        return
    sdp = str(sdp_of(frame))
    live.cancel_timer("ring_ack")
    live.cancel_timer("ring")
    live.customer = ep
    await ctrl.add_leg(live, CUSTOMER, sdp, "customer", ep)
    live.outcome = "connected"
    async with ctrl.ctx.read_sessions() as session:
        agent = await session.get(Agent, live.agent_id)
    assert agent is not None
    live.state = "active"
    await ctrl._write(live, lambda uow, call: calls.do_answer(uow, call, agent))
    ctrl._route_customer(live)
    await ctrl.start_recording(live)
    await ctrl.notify(live, "active")
    # Other tabs of the customer stop ringing.
    await ctrl.channel.deliver(
        {"contact": live.contact_id, "workspace": live.workspace_id},
        ctrl.customer_state(live, "answered_elsewhere") | {"conn": ep.conn},
    )
