"""Keeping SQLite's write-ahead log bounded under continuous load.

Every commit appends to the ``-wal`` file; a checkpoint copies those pages into the
database, and SQLite starts the file over only when every page has been copied
*and* no reader still uses a snapshot that lies in it. The automatic checkpoint
(after a commit, once the WAL passes 1000 pages) is PASSIVE: it copies what the
oldest open snapshot allows and never waits. Under continuous load some read
transaction may always be open, so the WAL never starts over and grows without
bound (97 MB next to a 2 MB database after a chaos run, when sessions still ended
one loop iteration late; see `app.db.SnapshotEndingSession`). It is slow as well as
big: past 1000 pages *every* commit runs the automatic checkpoint, an fsync
included (a micro-benchmark: 2 200 commits/s instead of 40 000).

The usual cure, a RESTART or TRUNCATE checkpoint with a busy timeout, would stall
the server here: statements run on the event loop thread (`app.sqlite_inline`), so
a busy handler sleeping until the readers finish freezes the very readers it waits
for. Instead, every interval:

- nothing happens while the ``-wal`` file is under the limit: then the automatic
  checkpoint is keeping up, and ``journal_size_limit`` (`app.db`) cuts the file
  back whenever it starts over;
- over the limit, a TRUNCATE checkpoint on a connection that never waits (busy
  timeout 0) resets it if no transaction is open at that instant, the usual case:
  our transactions only stay open across an ``await`` when they wait for something;
- if one is open, new transactions of this process are held back at the gate
  (`sqlite_inline.TransactionGate`, an asynchronous wait) until the open ones have
  ended, and the checkpoint runs before anything can begin another. Transactions
  are short, so the hold is too; one that outlives `HOLD_SECONDS` (say, it waits
  for a second transaction the gate keeps out) ends the hold, and the next
  interval tries again.

Another process's reader (the CLI, a backup) can still keep the WAL from starting
over; nothing here waits for it, and the log says so once.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sqlite3
from typing import Literal

from app.context import AppContext
from app.sqlite_inline import TransactionGate, gate_for
from app.tasks import cancel_and_wait, raise_if_cancelling

log = logging.getLogger(__name__)

# Longest time new transactions wait at the gate for the open ones to end.
HOLD_SECONDS = 0.25

Outcome = Literal["small", "reset", "busy"]


class WalCheckpointer:
    """`Service`: the WAL upkeep of a SQLite database file (does nothing on PostgreSQL)."""

    name = "wal-checkpoint"

    def __init__(self) -> None:
        self.database: str | None = None
        self.limit = 0
        self.gate: TransactionGate | None = None
        self._conn: sqlite3.Connection | None = None
        self._task: asyncio.Task[None] | None = None
        self._stuck = False  # the last pass could not reset an oversized WAL

    async def start(self, ctx: AppContext) -> None:
        url = ctx.engine.url
        if not url.drivername.startswith("sqlite") or url.database in (None, "", ":memory:"):
            return
        self.database = url.database
        self.limit = ctx.settings.sqlite_wal_limit_bytes
        self.gate = gate_for(self.database)
        self._task = ctx.spawn(
            self._loop(ctx.settings.sqlite_checkpoint_interval_seconds), self.name
        )

    async def stop(self) -> None:
        await cancel_and_wait(self._task)
        self._task = None
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    async def _loop(self, interval: float) -> None:
        while True:
            await asyncio.sleep(interval)
            raise_if_cancelling()
            try:
                await self.tick()
            except Exception:  # a failing pass must not end the upkeep
                log.exception("WAL checkpoint failed")

    def wal_bytes(self) -> int:
        assert self.database is not None
        try:
            return os.stat(self.database + "-wal").st_size
        except FileNotFoundError:
            return 0

    async def tick(self) -> Outcome:
        """One pass: reset the WAL if it has outgrown the limit."""
        if self.database is None or self.wal_bytes() <= self.limit:
            return "small"
        assert self.gate is not None
        done = self._checkpoint() or bool(
            await self.gate.run_when_idle(HOLD_SECONDS, self._checkpoint)
        )
        if done:
            if self._stuck:
                log.info("the WAL of %s was reset again", self.database)
            self._stuck = False
            return "reset"
        if not self._stuck:
            log.warning(
                "the WAL of %s is %d bytes and could not be reset: a transaction stays open"
                " (another process?); retrying every interval",
                self.database,
                self.wal_bytes(),
            )
        self._stuck = True
        return "busy"

    def _checkpoint(self) -> bool:
        """Copy the WAL into the database and truncate it, without waiting for anyone."""
        if self._conn is None:
            assert self.database is not None
            # Its own connection, outside the pool and the gate, opened once there is a
            # WAL to reset (the app starts even when the database cannot be opened):
            # busy timeout 0, so meeting a reader or the writer is reported, not waited for.
            self._conn = sqlite3.connect(
                self.database, timeout=0, isolation_level=None, check_same_thread=False
            )
        row = self._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
        return int(row[0]) == 0  # (busy, frames in the WAL, frames copied)
