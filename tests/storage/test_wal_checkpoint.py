"""SQLite's write-ahead log stays bounded while reads and writes never stop.

The WAL starts over only when no reader uses a snapshot in it; with readers that
overlap continuously the automatic checkpoint can never do that, and the file grows
for as long as the load lasts. `app.wal_checkpoint` resets it anyway, holding new
transactions back for the moment it takes, without ever blocking the event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sqlite3
from collections.abc import AsyncIterator
from itertools import count
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url

from app import wal_checkpoint
from app.context import AppContext
from app.db import SQLITE_LOCK_TIMEOUT
from app.main import create_app
from app.settings import Settings
from app.wal_checkpoint import WalCheckpointer
from tests.conftest import make_settings, seed_workspace

LIMIT = 64 * 1024  # sixteen 4 KiB pages


@pytest.fixture
def settings_overrides() -> dict[str, Any]:
    # The tests below run the passes themselves; the service's own loop stays out.
    return {"sqlite_wal_limit_bytes": LIMIT, "sqlite_checkpoint_interval_seconds": 3600}


@pytest.fixture
async def checkpointer(
    ctx: AppContext, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[WalCheckpointer]:
    # A slow machine must not make a hold give up on the readers here (they hold
    # their snapshots for 3 ms); giving up has a test of its own.
    monkeypatch.setattr(wal_checkpoint, "HOLD_SECONDS", 5.0)
    await seed_workspace(ctx, "acme")
    service = WalCheckpointer()
    await service.start(ctx)
    try:
        yield service
    finally:
        await service.stop()


def _wal_bytes(ctx: AppContext) -> int:
    database = make_url(ctx.settings.database_url).database
    assert database
    try:
        return os.path.getsize(database + "-wal")
    except FileNotFoundError:
        return 0


def _truncate_checkpoint(ctx: AppContext) -> int:
    """Another connection's TRUNCATE checkpoint, never waiting: 1 when a reader or the
    writer kept it from resetting the WAL."""
    database = make_url(ctx.settings.database_url).database
    assert database
    conn = sqlite3.connect(database, timeout=0, isolation_level=None)
    try:
        busy: int = conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()[0]
        return busy
    finally:
        conn.close()


class _Lag:
    longest = 0.0


@contextlib.asynccontextmanager
async def _loop_lag() -> AsyncIterator[_Lag]:
    """The longest the event loop went without running a ticker task meanwhile."""
    lag = _Lag()
    loop = asyncio.get_running_loop()

    async def tick() -> None:
        while True:
            before = loop.time()
            await asyncio.sleep(0)
            lag.longest = max(lag.longest, loop.time() - before)

    ticker = asyncio.create_task(tick())
    await asyncio.sleep(0)
    try:
        yield lag
    finally:
        ticker.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await ticker


names = count()


async def _write(ctx: AppContext) -> None:
    async with ctx.uow() as uow:
        await uow.session.exec(  # type: ignore[call-overload]
            text("UPDATE workspace SET name = :name WHERE slug = 'acme'"),
            params={"name": f"Acme {next(names)}"},
        )
        await uow.commit()


async def _read(ctx: AppContext) -> None:
    async with ctx.read_sessions() as session:
        await session.exec(text("SELECT name FROM workspace"))  # type: ignore[call-overload]


async def _overlapping_readers(ctx: AppContext, stop: asyncio.Event, readers: int = 3) -> None:
    """Read transactions that each stay open across an await (as one waiting on the
    network would), started so that at every moment at least one is open."""

    async def reader(offset: int) -> None:
        await asyncio.sleep(0.001 * offset)
        while not stop.is_set():
            async with ctx.read_sessions() as session:
                await session.exec(text("SELECT name FROM workspace"))  # type: ignore[call-overload]
                await asyncio.sleep(0.003)

    await asyncio.gather(*(reader(i) for i in range(readers)))


@pytest.mark.parametrize("factory", ["read_sessions", "sessions"])
async def test_a_session_ends_its_transaction_when_its_block_ends(
    ctx: AppContext, factory: str
) -> None:
    """Not a loop iteration later: meanwhile other coroutines commit, and the
    automatic checkpoint must not find this snapshot (or write lock) still open."""
    await seed_workspace(ctx, "acme")
    leaving = asyncio.Event()

    async def read() -> None:
        async with getattr(ctx, factory)() as session:
            await session.exec(text("SELECT name FROM workspace"))
            leaving.set()

    task = asyncio.create_task(read())
    await leaving.wait()  # the reader has left its block, and nothing else ran since
    assert _truncate_checkpoint(ctx) == 0
    await task


async def test_the_wal_is_reset_each_pass_while_readers_overlap(
    ctx: AppContext, checkpointer: WalCheckpointer
) -> None:
    stop = asyncio.Event()
    readers = asyncio.create_task(_overlapping_readers(ctx, stop))
    try:
        for _ in range(10):
            for _ in range(40):
                await _write(ctx)
                await asyncio.sleep(0)  # the readers take turns meanwhile
            # Forty commits while a snapshot was always open: the WAL only grew...
            assert _wal_bytes(ctx) > LIMIT
            # ...until a pass resets it, readers or not.
            assert await checkpointer.tick() == "reset"
            assert _wal_bytes(ctx) == 0
    finally:
        stop.set()
        await readers
    # Nothing was lost on the way.
    async with ctx.read_sessions() as session:
        name = (await session.exec(text("SELECT name FROM workspace"))).scalar_one()  # type: ignore[call-overload]
    assert name == f"Acme {next(names) - 1}"


async def test_the_pass_waits_for_open_transactions_on_the_loop(
    ctx: AppContext, checkpointer: WalCheckpointer
) -> None:
    """A busy handler sleeping on the loop thread would freeze the reader it waits for;
    the pass instead lets it finish, and holds back the ones that start meanwhile."""
    for _ in range(40):
        await _write(ctx)
    gate = checkpointer.gate
    assert gate is not None
    seen: list[str] = []
    snapshot_open = asyncio.Event()

    async def open_reader() -> None:
        async with ctx.read_sessions() as session:
            await session.exec(text("SELECT name FROM workspace"))  # type: ignore[call-overload]
            snapshot_open.set()
            # Until the pass waits for this snapshot (the gate has no event to await).
            while not gate.closed:  # noqa: ASYNC110
                await asyncio.sleep(0)
            seen.append("open reader ran during the hold")

    async def late_reader() -> None:
        while not gate.closed:  # noqa: ASYNC110
            await asyncio.sleep(0)
        await _read(ctx)  # begins after the hold began: waits for the reset
        seen.append(f"late reader read after the reset: WAL {_wal_bytes(ctx)} bytes")

    tasks = [asyncio.create_task(open_reader()), asyncio.create_task(late_reader())]
    await snapshot_open.wait()
    async with _loop_lag() as lag:
        assert await checkpointer.tick() == "reset"
    await asyncio.gather(*tasks)
    assert seen == [
        "open reader ran during the hold",
        "late reader read after the reset: WAL 0 bytes",
    ]
    # Generous on purpose (a noisy machine is no failure): a busy handler waiting for
    # the reader would have held the loop for the whole lock timeout.
    assert lag.longest < SQLITE_LOCK_TIMEOUT / 2


async def test_a_transaction_that_outlives_the_hold_is_waited_for_next_pass(
    ctx: AppContext,
    checkpointer: WalCheckpointer,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(wal_checkpoint, "HOLD_SECONDS", 0.05)
    for _ in range(40):
        await _write(ctx)
    release = asyncio.Event()
    snapshot_open = asyncio.Event()

    async def slow_reader() -> None:
        async with ctx.read_sessions() as session:
            await session.exec(text("SELECT name FROM workspace"))  # type: ignore[call-overload]
            snapshot_open.set()
            await release.wait()

    task = asyncio.create_task(slow_reader())
    await snapshot_open.wait()
    assert await checkpointer.tick() == "busy"
    assert "could not be reset" in caplog.text
    # The hold is over: transactions begin again (a write too) while the reader stays.
    await _write(ctx)
    release.set()
    await task
    assert await checkpointer.tick() == "reset"
    assert _wal_bytes(ctx) == 0


async def test_the_app_keeps_the_wal_bounded_on_its_own(tmp_path: Path, database_url: str) -> None:
    settings: Settings = make_settings(
        tmp_path,
        database_url,
        sqlite_wal_limit_bytes=LIMIT,
        sqlite_checkpoint_interval_seconds=0.02,
        workers_enabled=False,  # the upkeep runs in a web-only process too
    )
    app = create_app(settings)
    ctx: AppContext = app.state.ctx
    await seed_workspace(ctx, "acme")
    stop = asyncio.Event()
    readers = asyncio.create_task(_overlapping_readers(ctx, stop))
    try:
        # Before the app runs, nothing resets the WAL the load grows.
        for _ in range(100):
            await _write(ctx)
            await asyncio.sleep(0)
        assert _wal_bytes(ctx) > LIMIT
        async with app.router.lifespan_context(app):
            # The load and the overlapping readers go on, and the app brings it back.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(30):
                    while _wal_bytes(ctx) > LIMIT:
                        await _write(ctx)
                        await asyncio.sleep(0.005)
            assert _wal_bytes(ctx) <= LIMIT
    finally:
        stop.set()
        await readers
