"""The never-ending outbound track of a leg and the sources it can play.

Each leg sends exactly one :class:`OutboundTrack` for its whole life. Its source is
switched (hold audio, another leg, a mix, silence) by plain attribute assignment: no
renegotiation, and the RTP timestamps stay continuous because the track, not the source,
owns the presentation timestamp and only ever advances it by real elapsed time.

The track always yields encoded ``av.Packet`` objects (pts in RTP clock ticks), so aiortc's
sender never runs its encoder nor its pure-Python audio-level computation: passthrough
frames are forwarded as received, pre-encoded loops (hold, silence) are replayed, and only
mix sources encode, with their own encoder.

Two kinds of source:
- *clocked* sources (hold, silence, mix) are pulled by the track every 20 ms;
- the *pushed* source (another leg, :class:`LegSource`) delivers frames as they arrive,
  into a small bounded backlog, so forwarding adds no buffering delay; if the other leg
  stalls for :data:`STALL_SECONDS` the track fills with silence until it resumes.
"""

from __future__ import annotations

import asyncio
import collections
from typing import Any, Protocol

import av
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

from .codec import FRAME_SECONDS, CodecInfo, FrameEncoder, Pcm, mix
from .tap import EncodedFrame

BACKLOG_FRAMES = 3  # at most 60 ms queued per forwarded stream; older frames are dropped
STALL_SECONDS = 0.06  # a pushed source silent this long is replaced by silence frames
_MAX_CONTIGUOUS_SECONDS = 1.0  # a source timestamp jump beyond this starts a new segment


class Source(Protocol):
    """What an :class:`OutboundTrack` plays."""

    clocked: bool

    def attach(self, track: OutboundTrack) -> None: ...

    def detach(self, track: OutboundTrack) -> None: ...

    def next_payload(self) -> bytes | None:
        """Clocked sources: the payload for the next 20 ms frame."""
        ...


class PacketLoopSource:
    """Replays a pre-encoded loop (hold audio, silence); nothing is encoded per call."""

    clocked = True

    def __init__(self, payloads: list[bytes]) -> None:
        if not payloads:
            raise ValueError("empty packet loop")
        self._payloads = payloads
        self._index = 0

    def attach(self, track: OutboundTrack) -> None:
        pass

    def detach(self, track: OutboundTrack) -> None:
        pass

    def next_payload(self) -> bytes | None:
        payload = self._payloads[self._index]
        self._index = (self._index + 1) % len(self._payloads)
        return payload


class FramePublisher(Protocol):
    """A leg's inbound audio, as seen by sources (implemented by ``Leg``)."""

    codec: CodecInfo | None

    def add_encoded_sink(self, sink: OutboundTrack) -> None: ...

    def remove_encoded_sink(self, sink: OutboundTrack) -> None: ...

    def add_pcm_sink(self, sink: PcmFeed) -> None: ...

    def remove_pcm_sink(self, sink: PcmFeed) -> None: ...


class LegSource:
    """Forwards another leg's encoded frames untouched (same codec on both legs)."""

    clocked = False

    def __init__(self, leg: FramePublisher) -> None:
        self.leg = leg

    def attach(self, track: OutboundTrack) -> None:
        self.leg.add_encoded_sink(track)

    def detach(self, track: OutboundTrack) -> None:
        self.leg.remove_encoded_sink(track)

    def next_payload(self) -> bytes | None:
        return None


class PcmFeed:
    """A bounded queue of one leg's decoded 20 ms frames, drained once per tick by a mixer."""

    def __init__(self, maxlen: int = BACKLOG_FRAMES) -> None:
        self._frames: collections.deque[Pcm] = collections.deque(maxlen=maxlen)

    def push(self, pcm: Pcm) -> None:
        self._frames.append(pcm)

    def pop(self) -> Pcm | None:
        return self._frames.popleft() if self._frames else None


class MixSource:
    """Decodes its input legs, sums them and encodes the result for one outbound track.

    Used for supervision (listen, whisper, barge), conferences and codec conversion.
    A muted or silent input simply contributes nothing; no input at all gives silence.
    """

    clocked = True

    def __init__(self, inputs: list[FramePublisher], codec: CodecInfo, silence: bytes) -> None:
        self._inputs = inputs
        self._feeds = [PcmFeed() for _ in inputs]
        self._encoder = FrameEncoder(codec)
        self._silence = silence

    def attach(self, track: OutboundTrack) -> None:
        for leg, feed in zip(self._inputs, self._feeds, strict=True):
            leg.add_pcm_sink(feed)

    def detach(self, track: OutboundTrack) -> None:
        for leg, feed in zip(self._inputs, self._feeds, strict=True):
            leg.remove_pcm_sink(feed)

    def next_payload(self) -> bytes | None:
        frames = [f for f in (feed.pop() for feed in self._feeds) if f is not None]
        if not frames:
            # Keep the encoder's timeline moving would cost an encode; a silence packet
            # is free and decodes identically.
            return self._silence
        payloads = self._encoder.encode(mix(frames))
        return payloads[0] if payloads else self._silence


