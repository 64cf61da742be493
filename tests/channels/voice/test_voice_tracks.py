"""The outbound track keeps one continuous timeline whatever its source does."""

from __future__ import annotations

import itertools

from channels.voice.codec import OPUS
from channels.voice.tap import EncodedFrame
from channels.voice.tracks import LegSource, OutboundTrack, PacketLoopSource, PcmFeed


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

    def send(self, data: bytes) -> None:
        for sink in self.sinks:
            sink.push(EncodedFrame(data, self.ts))
        self.ts += 960


async def test_timestamps_stay_continuous_across_source_switches() -> None:
    track = OutboundTrack()
    track.configure(OPUS, [b"\xf8\xff\xfe"])
    hold = PacketLoopSource([b"hold1", b"hold2"])
    track.set_source(hold)
    packets = [await track.recv() for _ in range(3)]
    assert [bytes(p) for p in packets] == [b"hold1", b"hold2", b"hold1"]

    a, b = FakeLeg(base=3_000_000_000), FakeLeg(base=17)
    track.set_source(LegSource(a))
    assert a.sinks == [track]
    for i in range(3):
        a.send(b"a%d" % i)
        packets.append(await track.recv())
    track.set_source(LegSource(b))
    assert a.sinks == [] and b.sinks == [track]
    for i in range(3):
        b.send(b"b%d" % i)
        packets.append(await track.recv())
    track.set_source(hold)
    packets.append(await track.recv())

    assert [bytes(p) for p in packets[3:]] == [b"a0", b"a1", b"a2", b"b0", b"b1", b"b2", b"hold2"]
    pts = [p.pts for p in packets]
    assert pts[0] == 0
    steps = [y - x for x, y in itertools.pairwise(pts)]
    # Every step is a whole number of 20 ms frames and never a jump to the source's clock.
    assert all(s > 0 and s % 960 == 0 and s <= 48000 for s in steps), steps
    assert all(p.time_base == OPUS.time_base for p in packets)
    track.stop()


async def test_backlog_is_bounded_so_a_late_reader_adds_no_delay() -> None:
    track = OutboundTrack()
    track.configure(OPUS, [b"\xf8\xff\xfe"])
    leg = FakeLeg(base=0)
    track.set_source(LegSource(leg))
    for i in range(10):
        leg.send(b"f%d" % i)
    got = [bytes(await track.recv()) for _ in range(3)]
    assert got == [b"f7", b"f8", b"f9"]
    assert track.frames_dropped == 7
    track.stop()
