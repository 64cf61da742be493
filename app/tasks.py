"""Stopping background tasks without losing the caller's own cancellation."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Any

log = logging.getLogger(__name__)


async def cancel_and_wait(*tasks: asyncio.Task[Any] | None) -> None:
    """Cancel `tasks` and return once they have all finished.

    The usual `with suppress(CancelledError): await task` also swallows a
    cancellation aimed at the caller if it lands while the caller waits there, so a
    loop that stops a child that way can keep running after it was cancelled (an
    IMAP poller did, and hung app shutdown). `asyncio.wait` never raises a child's
    exception and lets the caller's own cancellation through.
    """
    pending = [task for task in tasks if task is not None]
    for task in pending:
        task.cancel()
    if not pending:
        return
    await asyncio.wait(pending)
    for task in pending:
        if not task.cancelled() and (exc := task.exception()) is not None:
            log.warning("task %s ended with %r while being stopped", task.get_name(), exc)


def raise_if_cancelling() -> None:
    """Raise CancelledError if this task was cancelled and something swallowed it.

    On Python 3.11 `asyncio.wait_for` returns normally when its inner awaitable
    finishes in the same step as the cancellation arrives (fixed in 3.12), and the
    cancellation is lost. Long-lived loops call this before waiting again.
    """
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError


async def run_when_kicked(
    kick: asyncio.Event, interval: float, tick: Callable[[], Awaitable[object]], what: str
) -> None:
    """Run `tick` every `interval` seconds, and at once when `kick` is set; a failing
    pass is logged and the loop goes on (the routing and ACD loops)."""
    while True:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(interval):
                await kick.wait()
        kick.clear()
        try:
            await tick()
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("%s failed", what)
