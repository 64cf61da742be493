"""One call leg: an aiortc peer connection terminated on the server.

A leg receives one audio stream (tapped before aiortc's decoder, see tap.py) and sends one
never-ending :class:`OutboundTrack`. Its inbound frames fan out to whoever listens:
outbound tracks of other legs get the encoded frames as they are (passthrough), mixers and
the recorder get decoded PCM, and the leg only decodes while at least one PCM listener
exists.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any

from aiortc import RTCConfiguration, RTCIceServer, RTCPeerConnection, RTCSessionDescription
from aiortc.sdp import SessionDescription

from .codec import CodecError, CodecInfo, FrameDecoder
from .egress import install_writer
from .ingress import Ingress, install_ingress
from .tap import EncodedFrame, ReceiverTap, install_tap
from .tracks import OutboundTrack, PcmFeed

logger = logging.getLogger(__name__)

MAX_SDP_BYTES = 64 * 1024


class MediaError(ValueError):
    """A leg could not be set up from the given offer."""


class Leg:
    """A server-terminated leg. Create with :func:`open_leg`."""

    def __init__(self, name: str, role: str, pc: Any, track: OutboundTrack) -> None:
        self.name = name
        self.role = role
        self.pc = pc
        self.track = track
        self.codec: CodecInfo | None = None
        self.tap: ReceiverTap | None = None
        self.ingress: Ingress | None = None
        self._encoded_sinks: list[OutboundTrack] = []
        self._pcm_sinks: list[PcmFeed] = []
        self._decoder: FrameDecoder | None = None
        self.frames_received = 0
        self.decoded_frames = 0  # stays 0 while the leg is only forwarded
        self.on_state: Callable[[Leg, str], None] | None = None

    @property
    def connection_state(self) -> str:
        return str(self.pc.connectionState)

    # FramePublisher (see tracks.py)
    def add_encoded_sink(self, sink: OutboundTrack) -> None:
        if sink not in self._encoded_sinks:
            self._encoded_sinks.append(sink)

    def remove_encoded_sink(self, sink: OutboundTrack) -> None:
        if sink in self._encoded_sinks:
            self._encoded_sinks.remove(sink)

    def add_pcm_sink(self, sink: PcmFeed) -> None:
        if sink not in self._pcm_sinks:
            self._pcm_sinks.append(sink)

    def remove_pcm_sink(self, sink: PcmFeed) -> None:
        if sink in self._pcm_sinks:
            self._pcm_sinks.remove(sink)
        if not self._pcm_sinks:
            self._decoder = None  # a later listener starts from a fresh decoder state

    def _on_frame(self, codec_name: str, frame: EncodedFrame) -> None:
        self.frames_received += 1
        for sink in self._encoded_sinks:
            sink.push(frame)
        if self._pcm_sinks and self.codec is not None:
            if self._decoder is None:
                self._decoder = FrameDecoder(self.codec)
            for pcm in self._decoder.decode(frame.data):
                self.decoded_frames += 1
                for feed in self._pcm_sinks:
                    feed.push(pcm)

    async def close(self) -> None:
        self.track.stop()
        self._encoded_sinks.clear()
        self._pcm_sinks.clear()
        await self.pc.close()


def negotiated_codec(sdp: str) -> CodecInfo:
    """The codec an answer selected for its audio stream (the first one listed)."""
    description = SessionDescription.parse(sdp)
    for media in description.media:
        if media.kind == "audio" and media.rtp.codecs:
            c = media.rtp.codecs[0]
            return CodecInfo.from_mime(c.mimeType, c.clockRate, c.payloadType or 0)
    raise MediaError("answer has no audio codec")


async def open_leg(
    name: str,
    role: str,
    offer_sdp: str,
    *,
    silence: list[bytes] | Callable[[CodecInfo], list[bytes]],
    ice_servers: Sequence[RTCIceServer] = (),
) -> tuple[Leg, str]:
    """Answer ``offer_sdp`` (an audio-only offer). Returns the leg and the answer SDP.

    The answer is returned after ICE gathering completes (no trickle), so it carries every
    candidate. ``silence`` gives the pre-encoded silence for the negotiated codec.
    """
    if len(offer_sdp.encode()) > MAX_SDP_BYTES:
        raise MediaError(f"offer larger than {MAX_SDP_BYTES} bytes")
    pc = RTCPeerConnection(RTCConfiguration(iceServers=list(ice_servers)))
    try:
        try:
            await pc.setRemoteDescription(RTCSessionDescription(sdp=offer_sdp, type="offer"))
        except Exception as exc:  # aiortc raises assorted errors for malformed SDP
            raise MediaError(f"invalid offer: {exc}") from exc
        transceivers = pc.getTransceivers()
        audio = [t for t in transceivers if t.kind == "audio"]
        if len(audio) != 1 or len(audio) != len(transceivers):
            raise MediaError("the offer must carry exactly one audio stream and no video")
        track = OutboundTrack()
        leg = Leg(name, role, pc, track)
        leg.tap = install_tap(audio[0].receiver, leg._on_frame)
        track.bind(install_writer(pc.addTrack(track)))
        answer = await pc.createAnswer()
        await pc.setLocalDescription(answer)
        try:
            codec = negotiated_codec(pc.localDescription.sdp)
        except CodecError as exc:
            raise MediaError(str(exc)) from exc
        leg.codec = codec
        leg.ingress = install_ingress(audio[0].receiver.transport)
        track.configure(codec, silence(codec) if callable(silence) else silence)

        @pc.on("connectionstatechange")
        def _state() -> None:
            if leg.on_state is not None:
                leg.on_state(leg, leg.connection_state)

        return leg, str(pc.localDescription.sdp)
    except BaseException:
        await pc.close()
        raise
