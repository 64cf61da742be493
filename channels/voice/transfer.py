"""Transfers: blind (to an agent or a team) and warm (consult the target, then complete)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from app.models import Agent, CallState, Team
from app.services import calls
from app.services.errors import NotFound
from channels.voice.live import CUSTOMER, Consult, LiveCall
from channels.voice.protocol import CallProtocolError, Endpoint, opt_int

if TYPE_CHECKING:
    from channels.voice.controller import CallController


async def _target_agent(ctrl: CallController, live: LiveCall, agent_id: int) -> Agent:
    async with ctrl.ctx.read_sessions() as session:
        agent = await session.get(Agent, agent_id)
    if agent is None or agent.workspace_id != live.workspace_id or not agent.is_active:
        raise NotFound("agent not found")
    if agent_id == live.agent_id:
        raise CallProtocolError("conflict", "the call is already yours")
    return agent


async def transfer(
    ctrl: CallController, live: LiveCall, ep: Endpoint, frame: dict[str, Any]
) -> None:
    from channels.voice.controller import agent_actor

    action = frame.get("action")
    if action == "complete":
        await complete(ctrl, live)
        return
    if action == "cancel":
        await cancel(ctrl, live)
        return
    if live.state not in ("active", "held") or live.consult is not None:
        raise CallProtocolError("conflict", "only a connected call can be transferred")
    mode = frame.get("mode", "blind")
    agent_id, team_id = opt_int(frame, "agent"), opt_int(frame, "team")
    actor = agent_actor(ep)
    if mode == "warm":
        if agent_id is None:
            raise CallProtocolError("bad_frame", "a warm transfer needs `agent`")
        target = await _target_agent(ctrl, live, agent_id)
        live.media.hold(CUSTOMER) if CUSTOMER in live.media.legs else None
        live.consult = Consult(agent_id)
        live.state = "transferring"
        await ctrl._write(
            live,
            lambda uow, call: calls.do_set_state(
                uow,
                call,
                CallState.transferring,
                "consult",
                internal=True,
                actor=actor,
                agent=target.name,
                agent_id=agent_id,
            ),
        )
        await ctrl.send(live.customer, ctrl.customer_state(live, "held"))
        await ctrl.send(live.agent, ctrl.agent_state(live, "transferring", consult="ringing"))
        await ctrl.ring_agent(live, agent_id, "consult", consult_from=ep.name)
        return
    if mode != "blind":
        raise CallProtocolError("bad_frame", "`mode` is blind or warm")
    if agent_id is None and team_id is None:
        raise CallProtocolError("bad_frame", "a transfer needs `agent` or `team`")
    if agent_id is not None:
        target = await _target_agent(ctrl, live, agent_id)
        old = live.agent
        await ctrl.drop_leg(live, live.agent_leg)
        live.agent, live.agent_leg, live.agent_id, live.agent_name = None, None, None, ""
        live.state = "transferring"
        ctrl._route_customer(live)

        async def to_agent(uow: Any, call: Any) -> None:
            call.agent_id = None
            await calls.do_set_state(
                uow,
                call,
                CallState.transferring,
                "transferred",
                actor=actor,
                agent=target.name,
                agent_id=agent_id,
            )

        await ctrl._write(live, to_agent)
        await ctrl.send(old, ctrl.agent_state(live, "transferred"))
        await ctrl.send(live.customer, ctrl.customer_state(live, "transferring"))
        await ctrl.ring_agent(live, agent_id, "transfer")
        return
    async with ctrl.ctx.read_sessions() as session:
        team = await session.get(Team, team_id)
    if team is None or team.workspace_id != live.workspace_id:
        raise NotFound("team not found")
    old = live.agent
    await ctrl.drop_leg(live, live.agent_leg)

    async def to_team(uow: Any, call: Any) -> None:
        call.team_id = team_id
        await calls.do_set_state(
            uow, call, CallState.queued, "transferred", actor=actor, team=team.name, team_id=team_id
        )

    await ctrl._write(live, to_team)
    live.team_id = team_id
    await ctrl.send(old, ctrl.agent_state(live, "transferred"))
    await ctrl.requeued(live)


async def consult_answered(ctrl: CallController, live: LiveCall, ep: Endpoint, sdp: str) -> None:
    assert live.consult is not None
    leg = live.next_leg(f"agent-{ep.agent_id}")
    await ctrl.add_leg(live, leg, sdp, "agent", ep)
    live.consult.endpoint, live.consult.leg = ep, leg
    if live.agent_leg in live.media.legs:
        live.media.bridge(live.agent_leg or "", leg)
    await ctrl.send(live.agent, ctrl.agent_state(live, "transferring", consult="connected"))
    await ctrl.send(ep, ctrl.agent_state(live, "transferring", consult="connected"))


async def complete(ctrl: CallController, live: LiveCall) -> None:
    consult = live.consult
    if consult is None or consult.leg is None or consult.endpoint is None:
        raise CallProtocolError("conflict", "no consulted agent to hand the call to")
    old = live.agent
    await ctrl.drop_leg(live, live.agent_leg)
    ep = consult.endpoint
    live.consult = None
    live.agent, live.agent_leg, live.agent_id, live.agent_name = (
        ep,
        consult.leg,
        ep.agent_id,
        ep.name,
    )
    live.state = "active"
    ctrl._route_customer(live)
    async with ctrl.ctx.read_sessions() as session:
        target = await session.get(Agent, ep.agent_id)
    name = target.name if target else ep.name

    async def done(uow: Any, call: Any) -> None:
        call.agent_id = ep.agent_id
        await calls.do_set_state(
            uow, call, CallState.active, "transferred", agent=name, agent_id=ep.agent_id, warm=True
        )

    await ctrl._write(live, done)
    await ctrl.send(old, ctrl.agent_state(live, "transferred"))
    await ctrl.notify(live, "active")


async def cancel(ctrl: CallController, live: LiveCall) -> None:
    consult = live.consult
    if consult is None:
        raise CallProtocolError("conflict", "no transfer to cancel")
    live.consult = None
    if live.offered_to == consult.agent_id:
        await ctrl.withdraw(live, consult.agent_id, "cancelled")
    await ctrl.drop_leg(live, consult.leg)
    await ctrl.send(consult.endpoint, ctrl.agent_state(live, "withdrawn", reason="cancelled"))
    live.state = "active" if live.agent_leg else "held"
    if CUSTOMER in live.media.legs:
        live.media.unhold(CUSTOMER)
    ctrl._route_customer(live)
    state = CallState.active if live.agent_leg else CallState.held
    await ctrl._write(
        live,
        lambda uow, call: calls.do_set_state(uow, call, state, "consult_cancelled", internal=True),
    )
    await ctrl.notify(live, live.state)
