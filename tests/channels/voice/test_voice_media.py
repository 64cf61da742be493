"""The voice media layer against real aiortc peers on loopback (no signaling server)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import av
import numpy as np
import pytest
from aiortc import RTCRtpReceiver
from voice_peers import TonePeer, band_ratio, peak_hz

from channels.voice.hold import HOLD_NOTES_HZ
from channels.voice.leg import MediaError
from channels.voice.media import CallMedia, MediaEngine
from channels.voice.routing import Route

CUSTOMER_HZ = 300.0
AGENT_HZ = 1000.0
SUPERVISOR_HZ = 1800.0


def is_hold(pcm: np.ndarray[Any, Any]) -> bool:
    return min(abs(peak_hz(pcm) - f) for f in HOLD_NOTES_HZ) < 10


def rms(pcm: np.ndarray[Any, Any]) -> float:
    return float(np.sqrt(np.mean(pcm.astype(np.float64) ** 2)))


@pytest.fixture
async def call() -> AsyncIterator[CallMedia]:
    engine = MediaEngine(ice_servers=[])
    media = engine.call("call-1")
    yield media
    await engine.close()


@pytest.fixture
async def peers() -> AsyncIterator[list[TonePeer]]:
    made: list[TonePeer] = []
    yield made
    for peer in made:
        await peer.close()


async def join(call: CallMedia, peers: list[TonePeer], name: str, freq: float) -> TonePeer:
    peer = TonePeer(freq)
    peers.append(peer)
    role = name if name in ("customer", "agent") else "supervisor"
    await peer.accept(await call.add_leg(name, await peer.offer(), role=role))
    await peer.wait_connected()
    return peer


async def test_customer_hears_hold_then_agent_without_renegotiation(
    call: CallMedia, peers: list[TonePeer]
) -> None:
    customer = await join(call, peers, "customer", CUSTOMER_HZ)
    call.hold("customer")
    await customer.wait_for(is_hold)
    local_sdp = customer.pc.localDescription.sdp

    agent = await join(call, peers, "agent", AGENT_HZ)
    call.bridge("customer", "agent")
    await customer.wait_for_tone(AGENT_HZ)
    await agent.wait_for_tone(CUSTOMER_HZ)

    # Same session all along: one offer/answer, never left 'connected'.
    assert customer.states == ["connecting", "connected"]
    assert customer.pc.connectionState == "connected"
    assert customer.pc.signalingState == "stable"
    assert customer.pc.localDescription.sdp == local_sdp
    # One continuous RTP stream across the hold -> agent switch: no sequence gaps, and
    # timestamps only ever advance (by at most a second, i.e. never a random jump).
    seqs = [s for s, _ in customer.rtp]
    steps = [b - a for (_, a), (_, b) in zip(customer.rtp, customer.rtp[1:], strict=False)]
    assert seqs == list(range(seqs[0], seqs[0] + len(seqs)))
    assert steps and all(0 < s <= 48000 and s % 960 == 0 for s in steps)
    # The server packs RTP headers itself (egress.py): they carry the negotiated mid.
    assert customer.mids == {customer.pc.getTransceivers()[0].mid}

    # Plain bridging forwarded encoded frames: nothing was decoded on the server.
    assert call.routes == {"customer": Route.leg("agent"), "agent": Route.leg("customer")}
    for leg in call.legs.values():
        assert leg.tap is not None and leg.tap.frames > 0
        assert leg.frames_received > 0
        assert leg.decoded_frames == 0
        assert leg.tap.decoder_backlog == 0
        # Packets went from the socket callback to the other leg's socket directly.
        assert leg.ingress is not None and leg.ingress.packets > 0
        assert leg.ingress.suspended == 0
        receiver = leg.pc.getTransceivers()[0].receiver
        assert receiver.track._queue.qsize() == 0  # aiortc's decoder produced nothing


async def test_whisper_reaches_only_the_agent(call: CallMedia, peers: list[TonePeer]) -> None:
    customer = await join(call, peers, "customer", CUSTOMER_HZ)
    agent = await join(call, peers, "agent", AGENT_HZ)
    call.bridge("customer", "agent")
    await customer.wait_for_tone(AGENT_HZ)
    supervisor = await join(call, peers, "sup", SUPERVISOR_HZ)
    call.supervise("sup", "agent", "whisper")

    await agent.wait_for(
        lambda p: band_ratio(p, SUPERVISOR_HZ) > 0.3 and band_ratio(p, CUSTOMER_HZ) > 0.3
    )
    await supervisor.wait_for(
        lambda p: band_ratio(p, CUSTOMER_HZ) > 0.3 and band_ratio(p, AGENT_HZ) > 0.3
    )
    heard = await customer.collect(1.0)
    assert abs(peak_hz(heard) - AGENT_HZ) < 15
    assert band_ratio(heard, SUPERVISOR_HZ) < 0.05
    # The customer still gets the agent's frames forwarded; only mixes decode.
    assert call.routes["customer"] == Route.leg("agent")
    assert call.routes["agent"] == Route.mix("customer", "sup")
    assert call.legs["sup"].decoded_frames > 0


async def test_listen_is_silent_and_barge_reaches_everyone(
    call: CallMedia, peers: list[TonePeer]
) -> None:
    customer = await join(call, peers, "customer", CUSTOMER_HZ)
    agent = await join(call, peers, "agent", AGENT_HZ)
    call.bridge("customer", "agent")
    supervisor = await join(call, peers, "sup", SUPERVISOR_HZ)
    call.supervise("sup", "agent", "listen")
    await supervisor.wait_for(
        lambda p: band_ratio(p, CUSTOMER_HZ) > 0.3 and band_ratio(p, AGENT_HZ) > 0.3
    )
    heard_by_customer, heard_by_agent = await asyncio.gather(
        customer.collect(1.0), agent.collect(1.0)
    )
    assert abs(peak_hz(heard_by_customer) - AGENT_HZ) < 15
    assert abs(peak_hz(heard_by_agent) - CUSTOMER_HZ) < 15
    assert band_ratio(heard_by_customer, SUPERVISOR_HZ) < 0.05
    assert band_ratio(heard_by_agent, SUPERVISOR_HZ) < 0.05

    call.supervise("sup", "agent", "barge")
    await customer.wait_for(lambda p: band_ratio(p, SUPERVISOR_HZ) > 0.3)
    await agent.wait_for(lambda p: band_ratio(p, SUPERVISOR_HZ) > 0.3)


async def test_hold_and_mute(call: CallMedia, peers: list[TonePeer]) -> None:
    customer = await join(call, peers, "customer", CUSTOMER_HZ)
    agent = await join(call, peers, "agent", AGENT_HZ)
    call.bridge("customer", "agent")
    await agent.wait_for_tone(CUSTOMER_HZ)

    call.hold("customer")
    await customer.wait_for(is_hold)
    await agent.wait_for(lambda p: rms(p) < 50)  # the held customer is not heard
    call.unhold("customer")
    await customer.wait_for_tone(AGENT_HZ)

    call.mute("customer")
    await agent.wait_for(lambda p: rms(p) < 50)
    await customer.wait_for_tone(AGENT_HZ)  # a muted leg still hears
    call.mute("customer", False)
    await agent.wait_for_tone(CUSTOMER_HZ)

    call.set_source("agent", Route.hold())
    await agent.wait_for(is_hold)
    call.set_source("agent", None)
    await agent.wait_for_tone(CUSTOMER_HZ)
    assert customer.states == ["connecting", "connected"]


async def test_pcmu_leg_is_transcoded_to_an_opus_leg(
    call: CallMedia, peers: list[TonePeer]
) -> None:
    customer = TonePeer(CUSTOMER_HZ)
    peers.append(customer)
    pcmu = [c for c in RTCRtpReceiver.getCapabilities("audio").codecs if c.name == "PCMU"]
    customer.pc.getTransceivers()[0].setCodecPreferences(pcmu)
    await customer.accept(await call.add_leg("customer", await customer.offer()))
    agent = await join(call, peers, "agent", AGENT_HZ)
    call.bridge("customer", "agent")
    assert call.legs["customer"].codec is not None
    assert call.legs["customer"].codec.name == "pcmu"
    assert call.routes["agent"] == Route.mix("customer")
    await agent.wait_for_tone(CUSTOMER_HZ)
    await customer.wait_for_tone(AGENT_HZ)


async def test_recording_has_the_call_duration_and_both_voices(
    call: CallMedia, peers: list[TonePeer], tmp_path: Path
) -> None:
    await join(call, peers, "customer", CUSTOMER_HZ)
    agent = await join(call, peers, "agent", AGENT_HZ)
    call.bridge("customer", "agent")
    await agent.wait_for_tone(CUSTOMER_HZ)

    path = tmp_path / "recordings" / "call-1.ogg"
    loop = asyncio.get_running_loop()
    started = loop.time()
    await call.start_recording(path)
    await asyncio.sleep(3.0)
    info = await call.stop_recording()
    elapsed = loop.time() - started

    assert info.error is None
    assert info.path == path and path.stat().st_size == info.bytes > 0
    with av.open(str(path)) as container:
        assert container.duration is not None
        seconds = container.duration / 1_000_000
        pcm = np.concatenate([f.to_ndarray().reshape(-1) for f in container.decode(audio=0)])
    assert abs(seconds - elapsed) <= 0.1 * elapsed
    assert abs(info.seconds - elapsed) <= 0.1 * elapsed
    tail = pcm[len(pcm) // 2 :]
    assert band_ratio(tail, CUSTOMER_HZ) > 0.3 and band_ratio(tail, AGENT_HZ) > 0.3
    # Recording stopped: the legs went back to pure forwarding (no PCM listeners left).
    decoded = call.legs["customer"].decoded_frames
    await agent.wait_for_tone(CUSTOMER_HZ)
    await asyncio.sleep(0.2)
    assert call.legs["customer"].decoded_frames == decoded


async def test_bad_offers_are_rejected_clearly(call: CallMedia) -> None:
    with pytest.raises(MediaError, match="exactly one audio stream"):
        await call.add_leg("customer", "v=0\r\nnot sdp\r\n")
    with pytest.raises(MediaError, match="larger than"):
        await call.add_leg("customer", "x" * 70_000)
    with pytest.raises(MediaError, match="no leg"):
        call.bridge("customer", "agent")
    assert call.legs == {}
