"""The direct send and receive paths around aiortc (egress.py, ingress.py)."""

from __future__ import annotations

import asyncio

import pytest
from aiortc import RTCPeerConnection

from channels.voice import ingress
from channels.voice.egress import install_writer
from channels.voice.ingress import Ingress, install_ingress
from channels.voice.tracks import OutboundTrack


async def test_both_paths_fit_this_aiortc_and_refuse_anything_else() -> None:
    pc = RTCPeerConnection()
    try:
        sender = pc.addTrack(OutboundTrack())
        install_writer(sender)
        install_ingress(sender.transport)
    finally:
        await pc.close()
    with pytest.raises(RuntimeError, match="aiortc internals changed"):
        install_writer(object())
    with pytest.raises(RuntimeError, match="aiortc internals changed"):
        install_ingress(object())


async def test_a_dispatch_that_suspends_is_finished_by_a_task() -> None:
    # aiortc's audio dispatch never suspends; should a future version do so, the packet
    # must still be handled, just later.
    handled: list[str] = []
    gate: asyncio.Future[str] = asyncio.get_running_loop().create_future()
    finished = asyncio.Event()

    async def dispatch() -> None:
        handled.append("started")
        handled.append(await gate)
        await asyncio.sleep(0)
        handled.append("done")
        finished.set()

    counters = Ingress()
    ingress._drive(dispatch(), counters)
    assert handled == ["started"] and counters.suspended == 1
    gate.set_result("resumed")
    async with asyncio.timeout(5):
        await finished.wait()
    assert handled == ["started", "resumed", "done"]
