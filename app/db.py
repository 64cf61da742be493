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

from app.settings import Settings
from app.sqlite_inline import inline_creator

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


def create_engine(database_url: str, *, echo: bool = False) -> AsyncEngine:
    url = make_url(database_url)
    kwargs: dict[str, Any] = {"echo": echo}
    if url.drivername.startswith("sqlite"):
        database = url.database or ":memory:"
        if database != ":memory:":
            Path(database).parent.mkdir(parents=True, exist_ok=True)
        kwargs["async_creator"] = inline_creator(database, timeout=SQLITE_LOCK_TIMEOUT)
        if database != ":memory:":
            kwargs.update(
                pool_size=SQLITE_POOL_SIZE, max_overflow=0, pool_timeout=SQLITE_LOCK_TIMEOUT
            )
    else:
        kwargs["pool_size"] = 10
        kwargs["max_overflow"] = 20
        kwargs["pool_pre_ping"] = True
    engine = create_async_engine(database_url, **kwargs)
    if url.drivername.startswith("sqlite"):
        _configure_sqlite(engine)
    return engine


def _configure_sqlite(engine: AsyncEngine) -> None:
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
        cursor.close()

    @event.listens_for(engine.sync_engine, "begin")
    def _on_begin(conn: Any) -> None:
        # Option engines (`read_session_factory`) share this pool and this listener.
        if conn.get_execution_options().get(READ_ONLY):
            conn.exec_driver_sql("BEGIN")
        else:
            conn.exec_driver_sql("BEGIN IMMEDIATE")


def session_factory(engine: AsyncEngine) -> SessionFactory:
    return async_sessionmaker(engine, class_=AsyncSession, expire_on_commit=False)


def read_session_factory(engine: AsyncEngine) -> SessionFactory:
    """Sessions for requests that only read: a deferred transaction on SQLite."""
    return session_factory(engine.execution_options(**{READ_ONLY: True}))


def engine_from_settings(settings: Settings) -> AsyncEngine:
    return create_engine(settings.database_url)


@asynccontextmanager
async def session_scope(factory: SessionFactory) -> AsyncIterator[AsyncSession]:
    async with factory() as session:
        yield session
