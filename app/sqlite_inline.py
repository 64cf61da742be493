"""An asyncio SQLite driver that runs statements on the event loop thread.

aiosqlite gives every connection a worker thread and turns each DB-API call
(cursor, execute, fetchall, close, commit) into a round trip through a queue and
`call_soon_threadsafe`. Our statements are small, indexed and served from the page
cache: SQLite answers them in tens of microseconds, while each round trip costs a
loop wake-up and two context switches. Measured on the chat path, about 35 round
trips per stored message made the loop sit idle waiting on threads most of the
time (see the chat issue note). Here the same calls run inline; the coroutines
complete without suspending, so SQLAlchemy's `await_` costs a greenlet switch and
nothing else.

The one thing that must never block the loop is waiting for a lock. Connections
are opened with SQLite's busy timeout at zero; a statement that meets SQLITE_BUSY
(another connection holds the write lock) suspends instead: it queues until a
connection of this process ends its write transaction (a hand-off, first come
first served) or a short back-off passes (the holder may be another process, like
the CLI), then retries, up to the configured timeout. SQLITE_BUSY_SNAPSHOT (a read
snapshot that can no longer be upgraded) is not retried: only a new transaction
helps, and the caller must start one.

The price: a statement that is genuinely slow (a huge scan, a checkpoint) holds
the loop while it runs. Every query here is bounded by a page size and an index.

A `TransactionGate` per database file lets the WAL checkpoint (`app.wal_checkpoint`)
hold back new transactions of this process until the open ones have ended: waiting
at the gate suspends, like waiting for the write lock.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import time
import weakref
from collections import deque
from collections.abc import Callable, Generator, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

T = TypeVar("T")

SQLITE_BUSY = 5
SQLITE_LOCKED = 6
SQLITE_BUSY_SNAPSHOT = 517

# Between retries when nobody in this process is about to hand the lock over.
_BACKOFF_START = 0.001
_BACKOFF_MAX = 0.025
# How often a held gate looks whether the open transactions have ended.
_HOLD_POLL = 0.001


def is_busy(exc: sqlite3.OperationalError) -> bool:
    code = getattr(exc, "sqlite_errorcode", None)
    if code == SQLITE_BUSY_SNAPSHOT:
        return False
    if code is not None:
        return code & 0xFF in (SQLITE_BUSY, SQLITE_LOCKED)
    return "database is locked" in str(exc)


class WriteQueue:
    """Writers of one database file in this process waiting for SQLite's write lock."""

    def __init__(self) -> None:
        self._waiters: deque[asyncio.Future[None]] = deque()

    async def wait(self, seconds: float, *, first: bool) -> None:
        """Until a writer of this process hands over the lock, or `seconds` pass."""
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        if first:
            self._waiters.appendleft(future)
        else:
            self._waiters.append(future)
        try:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(seconds):
                    await future
        finally:
            if not future.done():
                future.cancel()
            with contextlib.suppress(ValueError):
                self._waiters.remove(future)

    def released(self) -> None:
        """A write transaction ended: wake the writer that has waited longest."""
        while self._waiters:
            future = self._waiters.popleft()
            if not future.done():
                future.set_result(None)
                return


class TransactionGate:
    """Where the transactions of one database file in this process begin.

    Open, it costs a flag test per BEGIN. `run_when_idle` closes it: a BEGIN then
    waits (suspended, so the transactions already open keep running on the loop),
    and once no connection of this process is in a transaction the function runs,
    before anything else can begin one. Transactions here are short, so the wait
    is too; but one that waits for another transaction while holding its own would
    wait forever, hence the bound.
    """

    def __init__(self) -> None:
        self.connections: weakref.WeakSet[InlineConnection] = weakref.WeakSet()
        self.closed = False
        self._waiters: list[asyncio.Future[None]] = []

    def in_transaction(self) -> int:
        """How many connections of this process have a transaction open now."""
        return sum(1 for conn in self.connections if conn.in_transaction)

    async def passage(self) -> None:
        """Return when the gate is open (at once, usually)."""
        while self.closed:
            future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            self._waiters.append(future)
            try:
                await future
            finally:
                with contextlib.suppress(ValueError):
                    self._waiters.remove(future)

    async def run_when_idle(self, seconds: float, function: Callable[[], T]) -> T | None:
        """Hold back new transactions until none is open, then call `function`;
        None when some transaction outlived `seconds` (nothing was called)."""
        if self.closed:
            return None  # someone else holds it
        self.closed = True
        try:
            deadline = time.monotonic() + seconds
            while self.in_transaction():
                if time.monotonic() >= deadline:
                    return None
                # Polling: a transaction ends in many ways (commit, rollback, close,
                # an error SQLite rolls back itself); a hold is rare and short.
                await asyncio.sleep(_HOLD_POLL)
            return function()
        finally:
            self.closed = False
            waiters, self._waiters = self._waiters, []
            for future in waiters:
                if not future.done():
                    future.set_result(None)


