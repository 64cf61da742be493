"""Send a leg's RTP straight from the event loop, without aiortc's per-frame sender task.

aiortc 1.16's ``RTCRtpSender`` pulls every frame from its track in a task: one task wake,
an ``av.Packet``, a ``Fraction`` time-base conversion, an ``RtpPacket`` object, a
datetime-based NTP timestamp and three nested coroutines per 20 ms packet. For a
forwarded frame that is most of the server's work per packet, and it adds a hop between
receiving a frame on one leg and sending it on the other.

:class:`RtpWriter` does the same job synchronously: it packs the RTP header itself
(same SSRC, payload type, header extensions and marker bit aiortc would send), protects it
with the DTLS transport's SRTP session and hands it to the nominated ICE pair's datagram
transport, the very calls aiortc's sender ends in. aiortc's sender task stays in charge of
starting and stopping (our track never hands it a frame, see tracks.py) and of RTCP: the
writer keeps the sender's counters that its sender reports carry up to date.

The attributes used are private to aiortc and aioice; :func:`install_writer` checks they
exist so an upgrade that moves them fails loudly (the voice tests cover it).
"""

from __future__ import annotations

import struct
import time
from typing import Any

from aiortc.rtcdtlstransport import State
from aiortc.rtcrtpsender import random_sequence_number
from aiortc.rtp import HeaderExtensions
from aiortc.utils import random32

_EXTENSIONS_ATTR = "_RTCRtpSender__rtp_header_extensions_map"
_MID_ATTR = "_RTCRtpSender__mid"
# What aiortc's RTCP loop puts in its sender reports.
_NTP_ATTR = "_RTCRtpSender__ntp_timestamp"
_RTP_TS_ATTR = "_RTCRtpSender__rtp_timestamp"
_OCTETS_ATTR = "_RTCRtpSender__octet_count"
_PACKETS_ATTR = "_RTCRtpSender__packet_count"
_SENDER_ATTRS = (
    *(_EXTENSIONS_ATTR, _MID_ATTR, "_ssrc", "_enabled"),
    *(_NTP_ATTR, _RTP_TS_ATTR, _OCTETS_ATTR, _PACKETS_ATTR),
)
# The transport's getStats() counters.
_TX_BYTES_ATTR = "_RTCDtlsTransport__tx_bytes"
_TX_PACKETS_ATTR = "_RTCDtlsTransport__tx_packets"
_DTLS_ATTRS = ("_state", "_tx_srtp", _TX_BYTES_ATTR, _TX_PACKETS_ATTR)

_CONNECTED = State.CONNECTED
_HEADER = struct.Struct("!BBHLL")
_EXT_HEADER = struct.Struct("!HH")
_NTP_EPOCH_OFFSET = 2208988800  # seconds from 1900 (NTP) to 1970 (Unix)
_RTP_COMPONENT = 1


def _ntp_now() -> int:
    now = time.time()
    seconds = int(now)
    return ((seconds + _NTP_EPOCH_OFFSET) << 32) | int((now - seconds) * 4294967296.0)


class RtpWriter:
    """Sends one RTP stream for an aiortc sender; see the module docstring."""

    def __init__(self, sender: Any) -> None:
        self._sender = sender
        self._sender_vars: dict[str, Any] = vars(sender)
        self._seq = random_sequence_number()
        self._origin = random32()
        self._first_byte = 0x80  # version 2, plus the extension bit once known
        self._second_byte = 0x80  # marker, plus the payload type once known
        self._started = False
        self._dtls: Any = None
        self._dtls_vars: dict[str, Any] = {}
        self._nominated: dict[int, Any] = {}
        self._pair: Any = None
        self._udp: Any = None
        self._addr: tuple[str, int] = ("", 0)
        self._extensions = b""
        self.packets = 0  # packets handed to the network
        self.dropped = 0  # packets written while the transport could not send

    def start(self, payload_type: int) -> None:
        """Called once aiortc has started the sender (DTLS is up, parameters are final)."""
        sender = self._sender
        dtls = sender.transport
        _check(dtls, _DTLS_ATTRS, "RTCDtlsTransport")
        self._dtls = dtls
        self._dtls_vars = vars(dtls)
        self._nominated = _nominated_pairs(dtls)
        # Marker set on every packet, as aiortc does (it marks each frame's last packet).
        self._second_byte = 0x80 | (payload_type & 0x7F)
        mid = self._sender_vars[_MID_ATTR]
        # Audio negotiates mid and audio level; aiortc only fills in mid (and abs-send-time,
        # which it never offers for audio) for frames it did not encode itself.
        profile, value = self._sender_vars[_EXTENSIONS_ATTR].set(HeaderExtensions(mid=mid))
        self._extensions = _EXT_HEADER.pack(profile, len(value) >> 2) + value if value else b""
        self._first_byte = 0x90 if value else 0x80
        self._started = True

    def write(self, payload: bytes, pts: int) -> None:
        """Send one frame whose RTP timestamp is ``pts`` ticks from the stream's origin."""
        dtls = self._dtls
        if not self._started or dtls._state is not _CONNECTED or not self._sender._enabled:
            self.dropped += 1
            return
        pair = self._nominated.get(_RTP_COMPONENT)
        if pair is None:
            self.dropped += 1
            return
        if pair is not self._pair:
            self._pair = pair
            self._udp = pair.protocol.transport
            self._addr = pair.remote_addr
        if self._udp is None:  # the pair's socket is gone: the leg is ending
            self.dropped += 1
            self._pair = None
            return
        timestamp = (self._origin + pts) & 0xFFFFFFFF
        header = _HEADER.pack(
            self._first_byte, self._second_byte, self._seq, timestamp, self._sender._ssrc
        )
        data = dtls._tx_srtp.protect(header + self._extensions + payload)
        self._udp.sendto(data, self._addr)
        self._seq = (self._seq + 1) & 0xFFFF
        sv = self._sender_vars
        if not self.packets & 7:
            # The (NTP, RTP) time pair of a sender report only has to belong to one packet;
            # refreshing it every 8th (160 ms) is as good and saves a clock read per packet.
            sv[_NTP_ATTR] = _ntp_now()
            sv[_RTP_TS_ATTR] = timestamp
        self.packets += 1
        sv[_OCTETS_ATTR] += len(payload)
        sv[_PACKETS_ATTR] += 1
        dv = self._dtls_vars
        dv[_TX_BYTES_ATTR] += len(data)
        dv[_TX_PACKETS_ATTR] += 1


def _check(obj: Any, attrs: tuple[str, ...], what: str) -> None:
    for attr in attrs:
        if not hasattr(obj, attr):
            raise RuntimeError(f"aiortc internals changed: {what} has no {attr}")


def _nominated_pairs(dtls: Any) -> dict[int, Any]:
    """aioice's live map of component -> nominated candidate pair (filled in on connect)."""
    connection = getattr(dtls.transport, "_connection", None)
    nominated = getattr(connection, "_nominated", None)
    if not isinstance(nominated, dict):
        raise RuntimeError("aioice internals changed: no Connection._nominated")
    return nominated


def install_writer(sender: Any) -> RtpWriter:
    """Check ``sender`` and its transports have what :class:`RtpWriter` uses; create one.

    Run it right after ``addTrack``, before the sender starts.
    """
    _check(sender, _SENDER_ATTRS, "RTCRtpSender")
    _check(sender.transport, _DTLS_ATTRS, "RTCDtlsTransport")
    _nominated_pairs(sender.transport)
    return RtpWriter(sender)