class OutboundTrack(MediaStreamTrack):
    """A leg's single outbound audio track; see the module docstring."""

    kind = "audio"

    def __init__(self) -> None:
        super().__init__()
        self._event_loop = asyncio.get_running_loop()
        self._codec: CodecInfo | None = None
        # Until configure(): the codec is only known once the answer is created.
        self._silence = PacketLoopSource([b""])
        self._source: Source = self._silence
        self._backlog: collections.deque[EncodedFrame] = collections.deque(maxlen=BACKLOG_FRAMES)
        self._wake = asyncio.Event()
        self._pts = 0
        self._last_emit: float | None = None
        self._due: float | None = None  # next emission time while clocked
        # Pushed-source segment: pts = source timestamp + offset while contiguous.
        self._seg_source: object | None = None
        self._seg_offset = 0
        self._watchdog: asyncio.TimerHandle | None = None
        self.frames_sent = 0
        self.frames_dropped = 0  # forwarded frames dropped (backlog overflow or too late)
        self.frames_filled = 0  # silence frames sent while a forwarded leg stalled

    def configure(self, codec: CodecInfo, silence: list[bytes]) -> None:
        """Set the negotiated codec and its pre-encoded silence; starts playing silence."""
        placeholder = self._silence
        self._codec = codec
        self._silence = PacketLoopSource(silence)
        if self._source is placeholder:
            self._source = self._silence

    @property
    def source(self) -> Source:
        return self._source

    def set_source(self, source: Source) -> None:
        """Switch what this track plays, effective from the next frame."""
        old = self._source
        if source is old:
            return
        old.detach(self)
        self._backlog.clear()
        self._source = source
        self._seg_source = None
        source.attach(self)
        self._wake.set()
        if not source.clocked and self._watchdog is None:
            self._arm_watchdog()

    def push(self, frame: EncodedFrame) -> None:
        """Called by a forwarded leg (on the loop) for each encoded frame it receives."""
        if len(self._backlog) == BACKLOG_FRAMES:
            self.frames_dropped += 1
        self._backlog.append(frame)
        self._wake.set()

    def stop(self) -> None:
        self._source.detach(self)
        if self._watchdog is not None:
            self._watchdog.cancel()
            self._watchdog = None
        super().stop()
        self._wake.set()

    def _arm_watchdog(self) -> None:
        self._watchdog = self._event_loop.call_later(STALL_SECONDS, self._check_stall)

    def _check_stall(self) -> None:
        self._watchdog = None
        if self.readyState != "live" or self._source.clocked:
            return
        self._wake.set()  # recv() decides whether the source has stalled
        self._arm_watchdog()

    async def recv(self) -> Any:
        while True:
            if self.readyState != "live":
                raise MediaStreamError
            source = self._source
            if self._backlog and not source.clocked:
                frame = self._backlog.popleft()
                packet = self._emit_pushed(source, frame)
                if packet is None:
                    continue
                return packet
            now = self._event_loop.time()
            stalled = self._last_emit is None or now - self._last_emit >= STALL_SECONDS
            if source.clocked or stalled:
                slot = await self._wait_due()
                if self._source is not source or self.readyState != "live":
                    continue
                if not source.clocked and self._backlog:
                    continue  # the forwarded leg resumed while we waited
                payload = source.next_payload() if source.clocked else None
                if payload is None:
                    self.frames_filled += 1
                    payload = self._silence.next_payload()
                return self._emit_clocked(payload or b"", slot)
            self._wake.clear()
            await self._wake.wait()

    async def _wait_due(self) -> float:
        """Sleep until the next 20 ms slot of the clocked schedule; return the slot time."""
        now = self._event_loop.time()
        due = self._due
        if due is None or due < now - 3 * FRAME_SECONDS:
            due = now  # first frame, or the loop stalled: restart the schedule
        if due > now:
            await asyncio.sleep(due - now)
        self._due = due + FRAME_SECONDS
        return due

    def _ticks(self) -> int:
        codec = self._codec
        if codec is None:
            raise MediaStreamError("track used before its codec was negotiated")
        return codec.frame_ticks

    def _elapsed_ticks(self, now: float) -> int:
        """Timestamp advance for a frame not contiguous with the previous one."""
        ticks = self._ticks()
        if self._last_emit is None:
            return 0 if self.frames_sent == 0 else ticks
        frames = round((now - self._last_emit) / FRAME_SECONDS)
        return max(1, frames) * ticks

    def _emit_clocked(self, payload: bytes, slot: float) -> Any:
        # Advance by scheduled slots, not by when the sleep returned, so timer overshoot
        # never accumulates into timestamps running ahead of real time.
        self._pts += self._elapsed_ticks(slot)
        self._seg_source = None
        return self._packet(payload, slot)

    def _emit_pushed(self, source: Source, frame: EncodedFrame) -> Any:
        now = self._event_loop.time()
        if self._seg_source is source:
            pts = frame.timestamp + self._seg_offset
            step = pts - self._pts
            if step <= 0:
                # Late: a silence fill already took this frame's slot.
                self.frames_dropped += 1
                return None
            if step <= _MAX_CONTIGUOUS_SECONDS * self._ticks() / FRAME_SECONDS:
                self._pts = pts
                self._due = now + FRAME_SECONDS
                return self._packet(frame.data, now)
        # New segment: continue our own timeline by the real time elapsed.
        self._pts += self._elapsed_ticks(now)
        self._seg_source = source
        self._seg_offset = self._pts - frame.timestamp
        self._due = now + FRAME_SECONDS
        return self._packet(frame.data, now)

    def _packet(self, payload: bytes, now: float) -> Any:
        codec = self._codec
        assert codec is not None
        packet = av.Packet(payload)
        packet.pts = self._pts
        packet.time_base = codec.time_base
        self._last_emit = now
        self.frames_sent += 1
        return packet
