"""Tap a leg's encoded audio frames before aiortc decodes them.

aiortc 1.16's ``RTCRtpReceiver`` reassembles RTP packets in a jitter buffer and puts each
complete encoded frame on a ``queue.Queue`` read by a decoder thread, which hands decoded
frames back to the loop. For plain bridging that decode (and the re-encode on the other
leg) is pure waste, so we replace two private attributes before the receiver starts:

- the decoder queue with :class:`_TapQueue`, whose ``put`` (called on the event loop)
  hands the encoded frame to our callback and does not feed the decoder thread, which
  then idles on an empty queue for the whole call;
- the audio jitter buffer with :class:`_FrameBuffer`. aiortc's audio buffer prefetches
  four frames (80 ms) before releasing one; for Opus and G.711 one RTP packet is one
  complete frame, so we release every packet at once and leave de-jittering to the
  far end's buffer, which re-times playout anyway.

Both attributes are name-mangled internals; :func:`install_tap` checks they exist so an
aiortc upgrade that moves them fails loudly (the voice tests cover it).
"""

from __future__ import annotations

import logging
import queue
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from aiortc.utils import uint16_add, uint16_gt

logger = logging.getLogger(__name__)

_QUEUE_ATTR = "_RTCRtpReceiver__decoder_queue"
_BUFFER_ATTR = "_RTCRtpReceiver__jitter_buffer"
_THREAD_ATTR = "_RTCRtpReceiver__decoder_thread"

# A packet this far behind the newest one is a restarted stream, not a late packet.
_MAX_MISORDER = 100


@dataclass(slots=True)
class EncodedFrame:
    """One encoded audio frame as received: payload and RTP timestamp (receiver-relative)."""

    data: bytes
    timestamp: int


FrameCallback = Callable[[str, EncodedFrame], None]


class _TapQueue(queue.Queue[Any]):
    def __init__(self, on_frame: FrameCallback) -> None:
        super().__init__()
        self._on_frame = on_frame
        self._names: dict[str, str] = {}  # mime type -> codec name, computed once per codec
        self.frames = 0

    def put(self, item: Any, block: bool = True, timeout: float | None = None) -> None:
        if item is None:  # the receiver is stopping: let the decoder thread exit
            super().put(None, block, timeout)
            return
        codec, frame = item
        self.frames += 1
        mime: str = codec.mimeType
        name = self._names.get(mime)
        if name is None:
            name = self._names[mime] = mime.split("/")[-1].lower()
        if not isinstance(frame, EncodedFrame):  # aiortc's own buffer (not installed by us)
            frame = EncodedFrame(frame.data, frame.timestamp)
        try:
            self._on_frame(name, frame)
        except Exception:  # one bad frame must not tear down aiortc's receive path
            logger.exception("voice tap callback failed")


class _FrameBuffer:
    """Releases every audio RTP packet as a frame at once; drops duplicates and late ones.

    The frame it returns is already our :class:`EncodedFrame` (aiortc only reads and
    rewrites its ``timestamp`` before queueing it), so the tap copies nothing.
    """

    capacity = 16

    def __init__(self) -> None:
        self._last: int | None = None

    def add(self, packet: Any) -> tuple[bool, EncodedFrame | None]:
        seq: int = packet.sequence_number
        last = self._last
        if last is not None and not uint16_gt(seq, last) and uint16_add(last, -seq) < _MAX_MISORDER:
            return False, None
        self._last = seq
        return False, EncodedFrame(packet._data, packet.timestamp)


class ReceiverTap:
    """Handle on an installed tap."""

    def __init__(self, q: _TapQueue) -> None:
        self._q = q

    @property
    def frames(self) -> int:
        """Encoded frames that went through the tap."""
        return self._q.frames

    @property
    def decoder_backlog(self) -> int:
        """Frames waiting for aiortc's decoder thread (never fed: stays 0)."""
        return self._q.qsize()


def install_tap(receiver: Any, on_frame: FrameCallback) -> ReceiverTap:
    """Route ``receiver``'s encoded frames to ``on_frame`` instead of its decoder.

    Must run before the receiver starts (i.e. before ICE/DTLS complete): right after
    ``setRemoteDescription`` on the answering side, or after ``addTransceiver`` on the
    offering side. ``on_frame(codec_name, frame)`` runs on the event loop.
    """
    for attr in (_QUEUE_ATTR, _BUFFER_ATTR, _THREAD_ATTR):
        if not hasattr(receiver, attr):
            raise RuntimeError(f"aiortc internals changed: RTCRtpReceiver has no {attr}")
    if getattr(receiver, _THREAD_ATTR) is not None:
        raise RuntimeError("install_tap must run before the receiver starts")
    q = _TapQueue(on_frame)
    setattr(receiver, _QUEUE_ATTR, q)
    setattr(receiver, _BUFFER_ATTR, _FrameBuffer())
    return ReceiverTap(q)
