"""Audio codecs for the voice media layer: one internal PCM format, thin encoders/decoders.

Internally every decoded or synthesized signal is mono signed 16-bit PCM at 48 kHz in
20 ms frames (960 samples, a numpy int16 array). Only the paths that must mix audio
(supervision, recording) or convert between codecs ever touch PCM; plain bridging forwards
the encoded payloads untouched (see passthrough in tracks.py).
"""

from __future__ import annotations

import fractions
from dataclasses import dataclass
from typing import Any

import av
import numpy as np
import numpy.typing as npt

SAMPLE_RATE = 48000
FRAME_SECONDS = 0.02
FRAME_SAMPLES = 960
PCM_TIME_BASE = fractions.Fraction(1, SAMPLE_RATE)

Pcm = npt.NDArray[np.int16]

# (PyAV codec name, codec sample rate, RTP clock rate). G.722 famously samples at 16 kHz
# but keeps an 8 kHz RTP clock (RFC 3551).
_CODECS: dict[str, tuple[str, int, int]] = {
    "opus": ("libopus", 48000, 48000),
    "pcmu": ("pcm_mulaw", 8000, 8000),
    "pcma": ("pcm_alaw", 8000, 8000),
    "g722": ("g722", 16000, 8000),
}

OPUS_BITRATE = 32000  # voice quality is excellent at 32 kbit/s mono; aiortc uses 96k stereo


class CodecError(ValueError):
    """A codec we cannot encode or decode was negotiated."""


@dataclass(frozen=True)
class CodecInfo:
    """The negotiated RTP codec of one leg."""

    name: str  # lower-case encoding name: opus, pcmu, pcma, g722
    clock_rate: int
    payload_type: int = 0

    @classmethod
    def from_mime(cls, mime_type: str, clock_rate: int, payload_type: int = 0) -> CodecInfo:
        name = mime_type.split("/")[-1].lower()
        if name not in _CODECS:
            raise CodecError(f"unsupported audio codec {mime_type!r}")
        return cls(name=name, clock_rate=clock_rate, payload_type=payload_type)

    @property
    def frame_ticks(self) -> int:
        """RTP clock ticks in one 20 ms frame."""
        return int(self.clock_rate * FRAME_SECONDS)

    @property
    def time_base(self) -> fractions.Fraction:
        return fractions.Fraction(1, self.clock_rate)


OPUS = CodecInfo("opus", 48000, 111)


def silence() -> Pcm:
    return np.zeros(FRAME_SAMPLES, dtype=np.int16)


def _pcm_frame(pcm: Pcm, rate: int = SAMPLE_RATE) -> av.AudioFrame:
    frame = av.AudioFrame.from_ndarray(pcm.reshape(1, -1), format="s16", layout="mono")
    frame.sample_rate = rate
    return frame


class FrameEncoder:
    """Encodes 20 ms PCM frames into RTP payloads of one codec (one instance per stream)."""

    def __init__(self, codec: CodecInfo) -> None:
        av_name, rate, _clock = _CODECS[codec.name]
        self.codec = codec
        self._rate = rate
        ctx: Any = av.CodecContext.create(av_name, "w")
        ctx.sample_rate = rate
        ctx.layout = "mono"
        ctx.format = "s16"
        ctx.time_base = fractions.Fraction(1, rate)
        if codec.name == "opus":
            ctx.bit_rate = OPUS_BITRATE
            ctx.options = {"application": "voip"}
        self._ctx = ctx
        self._resampler: Any = None
        if rate != SAMPLE_RATE:
            self._resampler = av.AudioResampler(
                format="s16", layout="mono", rate=rate, frame_size=int(rate * FRAME_SECONDS)
            )
        self.frames = 0

    def encode(self, pcm: Pcm) -> list[bytes]:
        frame = _pcm_frame(pcm)
        frame.pts = self.frames * FRAME_SAMPLES
        frame.time_base = PCM_TIME_BASE
        self.frames += 1
        frames = self._resampler.resample(frame) if self._resampler is not None else [frame]
        out: list[bytes] = []
        for f in frames:
            out.extend(bytes(p) for p in self._ctx.encode(f))
        return out


class FrameDecoder:
    """Decodes one leg's RTP payloads to 20 ms mono 48 kHz PCM frames."""

    def __init__(self, codec: CodecInfo) -> None:
        av_name, rate, _clock = _CODECS[codec.name]
        ctx: Any = av.CodecContext.create(av_name, "r")
        ctx.sample_rate = rate
        ctx.layout = "mono"
        ctx.format = "s16"
        self._ctx = ctx
        self._resampler: Any = None
        if rate != SAMPLE_RATE:
            self._resampler = av.AudioResampler(format="s16", layout="mono", rate=SAMPLE_RATE)
        self._pending: Pcm = np.zeros(0, dtype=np.int16)

    def decode(self, payload: bytes) -> list[Pcm]:
        """Return the complete 20 ms frames this payload completes (usually exactly one)."""
        try:
            frames = self._ctx.decode(av.Packet(payload))
        except av.FFmpegError:
            # A corrupt payload is one lost frame, not a reason to drop the leg.
            return []
        chunks = [self._pending]
        for frame in frames:
            for f in self._resampler.resample(frame) if self._resampler else [frame]:
                chunks.append(f.to_ndarray().reshape(-1).astype(np.int16, copy=False))
        pcm = np.concatenate(chunks) if len(chunks) > 1 else chunks[0]
        whole = len(pcm) // FRAME_SAMPLES
        out = [pcm[i * FRAME_SAMPLES : (i + 1) * FRAME_SAMPLES] for i in range(whole)]
        self._pending = pcm[whole * FRAME_SAMPLES :]
        return out


def encode_loop(pcm: Pcm, codec: CodecInfo) -> list[bytes]:
    """Pre-encode a looping signal into one payload per 20 ms frame.

    The signal is encoded twice and the second pass kept, so the encoder's state at the
    loop's start matches its end and the loop joins without a click.
    """
    frames = len(pcm) // FRAME_SAMPLES
    if frames == 0:
        raise ValueError("loop is shorter than one frame")
    pcm = pcm[: frames * FRAME_SAMPLES]
    encoder = FrameEncoder(codec)
    payloads: list[bytes] = []
    for _ in range(2):
        payloads = []
        for i in range(frames):
            payloads.extend(encoder.encode(pcm[i * FRAME_SAMPLES : (i + 1) * FRAME_SAMPLES]))
    if len(payloads) < frames:
        raise CodecError(f"{codec.name} encoder returned {len(payloads)} of {frames} frames")
    return payloads[-frames:]


def mix(frames: list[Pcm]) -> Pcm:
    """Sum frames with saturation (the classic conference mix)."""
    if len(frames) == 1:
        return frames[0]
    total = np.zeros(FRAME_SAMPLES, dtype=np.int32)
    for f in frames:
        total += f
    return np.clip(total, -32768, 32767).astype(np.int16)