@dataclass
class _DatabaseFile:
    """What the connections of this process to one database file share."""

    writes: WriteQueue = field(default_factory=WriteQueue)
    gate: TransactionGate = field(default_factory=TransactionGate)


_files: dict[str, _DatabaseFile] = {}


def _file(database: str) -> _DatabaseFile:
    """The shared state of a database file (the path as given to `inline_creator`)."""
    found = _files.get(database)
    if found is None:
        found = _files[database] = _DatabaseFile()
    return found


def gate_for(database: str) -> TransactionGate:
    """The gate of a database file (the path as given to `inline_creator`)."""
    return _file(database).gate


class InlineCursor:
    """The aiosqlite cursor surface SQLAlchemy's adapter uses, run inline."""

    __slots__ = ("_conn", "_cursor")

    def __init__(self, conn: InlineConnection, cursor: sqlite3.Cursor) -> None:
        self._conn = conn
        self._cursor = cursor

    async def __aenter__(self) -> InlineCursor:
        return self

    def __await__(self) -> Generator[Any, None, InlineCursor]:
        return self._self().__await__()

    async def _self(self) -> InlineCursor:
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._cursor.close()

    async def execute(self, sql: str, parameters: Any = ()) -> InlineCursor:
        if sql.startswith("BEGIN"):
            gate = self._conn.gate
            if gate.closed:
                await gate.passage()
            if sql.startswith("BEGIN IMMEDIATE"):
                self._conn.writer = True
        await self._conn.run(self._cursor.execute, sql, parameters)
        return self

    async def executemany(self, sql: str, parameters: Iterable[Any]) -> InlineCursor:
        await self._conn.run(self._cursor.executemany, sql, parameters)
        return self

    async def fetchone(self) -> Any:
        return self._cursor.fetchone()

    async def fetchmany(self, size: int | None = None) -> list[Any]:
        if size is None:
            return self._cursor.fetchmany()
        return self._cursor.fetchmany(size)

    async def fetchall(self) -> list[Any]:
        return self._cursor.fetchall()

    async def close(self) -> None:
        self._cursor.close()

    async def nextset(self) -> None:
        return None

    async def setinputsizes(self, *sizes: Any) -> None:
        return None

    @property
    def description(self) -> Any:
        return self._cursor.description

    @property
    def rowcount(self) -> int:
        return self._cursor.rowcount

    @property
    def lastrowid(self) -> int | None:
        return self._cursor.lastrowid

    @property
    def arraysize(self) -> int:
        return self._cursor.arraysize

    @arraysize.setter
    def arraysize(self, value: int) -> None:
        self._cursor.arraysize = value


class _InlineTx:
    """Stands in for aiosqlite's request queue, which SQLAlchemy's isolation-level
    setter uses directly: run the function now and resolve its future."""

    def put_nowait(self, item: tuple[asyncio.Future[Any] | None, Callable[[], Any]]) -> None:
        future, function = item
        try:
            result = function()
        except BaseException as exc:
            if future is not None and not future.done():
                future.set_exception(exc)
            return
        if future is not None and not future.done():
            future.set_result(result)


