"""Callbacks after a long wait, progressive callback dialing, and outbound calls."""

from __future__ import annotations

from typing import Any

import pytest
from conftest import AGENT_HZ, CUSTOMER_HZ, CallKit
from sqlmodel import select

from app.models import Call, CallbackRequest, CallbackState, CallDirection, TicketEvent


@pytest.fixture
def settings_overrides() -> dict[str, Any]:
    return {
        "chat_route_interval_seconds": 0.05,
        "chat_heartbeat_seconds": 0.5,
        "voice_acd_interval_seconds": 0.1,
        "voice_ring_timeout_seconds": 3.0,
        "voice_max_wait_seconds": 1.0,
        "smtp_enabled": False,
    }


async def outcomes(kit: CallKit, ticket: int) -> list[str]:
    async with kit.ctx.sessions() as session:
        events = (
            await session.exec(
                select(TicketEvent).where(TicketEvent.ticket_id == ticket).order_by(TicketEvent.seq)  # type: ignore[arg-type]
            )
        ).all()
    return [
        str(e.payload.get("outcome")) for e in events if e.payload.get("state") == "outbound_failed"
    ]


async def test_long_wait_offers_a_callback_that_is_dialed_when_an_agent_frees_up(
    kit: CallKit,
) -> None:
    widget = await kit.widget()
    call, _customer = await kit.start_call(widget)
    offer = await widget.wait(
        "call.state", lambda f: f["call"] == call and f.get("callback_offered") is True
    )
    assert offer["state"] == "queued"
    await widget.send({"type": "call.callback", "call": call})
    done = await widget.state("callback_requested", call)
    assert done["reason"] == "callback"
    async with kit.ctx.sessions() as session:
        request = (await session.exec(select(CallbackRequest))).one()
    assert request.state is CallbackState.pending

    # An agent comes online: the callback is offered to them, then the widget rings.
    console = await kit.console("agent")
    ring = await console.wait("call.state", lambda f: f.get("offer") == "callback")
    outbound = int(ring["call"])
    agent = kit.peer(AGENT_HZ)
    await console.send({"type": "call.accept", "call": outbound, "sdp": await agent.offer()})
    answer = await console.wait("call.answer", lambda f: f["call"] == outbound)
    await agent.accept(answer["sdp"])
    rings = await widget.state("ringing", outbound)
    assert rings["direction"] == "outbound" and rings["caller"]["name"] == "Agent acme"
    await widget.send({"type": "call.ringing", "call": outbound})
    callee = kit.peer(CUSTOMER_HZ)
    await widget.send({"type": "call.accept", "call": outbound, "sdp": await callee.offer()})
    answer = await widget.wait("call.answer", lambda f: f["call"] == outbound)
    await callee.accept(answer["sdp"])
    await callee.wait_for_tone(AGENT_HZ)
    await agent.wait_for_tone(CUSTOMER_HZ)
    await widget.send({"type": "call.hangup", "call": outbound})
    await console.state("ended", outbound)
    async with kit.ctx.sessions() as session:
        request = (await session.exec(select(CallbackRequest))).one()
        row = await session.get(Call, outbound)
    assert request.state is CallbackState.connected
    assert row is not None and row.direction is CallDirection.outbound
    assert row.callback_id == request.id and row.ticket_id == request.ticket_id


async def test_outbound_call_declined_and_offline(kit: CallKit) -> None:
    widget = await kit.widget()
    ack = await widget.say("please call me")
    ticket = int(ack["ticket"])
    console = await kit.console("agent", presence="away")
    agent = kit.peer(AGENT_HZ)
    await console.send({"type": "call.dial", "ticket": ticket, "sdp": await agent.offer()})
    answer = await console.wait("call.answer")
    await agent.accept(answer["sdp"])
    call = int(answer["call"])
    await widget.state("ringing", call)
    await widget.send({"type": "call.ringing", "call": call})
    await widget.send({"type": "call.decline", "call": call})
    await console.state("ended", call)
    assert await outcomes(kit, ticket) == ["declined"]

    # Nobody has the widget open: the ring goes unacknowledged.
    await widget.close()
    agent2 = kit.peer(AGENT_HZ)
    mark = console.mark()
    await console.send({"type": "call.dial", "ticket": ticket, "sdp": await agent2.offer()})
    answer = await console.wait("call.answer", after=mark)
    ended = await console.state("ended", int(answer["call"]), after=mark)
    assert ended["reason"] == "offline"
    assert await outcomes(kit, ticket) == ["declined", "offline"]


async def test_outbound_call_connected(kit: CallKit) -> None:
    widget = await kit.widget()
    ack = await widget.say("call me")
    console = await kit.console("agent", presence="away")
    agent = kit.peer(AGENT_HZ)
    await console.send({"type": "call.dial", "ticket": ack["ticket"], "sdp": await agent.offer()})
    answer = await console.wait("call.answer")
    await agent.accept(answer["sdp"])
    call = int(answer["call"])
    await widget.state("ringing", call)
    await widget.send({"type": "call.ringing", "call": call})
    callee = kit.peer(CUSTOMER_HZ)
    await widget.send({"type": "call.accept", "call": call, "sdp": await callee.offer()})
    answer = await widget.wait("call.answer", lambda f: f["call"] == call)
    await callee.accept(answer["sdp"])
    await callee.wait_for_tone(AGENT_HZ)
    await agent.wait_for_tone(CUSTOMER_HZ)
    await console.state("active", call)
    # Public call events reached the widget: outbound + answered.
    await widget.wait("event", lambda f: f.get("body") == "Call answered by Agent acme")
    assert "Calling the customer" in [f["body"] for f in widget.call_events()]
