"""Receive a leg's RTP in the datagram callback, without aiortc's per-packet queue hop.

In aiortc 1.16 every datagram aioice receives goes through an ``asyncio.Queue``: the
socket callback puts it there, and the DTLS transport's task wakes up, reads it back
through three nested coroutines, unprotects it and hands it to the RTP receiver. For a
forwarded audio packet that hop is a large share of the server's Python work.

:func:`install_ingress` takes the SRTP (not SRTCP, not DTLS) datagrams of one connection
straight from aioice's ``Connection.data_received``, unprotects them with the transport's
SRTP session and runs the transport's own dispatch on them right there, so a forwarded
frame goes from one leg's socket to the other's without leaving the callback (see tap.py
and egress.py). Everything else (DTLS, RTCP, anything before the handshake completed)
still takes aiortc's queue.

aiortc's dispatch coroutine never suspends for an audio receiver (it only awaits to send
video feedback, and sending does not suspend either); it is driven by hand, and if it ever
did suspend, a task finishes it. The attributes used are private to aiortc and aioice;
:func:`install_ingress` checks they exist so an upgrade that moves them fails loudly.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Coroutine
from typing import Any

import pylibsrtp
from aiortc.rtcdtlstransport import State

logger = logging.getLogger(__name__)

_RX_BYTES_ATTR = "_RTCDtlsTransport__rx_bytes"
_RX_PACKETS_ATTR = "_RTCDtlsTransport__rx_packets"
_DTLS_ATTRS = ("_state", "_rx_srtp", "_handle_rtp_data", _RX_BYTES_ATTR, _RX_PACKETS_ATTR)
_CONNECTED = State.CONNECTED
_NTP_EPOCH_OFFSET = 2208988800  # seconds from 1900 (NTP) to 1970 (Unix)


class Ingress:
    """Handle on an installed fast receive path."""

    def __init__(self) -> None:
        self.packets = 0  # SRTP packets dispatched from the datagram callback
        self.suspended = 0  # dispatches that did suspend and were finished by a task


def install_ingress(dtls: Any) -> Ingress:
    """Dispatch ``dtls``'s incoming SRTP from aioice's datagram callback.

    ``dtls`` is the leg's ``RTCDtlsTransport``, final once the answer is set.
    """
    for attr in _DTLS_ATTRS:
        if not hasattr(dtls, attr):
            raise RuntimeError(f"aiortc internals changed: RTCDtlsTransport has no {attr}")
    connection = getattr(dtls.transport, "_connection", None)
    queued = getattr(connection, "data_received", None)
    if connection is None or not callable(queued):
        raise RuntimeError("aioice internals changed: no Connection.data_received")
    ingress = Ingress()
    counters: dict[str, Any] = vars(dtls)

    def data_received(data: bytes, component: int) -> None:
        first = data[0]
        srtp = dtls._rx_srtp
        # SRTP but not SRTCP: the second byte of RTCP is its packet type, 192-208.
        if (
            127 < first < 192
            and srtp is not None
            and dtls._state is _CONNECTED
            and not (len(data) >= 2 and 192 <= data[1] <= 208)
        ):
            counters[_RX_BYTES_ATTR] += len(data)
            counters[_RX_PACKETS_ATTR] += 1
            try:
                packet = srtp.unprotect(data)
            except pylibsrtp.Error:
                return  # aiortc drops it too
            ingress.packets += 1
            # Milliseconds since 1900, as aiortc's clock.current_ms (only video uses it).
            arrival_ms = int((time.time() + _NTP_EPOCH_OFFSET) * 1000)
            _drive(dtls._handle_rtp_data(packet, arrival_time_ms=arrival_ms), ingress)
            return
        queued(data, component)

    connection.data_received = data_received
    return ingress


def _drive(coro: Coroutine[Any, Any, None], ingress: Ingress) -> None:
    """Run ``coro`` now; should it suspend, let a task finish it."""
    try:
        awaited = coro.send(None)
    except StopIteration:
        return
    except Exception:  # one bad packet must not escape into the socket callback
        logger.exception("voice ingress dispatch failed")
        return
    ingress.suspended += 1
    task = asyncio.ensure_future(_finish(coro, awaited))
    task.add_done_callback(_log_failure)


async def _finish(coro: Coroutine[Any, Any, None], awaited: Any) -> None:
    """Continue a coroutine that suspended on ``awaited`` (a future, or None for a yield).

    The coroutine reads the future's outcome itself once resumed, so it is only waited for.
    """
    try:
        while True:
            if awaited is None:
                await asyncio.sleep(0)
            else:
                await asyncio.wait([awaited])
            try:
                awaited = coro.send(None)
            except StopIteration:
                return
    finally:
        coro.close()


def _log_failure(task: asyncio.Future[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        logger.error("voice ingress dispatch failed", exc_info=task.exception())
