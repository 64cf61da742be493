"""Hold audio: synthesized (or loaded from a local file) once, pre-encoded once per codec.

Every caller on hold replays the same list of encoded payloads, so holding a thousand
callers costs a thousand packet sends and zero encodes.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import av
import numpy as np

from .codec import FRAME_SAMPLES, SAMPLE_RATE, CodecInfo, Pcm, encode_loop

# A soft C-major arpeggio (C5 E5 G5 E5), half a second per note: pleasant, and every note
# is a pure sine so tests can recognise hold audio by its spectrum.
HOLD_NOTES_HZ: tuple[float, ...] = (523.25, 659.25, 783.99, 659.25)
NOTE_SECONDS = 0.5
HOLD_LEVEL = 0.2  # of full scale: comfortable, well below the agent's voice level

MAX_HOLD_FILE_BYTES = 20 * 1024 * 1024
MAX_HOLD_SECONDS = 120


def tone(freq_hz: float, seconds: float, level: float = 0.3) -> Pcm:
    """A pure sine, used by tests and the benchmark as a recognisable voice."""
    n = int(seconds * SAMPLE_RATE)
    t = np.arange(n) / SAMPLE_RATE
    return (np.sin(2 * np.pi * freq_hz * t) * level * 32767).astype(np.int16)


def synthesize_hold() -> Pcm:
    note_len = int(NOTE_SECONDS * SAMPLE_RATE)
    ramp = int(0.04 * SAMPLE_RATE)  # 40 ms fades: no clicks between notes
    envelope = np.ones(note_len)
    envelope[:ramp] = np.linspace(0.0, 1.0, ramp)
    envelope[-ramp:] = np.linspace(1.0, 0.0, ramp)
    t = np.arange(note_len) / SAMPLE_RATE
    notes = [np.sin(2 * np.pi * f * t) * envelope for f in HOLD_NOTES_HZ]
    return (np.concatenate(notes) * HOLD_LEVEL * 32767).astype(np.int16)


def load_audio_file(path: Path) -> Pcm:
    """Decode a local audio file (any format FFmpeg reads) to mono 48 kHz PCM."""
    if path.stat().st_size > MAX_HOLD_FILE_BYTES:
        raise ValueError(f"hold audio file {path} is larger than {MAX_HOLD_FILE_BYTES} bytes")
    chunks: list[Pcm] = []
    resampler: Any = av.AudioResampler(format="s16", layout="mono", rate=SAMPLE_RATE)
    total = 0
    with av.open(str(path)) as container:
        if not container.streams.audio:
            raise ValueError(f"{path} has no audio stream")
        for frame in container.decode(audio=0):
            for f in resampler.resample(frame):
                pcm = f.to_ndarray().reshape(-1).astype(np.int16, copy=False)
                chunks.append(pcm)
                total += len(pcm)
            if total > MAX_HOLD_SECONDS * SAMPLE_RATE:
                raise ValueError(f"hold audio longer than {MAX_HOLD_SECONDS} s")
    if total < FRAME_SAMPLES:
        raise ValueError(f"{path} holds less than 20 ms of audio")
    return np.concatenate(chunks)


class HoldAudio:
    """A looped signal and its per-codec pre-encoded payloads."""

    def __init__(self, pcm: Pcm) -> None:
        if len(pcm) < FRAME_SAMPLES:
            raise ValueError("hold audio is shorter than one frame")
        self.pcm = pcm
        self._encoded: dict[str, list[bytes]] = {}

    @classmethod
    def default(cls) -> HoldAudio:
        return cls(synthesize_hold())

    @classmethod
    def from_file(cls, path: Path) -> HoldAudio:
        return cls(load_audio_file(path))

    @property
    def seconds(self) -> float:
        return len(self.pcm) / SAMPLE_RATE

    def payloads(self, codec: CodecInfo) -> list[bytes]:
        payloads = self._encoded.get(codec.name)
        if payloads is None:
            payloads = self._encoded[codec.name] = encode_loop(self.pcm, codec)
        return payloads


class SilenceAudio:
    """Pre-encoded silence per codec (an Opus silence frame is 3 bytes)."""

    def __init__(self) -> None:
        self._encoded: dict[str, list[bytes]] = {}

    def payloads(self, codec: CodecInfo) -> list[bytes]:
        payloads = self._encoded.get(codec.name)
        if payloads is None:
            zeros = np.zeros(FRAME_SAMPLES * 4, dtype=np.int16)
            payloads = self._encoded[codec.name] = encode_loop(zeros, codec)[-1:]
        return payloads
