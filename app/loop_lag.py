"""How late the event loop runs: the `helpdesk_event_loop_lag_seconds` histogram.

Everything a node does shares one loop, so a callback that runs long (a
transaction of many first messages, a slow statement, a large JSON body) holds
every connection of the process: their frames wait, pings go unanswered, p99
latency jumps. A timer that asks to wake every `INTERVAL` and records how late
it woke samples that wait for all of them, at four wake-ups a second. A node
whose lag sits in the upper buckets is saturated or stalls; the chat issue's
notes show what such stalls looked like before they were fixed.
"""

from __future__ import annotations

import asyncio

from prometheus_client import Histogram

from app.context import AppContext
from app.tasks import cancel_and_wait

INTERVAL = 0.25

LOOP_LAG = Histogram(
    "helpdesk_event_loop_lag_seconds",
    "How much later than asked the event loop ran a timer (sampled every 0.25 s).",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
)


class LoopLagMonitor:
    """`Service`: samples the loop's lag while the app runs."""

    name = "loop-lag"

    def __init__(self, interval: float = INTERVAL) -> None:
        self.interval = interval
        self._task: asyncio.Task[None] | None = None

    async def start(self, ctx: AppContext) -> None:
        self._task = ctx.spawn(self._loop(), self.name)

    async def stop(self) -> None:
        await cancel_and_wait(self._task)
        self._task = None

    async def _loop(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            due = loop.time() + self.interval
            await asyncio.sleep(self.interval)
            LOOP_LAG.observe(max(0.0, loop.time() - due))
