"""Inbound calls end to end: widget -> queue with hold audio -> agent answers -> hang up.

aiortc peers play the customer and the agent; signaling rides the real widget and
console websockets of the running app.
"""

from __future__ import annotations

import asyncio

import httpx
from call_clients import Console
from conftest import AGENT2_HZ, AGENT_HZ, CUSTOMER_HZ, CallKit, is_hold
from sqlmodel import select

from app.models import Call, CallState, Channel, Ticket
from app.models.base import utcnow
from tests.conftest import LiveServer


async def timeline(live: LiveServer, kit: CallKit, ticket: int) -> list[dict[str, object]]:
    async with httpx.AsyncClient(base_url=live.url) as http:
        r = await http.get(f"/api/v1/tickets/{ticket}/events", headers=kit.workspace.auth("admin"))
        assert r.status_code == 200, r.text
        return list(r.json()["items"])


async def test_customer_hears_hold_then_the_agent_without_renegotiation(
    kit: CallKit, live_server: LiveServer
) -> None:
    widget = await kit.widget()
    call, customer = await kit.start_call(widget)
    queued = await widget.state("queued", call)
    assert queued["position"] == 1 and queued["recording"] is False
    await customer.wait_for(is_hold)
    local_sdp = customer.pc.localDescription.sdp

    console = await kit.console("agent")
    agent = await kit.accept(console, call)
    await customer.wait_for_tone(AGENT_HZ)
    await agent.wait_for_tone(CUSTOMER_HZ)
    active = await widget.state("active", call)
    assert active["agent"]["name"] == "Agent acme"

    # One offer/answer for the whole call; the customer's connection never left connected.
    assert customer.states == ["connecting", "connected"]
    assert customer.pc.connectionState == "connected"
    assert customer.pc.signalingState == "stable"
    assert customer.pc.localDescription.sdp == local_sdp
    seqs = [s for s, _ in customer.rtp]
    assert seqs == list(range(seqs[0], seqs[0] + len(seqs)))

    await console.send({"type": "call.hangup", "call": call})
    ended = await widget.state("ended", call)
    assert ended["hangup_by"] == "agent" and ended["duration"] >= 0

    async with kit.ctx.sessions() as session:
        row = (await session.exec(select(Call).where(Call.id == call))).one()
    assert row.state is CallState.ended and row.agent_id == kit.workspace.agent_ids["agent"]
    assert row.wait_seconds is not None and row.duration_seconds is not None
    assert row.owner_node == live_server.app.state.voice.node
    async with kit.ctx.sessions() as session:
        ticket = await session.get(Ticket, row.ticket_id)
    assert ticket is not None and ticket.channel is Channel.voice  # a fresh call's own ticket

    events = await timeline(live_server, kit, row.ticket_id)
    calls = [(e["payload"]["state"], e["internal"]) for e in events if e["kind"] == "call"]
    assert calls == [("queued", False), ("offered", True), ("answered", False), ("ended", False)]
    answered = next(e for e in events if e["payload"].get("state") == "answered")
    assert answered["payload"]["agent"] == "Agent acme" and answered["payload"]["wait"] >= 0
    ended_event = next(e for e in events if e["payload"].get("state") == "ended")
    assert ended_event["payload"]["hangup_by"] == "agent"

    # The widget saw every public call event as an event frame, and no internal one.
    await widget.wait("event", lambda f: f.get("body") == "Call ended")
    seen = [f["body"] for f in widget.call_events()]
    assert seen == [
        "Call started, waiting for an agent",
        "Call answered by Agent acme",
        "Call ended",
    ]


async def test_call_from_a_chat_keeps_the_ticket(kit: CallKit) -> None:
    widget = await kit.widget()
    ack = await widget.say("Hello, can I call you?")
    call, _ = await kit.start_call(widget)
    queued = await widget.state("queued", call)
    assert queued["ticket"] == ack["ticket"]
    await widget.send({"type": "call.hangup", "call": call})
    ended = await widget.state("abandoned", call)
    assert ended["hangup_by"] == "customer"


async def test_decline_and_ring_out_offer_the_call_to_the_next_agent(kit: CallKit) -> None:
    first = await kit.console("agent")
    second = await kit.console("supervisor")
    widget = await kit.widget()
    call, customer = await kit.start_call(widget)
    # Both idle since ever: the lower agent id (agent "agent" was created after the
    # supervisor) — just find who rings first.
    ringing = await asyncio.wait_for(_first_offered(first, second, call), timeout=15)
    other = second if ringing is first else first
    await ringing.send({"type": "call.decline", "call": call})
    await ringing.state("withdrawn", call)
    await other.state("offered", call)
    # The second agent lets it ring out: back to the first one.
    mark = ringing.mark()
    await other.state("withdrawn", call)
    await ringing.state("offered", call, after=mark)
    peer = await kit.accept(ringing, call, AGENT2_HZ)
    await customer.wait_for_tone(AGENT2_HZ)
    await peer.wait_for_tone(CUSTOMER_HZ)


async def _first_offered(a: Console, b: Console, call: int) -> Console:
    while True:
        for c in (a, b):
            if any(
                f.get("type") == "call.state"
                and f.get("state") == "offered"
                and f.get("call") == call
                for f in c.frames
            ):
                return c
        await asyncio.sleep(0.05)


async def test_customer_network_drop_ends_the_call_and_keeps_the_chat(kit: CallKit) -> None:
    widget = await kit.widget()
    await widget.say("hi")
    call, customer = await kit.start_call(widget)
    console = await kit.console("agent")
    await kit.accept(console, call)
    await customer.close()  # the customer's media goes away
    ended = await console.state("ended", call)
    assert ended["reason"] == "customer_lost"
    ack = await widget.say("still here")  # the chat goes on
    assert ack["seq"] > 0


async def test_a_call_left_live_by_a_dead_process_does_not_block_a_new_one(kit: CallKit) -> None:
    widget = await kit.widget()
    ack = await widget.say("hello")
    async with kit.ctx.uow() as uow:
        ticket = await uow.session.get(Ticket, ack["ticket"])
        assert ticket is not None
        stale = Call(
            workspace_id=ticket.workspace_id,
            ticket_id=ack["ticket"],
            contact_id=ticket.contact_id,
            state=CallState.active,
            answered_at=utcnow(),
            owner_node="a-process-that-crashed",
        )
        uow.session.add(stale)
        await uow.commit()
    call, customer = await kit.start_call(widget)
    await customer.wait_for(is_hold)
    async with kit.ctx.sessions() as session:
        old = await session.get(Call, stale.id)
    assert old is not None and old.state is CallState.ended and old.end_reason == "media_lost"
    assert call != stale.id
