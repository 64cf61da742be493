"""aiortc client peers for the voice media tests: send a known tone, record what they hear."""

from __future__ import annotations

import asyncio
import fractions
import time
from typing import Any

import numpy as np
from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import AudioStreamTrack, MediaStreamError

SAMPLE_RATE = 48000
FRAME = 960


class ToneTrack(AudioStreamTrack):
    """20 ms frames of a pure sine at ``freq`` Hz (aiortc encodes them to Opus)."""

    def __init__(self, freq: float, level: float = 0.3) -> None:
        super().__init__()
        self.freq = freq
        self.level = level
        self._n = 0
        self._start: float | None = None

    async def recv(self) -> Any:
        import av

        if self._start is None:
            self._start = time.monotonic()
        else:
            wait = self._start + self._n * 0.02 - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
        t = (np.arange(FRAME) + self._n * FRAME) / SAMPLE_RATE
        pcm = (np.sin(2 * np.pi * self.freq * t) * self.level * 32767).astype(np.int16)
        frame = av.AudioFrame.from_ndarray(pcm.reshape(1, -1), format="s16", layout="mono")
        frame.sample_rate = SAMPLE_RATE
        frame.pts = self._n * FRAME
        frame.time_base = fractions.Fraction(1, SAMPLE_RATE)
        self._n += 1
        return frame


def peak_hz(pcm: np.ndarray[Any, Any]) -> float:
    spectrum = np.abs(np.fft.rfft(pcm.astype(np.float64) * np.hanning(len(pcm))))
    freqs = np.fft.rfftfreq(len(pcm), 1 / SAMPLE_RATE)
    spectrum[freqs < 100] = 0
    return float(freqs[int(np.argmax(spectrum))])


def band_ratio(pcm: np.ndarray[Any, Any], freq: float) -> float:
    """Energy near ``freq`` relative to the strongest component (0..1)."""
    spectrum = np.abs(np.fft.rfft(pcm.astype(np.float64) * np.hanning(len(pcm))))
    freqs = np.fft.rfftfreq(len(pcm), 1 / SAMPLE_RATE)
    spectrum[freqs < 100] = 0
    band = spectrum[(freqs > freq - 20) & (freqs < freq + 20)]
    top = float(spectrum.max())
    return float(band.max()) / top if top > 0 else 0.0


class TonePeer:
    """A customer/agent/supervisor stand-in: offers audio, sends a tone, keeps what it hears."""

    def __init__(self, freq: float) -> None:
        self.pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        self.pc.addTrack(ToneTrack(freq))
        self.states: list[str] = []
        self.rtp: list[tuple[int, int]] = []  # (sequence number, timestamp) as received
        self.mids: set[str | None] = set()  # the mid header extension of received packets
        self._chunks: list[np.ndarray[Any, Any]] = []
        self._reader: asyncio.Task[None] | None = None
        self.pc.on("connectionstatechange", self._on_state)
        self.pc.on("track", self._on_track)
        receiver = self.pc.getTransceivers()[0].receiver
        original = receiver._handle_rtp_packet

        async def logging_handler(packet: Any, arrival_time_ms: int) -> None:
            self.rtp.append((packet.sequence_number, packet.timestamp))
            self.mids.add(packet.extensions.mid)
            await original(packet, arrival_time_ms=arrival_time_ms)

        receiver._handle_rtp_packet = logging_handler

    def _on_state(self) -> None:
        self.states.append(self.pc.connectionState)

    def _on_track(self, track: Any) -> None:
        self._reader = asyncio.ensure_future(self._read(track))

    async def _read(self, track: Any) -> None:
        import av

        # G.711 decodes at 8 kHz, Opus at 48 kHz stereo: normalise to 48 kHz mono.
        resampler = av.AudioResampler(format="s16", layout="mono", rate=SAMPLE_RATE)
        try:
            while True:
                frame = await track.recv()
                for f in resampler.resample(frame):
                    self._chunks.append(f.to_ndarray().reshape(-1))
        except MediaStreamError:
            pass

    async def offer(self) -> str:
        await self.pc.setLocalDescription(await self.pc.createOffer())
        return str(self.pc.localDescription.sdp)

    async def accept(self, answer: str) -> None:
        await self.pc.setRemoteDescription(RTCSessionDescription(sdp=answer, type="answer"))

    def mark(self) -> int:
        return len(self._chunks)

    def heard(self, since: int = 0) -> np.ndarray[Any, Any]:
        chunks = self._chunks[since:]
        return np.concatenate(chunks) if chunks else np.zeros(0, dtype=np.int16)

    def recent(self, seconds: float = 0.5) -> np.ndarray[Any, Any]:
        return self.heard()[-int(seconds * SAMPLE_RATE) :]

    async def wait_for(self, predicate: Any, within: float = 15.0) -> np.ndarray[Any, Any]:
        """Poll the last 0.5 s of received audio until ``predicate(pcm)`` holds."""
        deadline = asyncio.get_running_loop().time() + within
        while True:
            pcm = self.recent()
            if len(pcm) >= SAMPLE_RATE // 2 and predicate(pcm):
                return pcm
            if asyncio.get_running_loop().time() > deadline:
                got = peak_hz(pcm) if len(pcm) else None
                raise AssertionError(f"condition not met; last peak {got} Hz")
            await asyncio.sleep(0.1)

    async def collect(self, seconds: float, within: float = 15.0) -> np.ndarray[Any, Any]:
        """The next ``seconds`` of received audio."""
        mark = self.mark()
        deadline = asyncio.get_running_loop().time() + within
        while len(self.heard(mark)) < seconds * SAMPLE_RATE:
            if asyncio.get_running_loop().time() > deadline:
                raise AssertionError("no audio received")
            await asyncio.sleep(0.05)
        return self.heard(mark)

    async def wait_for_tone(self, freq: float, within: float = 15.0) -> np.ndarray[Any, Any]:
        return await self.wait_for(lambda pcm: abs(peak_hz(pcm) - freq) < 15, within)

    async def wait_connected(self, within: float = 15.0) -> None:
        deadline = asyncio.get_running_loop().time() + within
        while self.pc.connectionState != "connected":
            if asyncio.get_running_loop().time() > deadline:
                raise AssertionError(f"not connected: {self.states}")
            await asyncio.sleep(0.05)

    async def close(self) -> None:
        await self.pc.close()
        if self._reader is not None:
            self._reader.cancel()
