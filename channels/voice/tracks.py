"""The never-ending outbound track of a leg and the sources it can play.

Each leg sends exactly one :class:`OutboundTrack` for its whole life. Its source is
switched (hold audio, another leg, a mix, silence) by plain attribute assignment: no
renegotiation, and the RTP timestamps stay continuous because the track, not the source,
owns the presentation timestamp and only ever advances it by real elapsed time.

The track hands aiortc no frames at all: it writes encoded payloads (timestamps in RTP
clock ticks) straight to the network through an ``egress.RtpWriter``, so aiortc's sender
never runs its encoder, its pure-Python audio-level computation nor its per-frame task:
passthrough frames are forwarded as received, pre-encoded loops (hold, silence) are
replayed, and only mix sources encode, with their own encoder.

Two kinds of source:
- *clocked* sources (hold, silence, mix) are pulled by the track every 20 ms;
- the *pushed* source (another leg, :class:`LegSource`) delivers frames as they arrive and
  each is sent from that same call, so forwarding adds no buffering delay nor task hop; if
  the other leg stalls for :data:`STALL_SECONDS` the track fills with silence until it
  resumes.
"""

from __future__ import annotations

import asyncio
import collections
import weakref
from typing import Any, Protocol

from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

from .codec import FRAME_SECONDS, CodecInfo, FrameEncoder, Pcm, mix
from .tap import EncodedFrame

BACKLOG_FRAMES = 3  # at most 60 ms of decoded audio queued per mixer input
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


class PacketWriter(Protocol):
    """Where an :class:`OutboundTrack` sends its frames (``egress.RtpWriter`` on a leg)."""

    def start(self, payload_type: int) -> None: ...

    def write(self, payload: bytes, pts: int) -> None: ...


