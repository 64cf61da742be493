"""Async engine and session factory.

SQLite runs on the event loop thread (`app.sqlite_inline`, which also explains
how waiting for a lock stays off the loop) with WAL and foreign keys, and every
transaction starts with ``BEGIN IMMEDIATE``: SQLite upgrades a deferred read
transaction to a write lock lazily and fails with SQLITE_BUSY (no retry) when two
writers race for it, which is exactly the per-ticket ``seq`` allocation pattern.
Taking the write lock up front turns that into an orderly queue of writers.

Reads need none of that: sessions from `read_session_factory` (safe HTTP methods)
start with a plain deferred ``BEGIN``, so in WAL mode they read a snapshot without
queueing behind writers or each other. A read-only transaction that must write
anyway should end its read first (commit) so the write opens a fresh transaction:
upgrading a stale read snapshot fails with SQLITE_BUSY_SNAPSHOT, which is not
retried (see `tokens.authenticate`). PostgreSQL ignores the option.

A SQLite session ends its transaction the moment its ``async with`` block ends
(`SnapshotEndingSession`), and the WAL is checkpointed by `app.wal_checkpoint`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker, create_async_engine
from sqlmodel.ext.asyncio.session import AsyncSession

from app.settings import SQLITE_MMAP_BYTES, SQLITE_WAL_LIMIT_BYTES, Settings
from app.sqlite_inline import InlineConnection, inline_creator

SessionFactory = async_sessionmaker[AsyncSession]


# How long a statement waits for another connection's write lock before failing.
SQLITE_LOCK_TIMEOUT = 30.0
# Connections kept open. Only overflow churns: opening one (with its PRAGMAs) costs
# ~1.5 ms, more than the transaction it serves, and under a burst of writers queued
# for the lock every checkout past the pool was a new connection. Statements run on
# the event loop (app.sqlite_inline), so more connections add no parallelism: a
# session past the pool waits for one to come back instead.
SQLITE_POOL_SIZE = 20

# Execution option marking an engine (and so its transactions) as read-only; see below.
READ_ONLY = "helpdesk_read_only"

# Tables outside SQLModel.metadata (full-text search), created by hand-written migrations.
UNMANAGED_TABLE_PREFIXES = ("fts_",)


def is_unmanaged_table(name: str) -> bool:
    return name.startswith(UNMANAGED_TABLE_PREFIXES)


def create_engine(
    database_url: str,
    *,
    echo: bool = False,
    wal_limit_bytes: int = SQLITE_WAL_LIMIT_BYTES,
    mmap_bytes: int = SQLITE_MMAP_BYTES,
) -> AsyncEngine:
    url = make_url(database_url)
    kwargs: dict[str, Any] = {"echo": echo}
    if url.drivername.startswith("sqlite"):
        database = url.database or ":memory:"
        if database != ":memory:":
            Path(database).parent.mkdir(parents=True, exist_ok=True)
        kwargs["async_creator"] = inline_creator(database, timeout=SQLITE_LOCK_TIMEOUT)
        if database != ":memory:":
            # Last in, first out: the next transaction gets the connection that just
            # ran one, whose page cache is the likeliest to be still valid (see
            # `_configure_sqlite`); connections nobody needs stay idle.
            kwargs.update(
                pool_size=SQLITE_POOL_SIZE,
                max_overflow=0,
                pool_timeout=SQLITE_LOCK_TIMEOUT,
                pool_use_lifo=True,
            )
    else:
        kwargs["pool_size"] = 10
        kwargs["max_overflow"] = 20
        kwargs["pool_pre_ping"] = True
    engine = create_async_engine(database_url, **kwargs)
    if url.drivername.startswith("sqlite"):
        _configure_sqlite(engine, wal_limit_bytes, mmap_bytes)
    return engine


def _configure_sqlite(engine: AsyncEngine, wal_limit_bytes: int, mmap_bytes: int) -> None:
    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Let SQLAlchemy's "begin" hook issue BEGIN itself instead of pysqlite.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        # WAL is a property of the database file: switching costs a lock, asking does not.
        cursor.execute("PRAGMA journal_mode")
        if str(cursor.fetchone()[0]).lower() != "wal":
            cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA synchronous=NORMAL")
        # The commit that starts the WAL over also cuts the file back to this size;
        # without it the file keeps the largest size it ever had.
        cursor.execute(f"PRAGMA journal_size_limit={int(wal_limit_bytes)}")
        # A connection's page cache is private and starts over whenever another
        # connection has committed, so with a pool of them nearly every transaction
        # read its pages again, one pread() each. Through a memory map they are read
        # from the OS's page cache, shared by all: on the chat benchmark, server CPU
        # per message at saturation went from 0.41 (one run) to 0.29-0.35 (three).
        cursor.execute(f"PRAGMA mmap_size={int(mmap_bytes)}")
        cursor.close()

    @event.listens_for(engine.sync_engine, "begin")
    def _on_begin(conn: Any) -> None:
        # Option engines (`read_session_factory`) share this pool and this listener.
        sql = "BEGIN" if conn.get_execution_options().get(READ_ONLY) else "BEGIN IMMEDIATE"
        # Most of the time nothing is in the way and BEGIN is one call into SQLite;
        # SQLAlchemy's path (an execution context, the adapter's await) cost ~0.06 ms
        # of a chat transaction's ~0.4. It stays the way to wait for a busy database.
        raw = conn.connection.driver_connection
        if not (isinstance(raw, InlineConnection) and raw.begin_now(sql)):
            conn.exec_driver_sql(sql)


class SnapshotEndingSession(AsyncSession):
    """A SQLite session that ends its transaction when its ``async with`` block ends.

    SQLAlchemy's ``AsyncSession.__aexit__`` closes in a task of its own (so a
    cancelled caller cannot abandon the close halfway), which runs one event loop
    iteration later. Until then the session's transaction stays open: a read
    transaction keeps its WAL snapshot, a write transaction keeps the write lock.
    Under load an iteration takes tens of milliseconds and hundreds of sessions end
    per second, so some snapshot was always open, the automatic checkpoint could
    never let the WAL start over and the file grew without bound (97 MB after a
    chaos run, against a 2 MB database). On our inline driver (`app.sqlite_inline`)
    closing never suspends (rollback and the pool's return are plain calls), so
    there is nothing for the task to protect and the close runs here, at once.
    """

    async def __aexit__(self, type_: Any, value: Any, traceback: Any) -> None:
        await self.close()


def session_factory(engine: AsyncEngine) -> SessionFactory:
    inline = engine.dialect.name == "sqlite"
    session_class = SnapshotEndingSession if inline else AsyncSession
    return async_sessionmaker(engine, class_=session_class, expire_on_commit=False)


def read_session_factory(engine: AsyncEngine) -> SessionFactory:
    """Sessions for requests that only read: a deferred transaction on SQLite."""
    return session_factory(engine.execution_options(**{READ_ONLY: True}))


def engine_from_settings(settings: Settings) -> AsyncEngine:
    return create_engine(
        settings.database_url,
        wal_limit_bytes=settings.sqlite_wal_limit_bytes,
        mmap_bytes=settings.sqlite_mmap_bytes,
    )


@asynccontextmanager
async def session_scope(factory: SessionFactory) -> AsyncIterator[AsyncSession]:
    async with factory() as session:
        yield session