class InlineConnection:
    """The aiosqlite connection surface SQLAlchemy's adapter uses, run inline."""

    def __init__(self, conn: sqlite3.Connection, database: str, timeout: float) -> None:
        self._connection: sqlite3.Connection | None = conn
        self._timeout = timeout
        shared = _file(database)
        self._writes = shared.writes
        self.gate = shared.gate
        self.gate.connections.add(self)
        self._tx = _InlineTx()
        # This connection holds (or is taking) the write lock: ending its transaction
        # hands the turn to the next writer. Deferred transactions that write anyway
        # are left to the waiters' back-off.
        self.writer = False

    @property
    def _conn(self) -> sqlite3.Connection:
        if self._connection is None:
            raise ValueError("no active connection")
        return self._connection

    async def run(self, function: Callable[..., Any], *args: Any) -> Any:
        """Call into SQLite now; on a busy database, wait without blocking the loop."""
        conn = self._conn
        was_writing = conn.in_transaction
        try:
            return function(*args)
        except sqlite3.OperationalError as exc:
            if not is_busy(exc):
                raise
        deadline = time.monotonic() + self._timeout
        backoff = _BACKOFF_START
        first = False
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise sqlite3.OperationalError("database is locked")
            await self._writes.wait(min(backoff, left), first=first)
            # Woken or timed out, this writer keeps its place at the front.
            first = True
            backoff = min(backoff * 2, _BACKOFF_MAX)
            try:
                result = function(*args)
            except sqlite3.OperationalError as exc:
                if not is_busy(exc):
                    raise
                continue
            if not was_writing and not conn.in_transaction:
                self._writes.released()  # it did not keep a transaction: pass the turn on
            return result

    def begin_now(self, sql: str) -> bool:
        """Run `sql` (a BEGIN) at once if nothing stands in the way: True if it ran,
        False if it must go the adapter's way: the gate is closed or the database
        busy (the adapter waits without blocking the loop), or SQLite refused it for
        another reason (the adapter raises that as SQLAlchemy's error, which callers
        such as the group commit tell apart)."""
        conn = self._conn
        if self.gate.closed:
            return False
        try:
            conn.execute(sql)
        except sqlite3.Error:
            return False
        if sql.startswith("BEGIN IMMEDIATE"):
            self.writer = True
        return True

    def in_transaction_now(self) -> sqlite3.Connection | None:
        """The SQLite connection itself while a transaction is open on it: statements
        inside a transaction need none of the adapter's awaiting."""
        conn = self._connection
        return conn if conn is not None and conn.in_transaction else None

    def cursor(self) -> InlineCursor:
        # Like aiosqlite's: usable as `async with conn.cursor()` and `await conn.cursor()`.
        return InlineCursor(self, self._conn.cursor())

    async def execute(self, sql: str, parameters: Sequence[Any] = ()) -> InlineCursor:
        cursor = InlineCursor(self, self._conn.cursor())
        return await cursor.execute(sql, parameters)

    async def commit(self) -> None:
        await self.run(self._conn.commit)
        self._ended()

    async def rollback(self) -> None:
        self._conn.rollback()
        self._ended()

    def _ended(self) -> None:
        if self.writer:
            self.writer = False
            self._writes.released()

    async def create_function(self, *args: Any, **kwargs: Any) -> None:
        self._conn.create_function(*args, **kwargs)

    async def close(self) -> None:
        self.stop()

    def stop(self) -> None:
        """Close now (SQLAlchemy's terminate); a closed connection ends any write."""
        conn, self._connection = self._connection, None
        if conn is None:
            return
        conn.close()
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return  # garbage collection off the loop: waiters fall back to their back-off
        self._ended()

    @property
    def isolation_level(self) -> str | None:
        return self._conn.isolation_level

    @property
    def in_transaction(self) -> bool:
        return self._connection is not None and self._connection.in_transaction

    @property
    def row_factory(self) -> Any:
        return self._conn.row_factory

    @row_factory.setter
    def row_factory(self, value: Any) -> None:
        self._conn.row_factory = value

    @property
    def total_changes(self) -> int:
        return self._conn.total_changes


def inline_creator(database: str, *, timeout: float = 30.0) -> Callable[[], Any]:
    """An `async_creator` for `create_async_engine` on a SQLite file."""

    async def connect() -> InlineConnection:
        conn = sqlite3.connect(
            database,
            timeout=0,  # never block the loop: `InlineConnection.run` waits instead
            isolation_level=None,
            check_same_thread=False,  # pool cleanup may close it from another thread
        )
        return InlineConnection(conn, database, timeout)

    return connect
