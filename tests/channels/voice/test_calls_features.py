"""Agent controls and supervision: hold, mute, transfers, whisper, recording."""

from __future__ import annotations

import av
import httpx
import numpy as np
from conftest import AGENT2_HZ, AGENT_HZ, CUSTOMER_HZ, SUPERVISOR_HZ, CallKit, is_hold
from sqlmodel import select
from voice_peers import band_ratio, peak_hz

from app.models import Attachment, Call, TicketEvent
from tests.conftest import LiveServer


def rms(pcm: np.ndarray) -> float:  # type: ignore[type-arg]
    return float(np.sqrt(np.mean(pcm.astype(np.float64) ** 2)))


async def connected_call(kit: CallKit):  # type: ignore[no-untyped-def]
    widget = await kit.widget()
    call, customer = await kit.start_call(widget)
    console = await kit.console("agent")
    agent = await kit.accept(console, call)
    await customer.wait_for_tone(AGENT_HZ)
    return widget, call, customer, console, agent


async def test_hold_and_mute(kit: CallKit) -> None:
    widget, call, customer, console, agent = await connected_call(kit)
    await console.send({"type": "call.hold", "call": call, "held": True})
    await widget.state("held", call)
    await customer.wait_for(is_hold)
    await agent.wait_for(lambda p: rms(p) < 50)
    await console.send({"type": "call.hold", "call": call, "held": False})
    await customer.wait_for_tone(AGENT_HZ)
    await widget.send({"type": "call.mute", "call": call, "muted": True})
    await agent.wait_for(lambda p: rms(p) < 50)
    await widget.send({"type": "call.mute", "call": call, "muted": False})
    await agent.wait_for_tone(CUSTOMER_HZ)
    assert customer.states == ["connecting", "connected"]


async def test_blind_transfer_to_an_agent(kit: CallKit) -> None:
    _widget, call, customer, console, _agent = await connected_call(kit)
    target = await kit.console("supervisor", presence="away")
    await console.send(
        {
            "type": "call.transfer",
            "call": call,
            "mode": "blind",
            "agent": kit.workspace.agent_ids["supervisor"],
        }
    )
    await console.state("transferred", call)
    await customer.wait_for(is_hold)
    peer = await kit.accept(target, call, AGENT2_HZ)
    await customer.wait_for_tone(AGENT2_HZ)
    await peer.wait_for_tone(CUSTOMER_HZ)
    assert customer.states == ["connecting", "connected"]


async def test_blind_transfer_to_a_team(kit: CallKit) -> None:
    widget, call, customer, console, _agent = await connected_call(kit)
    await console.send(
        {
            "type": "call.transfer",
            "call": call,
            "mode": "blind",
            "team": kit.workspace.team_ids["Billing"],
        }
    )
    await console.state("transferred", call)
    await widget.state("queued", call)
    billing = await kit.console("admin")  # admin is in Billing
    peer = await kit.accept(billing, call, AGENT2_HZ)
    await customer.wait_for_tone(AGENT2_HZ)
    await peer.wait_for_tone(CUSTOMER_HZ)


async def test_warm_transfer_consult_then_complete(kit: CallKit) -> None:
    _widget, call, customer, console, agent = await connected_call(kit)
    target = await kit.console("supervisor", presence="away")
    await console.send(
        {
            "type": "call.transfer",
            "call": call,
            "mode": "warm",
            "agent": kit.workspace.agent_ids["supervisor"],
        }
    )
    await customer.wait_for(is_hold)
    peer = await kit.accept(target, call, AGENT2_HZ)
    await agent.wait_for_tone(AGENT2_HZ)  # the agents talk; the customer holds
    await peer.wait_for_tone(AGENT_HZ)
    heard = await customer.collect(0.6)
    assert band_ratio(heard, AGENT2_HZ) < 0.05
    await console.send({"type": "call.transfer", "call": call, "action": "complete"})
    await console.state("transferred", call)
    await customer.wait_for_tone(AGENT2_HZ)
    await peer.wait_for_tone(CUSTOMER_HZ)
    async with kit.ctx.sessions() as session:
        row = await session.get(Call, call)
    assert row is not None and row.agent_id == kit.workspace.agent_ids["supervisor"]


