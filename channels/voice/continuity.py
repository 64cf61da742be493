"""Agent continuity: a console that reloads or loses its network keeps the call.

The customer's leg never depends on the agent's: when the agent's websocket closes or
their leg fails, the customer hears hold audio, the agent may rejoin the same call
with a new leg within the grace period, and after it the call goes back to the queue.
Connection closes are also how a customer's lost network ends a call.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from sqlmodel import col, select

from app.models import Call, CallState
from app.models.call import LIVE_CALL_STATES
from app.services import calls
from app.services.actors import Actor
from channels.voice.leg import Leg
from channels.voice.live import CUSTOMER, LiveCall
from channels.voice.media import CallMedia
from channels.voice.protocol import CallProtocolError, Endpoint, state_frame

if TYPE_CHECKING:
    from channels.voice.controller import CallController


async def agent_lost(ctrl: CallController, live: LiveCall, why: str) -> None:
    """The agent's console or network went away: the customer holds, the agent may
    rejoin within the grace period."""
    if live.agent_lost or live.state not in ("active", "held", "transferring"):
        return
    leg = live.agent_leg
    live.agent_lost = True
    live.agent = None
    live.agent_leg = None
    await ctrl.drop_leg(live, leg)
    ctrl._route_customer(live)
    await ctrl._write(
        live,
        lambda uow, call: calls.do_set_state(
            uow, call, CallState.held, "agent_lost", internal=True, why=why
        ),
    )
    live.state = "held"
    await ctrl.send(live.customer, ctrl.customer_state(live, "held", reason="agent_reconnecting"))
    ctrl.timer(
        live, "grace", ctrl.settings.voice_rejoin_grace_seconds, lambda: grace_over(ctrl, live)
    )


async def grace_over(ctrl: CallController, live: LiveCall) -> None:
    if not live.agent_lost:
        return
    agent_id = live.agent_id
    live.agent_lost = False
    await ctrl._write(
        live,
        lambda uow, call: calls.do_set_state(
            uow, call, CallState.queued, "requeued", agent_id=agent_id, reason="agent_lost"
        ),
    )
    await ctrl.requeued(live)


async def rejoin(ctrl: CallController, live: LiveCall, ep: Endpoint, sdp: str) -> None:
    if not live.agent_lost:
        raise CallProtocolError("conflict", "you are still connected to this call")
    live.cancel_timer("grace")
    leg = live.next_leg(f"agent-{ep.agent_id}")
    await ctrl.add_leg(live, leg, sdp, "agent", ep)
    live.agent, live.agent_leg, live.agent_lost, live.state = ep, leg, False, "active"
    ctrl._route_customer(live)
    await ctrl._write(
        live,
        lambda uow, call: calls.do_set_state(
            uow, call, CallState.active, "agent_rejoined", internal=True, actor=_actor(ep)
        ),
    )
    await ctrl.notify(live, "active")


async def announce_to(ctrl: CallController, ep: Endpoint) -> None:
    """Tell a console that just connected about its agent's live calls (to rejoin)."""
    if ep.agent_id is None:
        return
    async with ctrl.ctx.read_sessions() as session:
        stmt = select(Call).where(
            Call.workspace_id == ep.workspace_id,
            Call.agent_id == ep.agent_id,
            col(Call.state).in_(LIVE_CALL_STATES),
        )
        rows = list((await session.exec(stmt)).all())
    for call in rows:
        assert call.id is not None
        live = ctrl.live.get(call.id)
        lost = live.agent_lost if live is not None else None
        frame = state_frame(
            call.id, call.state.value, ticket=call.ticket_id, role="agent", rejoin=lost
        )
        await ctrl.channel.send_to(ep, frame)


async def connection_closed(ctrl: CallController, conn: str) -> None:
    for live in list(ctrl.live.values()):
        if live.ended:
            continue
        async with live.lock:
            if live.ended:
                continue
            await closed_in(ctrl, live, conn)


async def closed_in(ctrl: CallController, live: LiveCall, conn: str) -> None:
    from channels.voice import supervision, transfer

    if live.customer is not None and live.customer.conn == conn:
        await ctrl.end_call(live, hangup_by="customer", reason="customer_lost")
    elif live.agent is not None and live.agent.conn == conn:
        if live.direction == "outbound" and live.state in ("offered", "ringing"):
            await ctrl.end_call(live, hangup_by="agent", reason="agent_lost")
        else:
            await agent_lost(ctrl, live, "console_closed")
    elif live.consult is not None and live.consult.endpoint and live.consult.endpoint.conn == conn:
        await transfer.cancel(ctrl, live)
    else:
        for leg, (ep, _) in list(live.supervisors.items()):
            if ep.conn == conn:
                await supervision.leave(ctrl, live, leg)


def leg_state(ctrl: CallController, media: CallMedia, leg: Leg, state: str) -> None:
    if state not in ("failed", "closed"):
        return
    call_id = int(media.call_id.split("-")[1])
    live = ctrl.live.get(call_id)
    if live is None or live.ended or media.legs.get(leg.name) is not leg:
        return  # a leg we removed ourselves
    ctrl.ctx.spawn(leg_down(ctrl, live, leg.name), f"voice-leg-down-{call_id}")


async def leg_down(ctrl: CallController, live: LiveCall, name: str) -> None:
    from channels.voice import supervision, transfer

    async with live.lock:
        if live.ended:
            return
        if name == CUSTOMER:
            await ctrl.end_call(live, hangup_by="customer", reason="customer_lost")
        elif name == live.agent_leg:
            await agent_lost(ctrl, live, "media_failed")
        elif live.consult is not None and name == live.consult.leg:
            await transfer.cancel(ctrl, live)
        elif name in live.supervisors:
            await supervision.leave(ctrl, live, name)


def _actor(ep: Endpoint) -> Actor:
    from channels.voice.controller import agent_actor

    return agent_actor(ep)
