"""The outbound track keeps one continuous timeline whatever its source does."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator, Callable

import pytest
from aiortc.mediastreams import MediaStreamError

from channels.voice.codec import OPUS
from channels.voice.tap import EncodedFrame
from channels.voice.tracks import LegSource, OutboundTrack, PacketLoopSource, PcmFeed

SILENCE = b"\xf8\xff\xfe"


class FakeLeg:
    """A FramePublisher that pushes frames with its own (arbitrary) RTP timestamps."""

    codec = OPUS

    def __init__(self, base: int) -> None:
        self.ts = base
        self.sinks: list[OutboundTrack] = []

    def add_encoded_sink(self, sink: OutboundTrack) -> None:
        self.sinks.append(sink)

    def remove_encoded_sink(self, sink: OutboundTrack) -> None:
        self.sinks.remove(sink)

    def add_pcm_sink(self, sink: PcmFeed) -> None:
        raise AssertionError("forwarding must not ask for decoded audio")

    def remove_pcm_sink(self, sink: PcmFeed) -> None:
        raise AssertionError("forwarding must not ask for decoded audio")

    def send(self, data: bytes, skip: int = 0) -> None:
        self.ts += skip * 960
        for sink in self.sinks:
            sink.push(EncodedFrame(data, self.ts))
        self.ts += 960


class Wire:
    """Stands in for egress.RtpWriter: keeps what the track sent, as (payload, pts)."""

    def __init__(self) -> None:
        self.payload_type: int | None = None
        self.sent: list[tuple[bytes, int]] = []
        self._changed = asyncio.Event()

    def start(self, payload_type: int) -> None:
        self.payload_type = payload_type
        self._changed.set()

    def write(self, payload: bytes, pts: int) -> None:
        self.sent.append((payload, pts))
        self._changed.set()

    @property
    def payloads(self) -> list[bytes]:
        return [p for p, _ in self.sent]

    async def wait_for(self, predicate: Callable[[], bool]) -> None:
        async with asyncio.timeout(5):
            while not predicate():
                self._changed.clear()
                await self._changed.wait()


@pytest.fixture
async def wire() -> Wire:
    return Wire()


@pytest.fixture
async def track(wire: Wire) -> AsyncIterator[OutboundTrack]:
    """A configured track whose sender aiortc has started (it runs the track's clock)."""
    track = OutboundTrack()
    track.configure(OPUS, [SILENCE])
    track.bind(wire)
    sender = asyncio.ensure_future(track.recv())  # what aiortc's sender does once connected
    await wire.wait_for(lambda: wire.payload_type is not None)
    yield track
    track.stop()
    with pytest.raises(MediaStreamError):  # how aiortc's sender learns the track ended
        await sender


def steps(wire: Wire) -> list[int]:
    return [b - a for (_, a), (_, b) in itertools.pairwise(wire.sent)]


async def test_timestamps_stay_continuous_across_source_switches(
    track: OutboundTrack, wire: Wire
) -> None:
    assert wire.payload_type == OPUS.payload_type
    hold = PacketLoopSource([b"hold1", b"hold2"])
    track.set_source(hold)
    await wire.wait_for(lambda: wire.payloads.count(b"hold2") >= 1)
    wire.sent.clear()

    a, b = FakeLeg(base=3_000_000_000), FakeLeg(base=17)
    track.set_source(LegSource(a))
    assert a.sinks == [track]
    for i in range(3):
        a.send(b"a%d" % i)
    track.set_source(LegSource(b))
    assert a.sinks == [] and b.sinks == [track]
    for i in range(3):
        b.send(b"b%d" % i)
    assert wire.payloads == [b"a0", b"a1", b"a2", b"b0", b"b1", b"b2"]  # sent from push()
    track.set_source(hold)
    await wire.wait_for(lambda: len(wire.sent) == 7)

    assert wire.payloads[6] in (b"hold1", b"hold2")
    # Every step is a whole number of 20 ms frames and never a jump to the source's clock.
    assert all(s > 0 and s % 960 == 0 and s <= 48000 for s in steps(wire)), steps(wire)


async def test_forwarded_frames_go_out_at_once_with_their_own_spacing(
    track: OutboundTrack, wire: Wire
) -> None:
    leg = FakeLeg(base=0)
    track.set_source(LegSource(leg))
    wire.sent.clear()
    for i in range(10):
        leg.send(b"f%d" % i)
    leg.send(b"after a lost packet", skip=1)
    assert wire.payloads == [b"f%d" % i for i in range(10)] + [b"after a lost packet"]
    assert steps(wire) == [960] * 9 + [1920]  # the source's timestamp gaps are kept
    assert track.frames_dropped == 0 and track.frames_filled == 0


async def test_a_stalled_leg_is_covered_with_silence_until_it_resumes(
    track: OutboundTrack, wire: Wire
) -> None:
    leg = FakeLeg(base=0)
    track.set_source(LegSource(leg))
    leg.send(b"talk")
    await wire.wait_for(lambda: track.frames_filled >= 3)
    leg.send(b"back")

    sent = wire.payloads
    talk = sent.index(b"talk")
    assert sent[talk + 1 : -1] == [SILENCE] * (len(sent) - talk - 2)
    assert sent[-1] == b"back"
    tail = steps(wire)[talk:]
    assert all(s > 0 and s % 960 == 0 for s in tail), tail


async def test_a_duplicate_frame_is_not_sent_twice(track: OutboundTrack, wire: Wire) -> None:
    leg = FakeLeg(base=0)
    track.set_source(LegSource(leg))
    leg.send(b"one")
    leg.ts -= 960
    leg.send(b"one again")
    assert wire.payloads[-1] == b"one"
    assert track.frames_dropped == 1


async def test_nothing_is_sent_before_aiortc_starts_the_sender() -> None:
    wire = Wire()
    track = OutboundTrack()
    track.configure(OPUS, [SILENCE])
    track.bind(wire)
    leg = FakeLeg(base=0)
    track.set_source(LegSource(leg))
    leg.send(b"too early")
    await asyncio.sleep(0.1)
    assert wire.sent == [] and wire.payload_type is None
    track.stop()
