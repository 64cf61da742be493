"""Storage tests drive the services and the database directly: an AppContext without
the web app, channels or background workers (they would only add noise here)."""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator

import pytest

from app.context import AppContext
from app.settings import Settings


@pytest.fixture
async def ctx(settings: Settings) -> AsyncIterator[AppContext]:
    context = AppContext(settings)
    await context.start([])
    try:
        yield context
    finally:
        await context.stop()


def sqlite_tables(conn: sqlite3.Connection, *, skip: tuple[str, ...] = ()) -> list[str]:
    """The tables of a SQLite file by name, without SQLite's own and those whose name
    starts with one of `skip`."""
    names = conn.execute("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")
    return [name for (name,) in names if not name.startswith(("sqlite_", *skip))]
