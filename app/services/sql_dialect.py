"""Which database a session talks to, for the few statements that differ."""

from __future__ import annotations

from typing import Any

from sqlmodel.ext.asyncio.session import AsyncSession


def dialect_of(session: AsyncSession) -> str:
    """`sqlite` or `postgresql`."""
    return session.get_bind().dialect.name


def is_postgres(session: AsyncSession) -> bool:
    return dialect_of(session) == "postgresql"


def without_index(session: AsyncSession, column: Any) -> Any:
    """`column`, on SQLite as an expression no index can serve (`column + 0`).

    SQLite's planner knows how many rows `workspace_id = ?` matches only from
    statistics: the estimated ones of `app.planner_stats`, or an operator's ANALYZE,
    which may describe a small database. On a statement that must never walk a
    workspace (a contact's tickets, a search's matches, an agent's open chats), the
    workspace as an expression leaves the selective index as the only way in,
    whatever the statistics say. PostgreSQL gathers its own and gets the column."""
    return column + 0 if dialect_of(session) == "sqlite" else column