class OutboundTrack(MediaStreamTrack):
    """A leg's single outbound audio track; see the module docstring."""

    kind = "audio"

    def __init__(self) -> None:
        super().__init__()
        self._event_loop = asyncio.get_running_loop()
        self._codec: CodecInfo | None = None
        self._max_step = 0  # largest timestamp step still contiguous, in RTP ticks
        # Until configure(): the codec is only known once the answer is created.
        self._silence = PacketLoopSource([b""])
        self._source: Source = self._silence
        self._writer: PacketWriter | None = None
        self._sending = False
        self._sleeper: asyncio.Future[None] | None = None
        self._stalls = _StallWatch.of(self._event_loop)
        self._pts = 0
        self._last_emit: float | None = None
        self._last_forward = 0.0  # last forwarded frame, or when the pushed source was set
        self._due: float | None = None  # next emission time while clocked
        # Pushed-source segment: pts = source timestamp + offset while contiguous.
        self._seg_source: object | None = None
        self._seg_offset = 0
        self.frames_sent = 0
        self.frames_dropped = 0  # forwarded frames dropped (arrived after a fill took the slot)
        self.frames_filled = 0  # silence frames sent while a forwarded leg stalled

    def configure(self, codec: CodecInfo, silence: list[bytes]) -> None:
        """Set the negotiated codec and its pre-encoded silence; starts playing silence."""
        placeholder = self._silence
        self._codec = codec
        self._max_step = round(_MAX_CONTIGUOUS_SECONDS / FRAME_SECONDS) * codec.frame_ticks
        self._silence = PacketLoopSource(silence)
        if self._source is placeholder:
            self._source = self._silence

    def bind(self, writer: PacketWriter) -> None:
        """Send through ``writer`` once aiortc starts the sender (see :meth:`recv`)."""
        self._writer = writer

    @property
    def source(self) -> Source:
        return self._source

    def set_source(self, source: Source) -> None:
        """Switch what this track plays, effective from the next frame."""
        old = self._source
        if source is old:
            return
        old.detach(self)
        self._source = source
        self._seg_source = None
        if not source.clocked:
            self._last_forward = self._event_loop.time()
        source.attach(self)
        self._kick()

    def push(self, frame: EncodedFrame) -> None:
        """Called by a forwarded leg (on the loop) for each encoded frame it receives.

        The frame goes out at once, from this call: forwarding adds no buffering.
        """
        if self._sending and not self._source.clocked:
            self._emit_pushed(self._source, frame)

    def stop(self) -> None:
        self._source.detach(self)
        super().stop()
        self._kick()

    async def recv(self) -> Any:
        """aiortc's sender asks for the first frame once the transport is up.

        No frame is ever handed back: from then on the track sends its own packets
        through its writer (forwarded frames from :meth:`push`, clocked ones from this
        coroutine, which is the track's 20 ms clock) until the track ends or the sender
        stops and cancels it.
        """
        writer, codec = self._writer, self._codec
        if writer is None or codec is None:
            raise MediaStreamError("outbound track used before it was bound and configured")
        if self._sending:
            raise MediaStreamError("outbound track already running")
        writer.start(codec.payload_type)
        self._sending = True
        try:
            await self._run_clock()
        finally:
            self._sending = False
        raise MediaStreamError

    async def _run_clock(self) -> None:
        loop = self._event_loop
        while self.readyState == "live":
            source = self._source
            if not source.clocked:
                if loop.time() < self._last_forward + STALL_SECONDS:
                    # Frames flow and go out from push(): sleep until the leg stalls.
                    self._stalls.watch(self)
                    try:
                        await self._sleep(None)
                    finally:
                        self._stalls.unwatch(self)
                    continue
                if self._seg_source is not None:
                    self._due = None  # the leg just stalled: fill from now, no catch-up burst
            slot = await self._wait_due()
            if self._source is not source or self.readyState != "live":
                continue
            if source.clocked:
                payload = source.next_payload()
            elif loop.time() < self._last_forward + STALL_SECONDS:
                continue  # the forwarded leg resumed while we waited
            else:
                payload = None
            if payload is None:
                self.frames_filled += 1
                payload = self._silence.next_payload()
            self._emit_clocked(payload or b"", slot)

    async def _sleep(self, delay: float | None) -> None:
        """Like ``asyncio.sleep``, but :meth:`_kick` (source switch, stop, stall) ends it
        early; with ``delay`` None, only a kick does."""
        fut: asyncio.Future[None] = self._event_loop.create_future()
        handle = None if delay is None else self._event_loop.call_later(delay, _wake, fut)
        self._sleeper = fut
        try:
            await fut
        finally:
            if handle is not None:
                handle.cancel()
            self._sleeper = None

    def _kick(self) -> None:
        fut = self._sleeper
        if fut is not None:
            _wake(fut)

    async def _wait_due(self) -> float:
        """Sleep until the next 20 ms slot of the clocked schedule; return the slot time."""
        now = self._event_loop.time()
        due = self._due
        if due is None or due < now - 3 * FRAME_SECONDS:
            due = now  # first frame, or the loop stalled: restart the schedule
        if due > now:
            await self._sleep(due - now)
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

    def _emit_clocked(self, payload: bytes, slot: float) -> None:
        # Advance by scheduled slots, not by when the sleep returned, so timer overshoot
        # never accumulates into timestamps running ahead of real time.
        self._pts += self._elapsed_ticks(slot)
        self._seg_source = None
        self._send(payload, slot)

    def _emit_pushed(self, source: Source, frame: EncodedFrame) -> None:
        now = self._event_loop.time()
        self._last_forward = now
        if self._seg_source is source:
            pts = frame.timestamp + self._seg_offset
            step = pts - self._pts
            if step <= 0:
                # Late or duplicate: this slot of our timeline was already sent.
                self.frames_dropped += 1
                return
            if step <= self._max_step:
                self._pts = pts
                self._due = now + FRAME_SECONDS
                self._send(frame.data, now)
                return
        # New segment: continue our own timeline by the real time elapsed.
        self._pts += self._elapsed_ticks(now)
        self._seg_source = source
        self._seg_offset = self._pts - frame.timestamp
        self._due = now + FRAME_SECONDS
        self._send(frame.data, now)

    def _send(self, payload: bytes, now: float) -> None:
        writer = self._writer
        assert writer is not None
        self._last_emit = now
        self.frames_sent += 1
        writer.write(payload, self._pts)


class _StallWatch:
    """One timer per event loop for all forwarding tracks: kicks those whose leg stalled.

    A track that forwards sends each frame from :meth:`OutboundTrack.push` and has nothing
    to do on its own until the forwarded leg goes quiet; one shared 20 ms check costs far
    less than a timer per track re-armed every few frames.
    """

    _by_loop: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _StallWatch] = (
        weakref.WeakKeyDictionary()
    )

    @classmethod
    def of(cls, loop: asyncio.AbstractEventLoop) -> _StallWatch:
        watch = cls._by_loop.get(loop)
        if watch is None:
            watch = cls._by_loop[loop] = cls()
        return watch

    def __init__(self) -> None:
        # No reference to the loop (it is this object's key in a weak dictionary).
        self._tracks: set[OutboundTrack] = set()
        self._armed = False  # a bool, not the timer handle: that would reference the loop

    def watch(self, track: OutboundTrack) -> None:
        self._tracks.add(track)
        if not self._armed:
            self._armed = True
            asyncio.get_running_loop().call_later(FRAME_SECONDS, self._check)

    def unwatch(self, track: OutboundTrack) -> None:
        self._tracks.discard(track)

    def _check(self) -> None:
        self._armed = False
        loop = asyncio.get_running_loop()
        quiet_since = loop.time() - STALL_SECONDS
        for track in [t for t in self._tracks if t._last_forward <= quiet_since]:
            track._kick()  # its clock unwatches it and starts filling
        if self._tracks:
            self._armed = True
            loop.call_later(FRAME_SECONDS, self._check)


def _wake(fut: asyncio.Future[None]) -> None:
    if not fut.done():
        fut.set_result(None)