async def test_warm_transfer_cancel_returns_to_the_agent(kit: CallKit) -> None:
    _widget, call, customer, console, agent = await connected_call(kit)
    target = await kit.console("supervisor", presence="away")
    await console.send(
        {
            "type": "call.transfer",
            "call": call,
            "mode": "warm",
            "agent": kit.workspace.agent_ids["supervisor"],
        }
    )
    await kit.accept(target, call, AGENT2_HZ)
    await console.send({"type": "call.transfer", "call": call, "action": "cancel"})
    await target.state("withdrawn", call)
    await customer.wait_for_tone(AGENT_HZ)
    await agent.wait_for_tone(CUSTOMER_HZ)


async def test_supervisor_whisper_reaches_only_the_agent(kit: CallKit) -> None:
    widget, call, customer, _console, agent = await connected_call(kit)
    # Agents may not supervise.
    nosy = await kit.console("agent", presence="away")
    await nosy.send({"type": "call.listen", "call": call, "sdp": "v=0"})
    err = await nosy.wait("call.error")
    assert err["code"] in ("forbidden", "conflict")

    sup_ws = await kit.console("supervisor", presence="away")
    sup = kit.peer(SUPERVISOR_HZ)
    await sup_ws.send({"type": "call.whisper", "call": call, "sdp": await sup.offer()})
    answer = await sup_ws.wait("call.answer", lambda f: f["call"] == call)
    await sup.accept(answer["sdp"])
    await sup.wait_connected()
    await agent.wait_for(
        lambda p: band_ratio(p, SUPERVISOR_HZ) > 0.3 and band_ratio(p, CUSTOMER_HZ) > 0.3
    )
    await sup.wait_for(lambda p: band_ratio(p, CUSTOMER_HZ) > 0.3 and band_ratio(p, AGENT_HZ) > 0.3)
    heard = await customer.collect(1.0)
    assert abs(peak_hz(heard) - AGENT_HZ) < 15
    assert band_ratio(heard, SUPERVISOR_HZ) < 0.05
    # Barge: now the customer hears the supervisor too.
    await sup_ws.send({"type": "call.barge", "call": call})
    await customer.wait_for(lambda p: band_ratio(p, SUPERVISOR_HZ) > 0.3)
    # Supervision is internal: never in the widget's events.
    async with kit.ctx.sessions() as session:
        events = (await session.exec(select(TicketEvent))).all()
    sup_events = [e for e in events if e.payload.get("state") == "supervisor"]
    assert sup_events and all(e.internal for e in sup_events)
    assert all("supervisor" not in (f.get("body") or "").lower() for f in widget.call_events())


async def test_recording_is_attached_with_its_duration_and_streams_with_ranges(
    kit: CallKit, live_server: LiveServer
) -> None:
    await kit.enable_recording()
    widget = await kit.widget()
    call, customer = await kit.start_call(widget)
    queued = await widget.state("queued", call)
    assert queued["recording"] is True  # the widget shows the consent notice
    console = await kit.console("agent")
    agent = await kit.accept(console, call)
    await customer.wait_for_tone(AGENT_HZ)
    await agent.collect(2.0)
    await console.send({"type": "call.hangup", "call": call})
    await widget.state("ended", call)

    async with kit.ctx.sessions() as session:
        row = await session.get(Call, call)
        assert row is not None and row.recording_attachment_id is not None
        attachment = await session.get(Attachment, row.recording_attachment_id)
        events = (
            await session.exec(select(TicketEvent).where(TicketEvent.ticket_id == row.ticket_id))
        ).all()
    assert attachment is not None and attachment.ticket_id == row.ticket_id
    path = kit.settings.data_dir / "attachments" / attachment.storage_key
    with av.open(str(path)) as container:
        assert container.duration is not None
        seconds = container.duration / 1_000_000
    assert row.duration_seconds is not None
    assert abs(seconds - row.duration_seconds) <= 0.5 + 0.1 * row.duration_seconds
    recording = [e for e in events if e.kind.value == "recording"]
    assert len(recording) == 1 and recording[0].internal
    assert abs(recording[0].payload["duration"] - seconds) < 0.2
    assert not any(f.get("kind") == "recording" for f in widget.frames)

    async with httpx.AsyncClient(base_url=live_server.url) as http:
        headers = kit.workspace.auth("admin")
        full = await http.get(f"/api/v1/attachments/{attachment.id}", headers=headers)
        assert full.status_code == 200 and full.content == path.read_bytes()
        part = await http.get(
            f"/api/v1/attachments/{attachment.id}", headers={**headers, "Range": "bytes=0-99"}
        )
        assert part.status_code == 206 and part.content == full.content[:100]
        assert part.headers["content-range"].startswith("bytes 0-99/")
