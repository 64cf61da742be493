"""Call recording: one file per call, the mix of everyone taking part.

A clocked task pops one decoded 20 ms frame per recorded leg every tick and hands the mix
to a writer thread, which encodes and muxes it (Ogg/Opus by default, or WAV), so file I/O
and encoding never run on the event loop. The file's length follows the wall clock: a
silent or dropped leg records silence rather than shortening the call.
"""

from __future__ import annotations

import asyncio
import fractions
import logging
import queue
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import av

from app.tasks import cancel_and_wait

from .codec import FRAME_SAMPLES, FRAME_SECONDS, SAMPLE_RATE, Pcm, mix, silence
from .tracks import FramePublisher, PcmFeed

logger = logging.getLogger(__name__)

MAX_RECORDING_SECONDS = 4 * 3600
_FORMATS = {".ogg": ("ogg", "libopus"), ".opus": ("ogg", "libopus"), ".wav": ("wav", "pcm_s16le")}


@dataclass(frozen=True)
class RecordingInfo:
    path: Path
    seconds: float
    bytes: int
    error: str | None = None


class _Writer(threading.Thread):
    def __init__(self, path: Path) -> None:
        super().__init__(name=f"voice-recorder-{path.name}", daemon=True)
        suffix = path.suffix.lower()
        if suffix not in _FORMATS:
            raise ValueError(f"unsupported recording format {suffix!r}; use .ogg, .opus or .wav")
        self.path = path
        self.frames: queue.Queue[Pcm | None] = queue.Queue()
        self.error: str | None = None
        self.written = 0

    def run(self) -> None:
        fmt, codec = _FORMATS[self.path.suffix.lower()]
        try:
            container: Any = av.open(str(self.path), mode="w", format=fmt)
            try:
                stream: Any = container.add_stream(codec, rate=SAMPLE_RATE)
                stream.codec_context.layout = "mono"
                stream.codec_context.format = "s16"
                if codec == "libopus":
                    stream.codec_context.bit_rate = 24000
                while (pcm := self.frames.get()) is not None:
                    frame = av.AudioFrame.from_ndarray(
                        pcm.reshape(1, -1), format="s16", layout="mono"
                    )
                    frame.sample_rate = SAMPLE_RATE
                    frame.pts = self.written * FRAME_SAMPLES
                    frame.time_base = fractions.Fraction(1, SAMPLE_RATE)
                    for packet in stream.encode(frame):
                        container.mux(packet)
                    self.written += 1
                for packet in stream.encode(None):
                    container.mux(packet)
            finally:
                container.close()
        except Exception as exc:  # disk full, permissions: report, never crash the call
            logger.exception("recording %s failed", self.path)
            self.error = str(exc)
            while self.frames.get() is not None:  # drain so stop() never blocks
                pass


class CallRecorder:
    """Records the mix of a changing set of legs into ``path``."""

    def __init__(self, path: Path, max_seconds: float = MAX_RECORDING_SECONDS) -> None:
        self.path = path
        self._max_frames = int(max_seconds / FRAME_SECONDS)
        self._writer = _Writer(path)
        self._feeds: dict[FramePublisher, PcmFeed] = {}
        self._task: asyncio.Task[None] | None = None
        self._frames = 0
        self._stopped = False

    @property
    def seconds(self) -> float:
        return self._frames * FRAME_SECONDS

    def set_inputs(self, legs: list[FramePublisher]) -> None:
        for leg in list(self._feeds):
            if leg not in legs:
                leg.remove_pcm_sink(self._feeds.pop(leg))
        for leg in legs:
            if leg not in self._feeds and not self._stopped:
                feed = self._feeds[leg] = PcmFeed()
                leg.add_pcm_sink(feed)

    def start(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._writer.start()
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        due = loop.time()
        while self._frames < self._max_frames:
            now = loop.time()
            if due > now:
                await asyncio.sleep(due - now)
            # Catch up frame by frame after a stall so the file keeps wall-clock length.
            frames = [f for f in (feed.pop() for feed in self._feeds.values()) if f is not None]
            self._writer.frames.put(mix(frames) if frames else silence())
            self._frames += 1
            due += FRAME_SECONDS
        logger.warning("recording %s reached its %d s limit", self.path, self.seconds)

    async def stop(self) -> RecordingInfo:
        if self._stopped:
            raise RuntimeError("recording already stopped")
        self._stopped = True
        await cancel_and_wait(self._task)
        self.set_inputs([])
        self._writer.frames.put(None)
        if self._writer.is_alive():
            await asyncio.to_thread(self._writer.join)
        size = self.path.stat().st_size if self.path.exists() else 0
        seconds = self._writer.written * FRAME_SECONDS
        return RecordingInfo(self.path, seconds, size, self._writer.error)
