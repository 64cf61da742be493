"""Agent console reloads: the customer holds, the agent rejoins, or the call is requeued."""

from __future__ import annotations

from call_clients import Console
from conftest import AGENT2_HZ, AGENT_HZ, CUSTOMER_HZ, CallKit, is_hold
from sqlmodel import select

from app.models import Call, CallState, TicketEvent


async def test_agent_drop_and_rejoin_within_grace(kit: CallKit) -> None:
    widget = await kit.widget()
    call, customer = await kit.start_call(widget)
    console = await kit.console("agent")
    agent = await kit.accept(console, call)
    await customer.wait_for_tone(AGENT_HZ)

    # The console reloads: websocket and media gone at once.
    await agent.close()
    await console.close()
    held = await widget.state("held", call)
    assert held["reason"] == "agent_reconnecting"
    await customer.wait_for(is_hold)

    console2 = await kit.console("agent")
    notice = await console2.wait("call.state", lambda f: f["call"] == call)
    assert notice["rejoin"] is True
    peer = kit.peer(AGENT2_HZ)
    await console2.send({"type": "call.offer", "call": call, "sdp": await peer.offer()})
    answer = await console2.wait("call.answer", lambda f: f["call"] == call)
    await peer.accept(answer["sdp"])
    await peer.wait_connected()
    await customer.wait_for_tone(AGENT2_HZ)
    await peer.wait_for_tone(CUSTOMER_HZ)
    # The customer's leg survived all of it without renegotiation.
    assert customer.states == ["connecting", "connected"]
    async with kit.ctx.sessions() as session:
        kinds = [
            e.payload.get("state")
            for e in (await session.exec(select(TicketEvent).order_by(TicketEvent.seq))).all()
            if e.payload.get("call") == call
        ]
    assert kinds[-2:] == ["agent_lost", "agent_rejoined"]


async def test_call_is_requeued_after_the_grace_period(kit: CallKit) -> None:
    widget = await kit.widget()
    call, customer = await kit.start_call(widget)
    console = await kit.console("agent")
    agent = await kit.accept(console, call)
    await customer.wait_for_tone(AGENT_HZ)
    await agent.close()
    await console.close()
    await widget.state("held", call)
    mark = widget.mark()
    requeued = await widget.state("queued", call, after=mark)
    assert requeued["position"] == 1
    await customer.wait_for(is_hold)
    other: Console = await kit.console("supervisor")
    peer = await kit.accept(other, call, AGENT2_HZ)
    await customer.wait_for_tone(AGENT2_HZ)
    await peer.wait_for_tone(CUSTOMER_HZ)
    async with kit.ctx.sessions() as session:
        row = await session.get(Call, call)
    assert row is not None and row.state is CallState.active
    assert row.agent_id == kit.workspace.agent_ids["supervisor"]
