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

    SQLite has no statistics here, so its planner cannot tell that `workspace_id = ?`
    matches most of a table: given a selective index next to a workspace index, it
    may walk the whole workspace instead. Comparing the workspace as an expression
    leaves the selective index as the only way in. PostgreSQL has statistics and
    gets the column itself."""
    return column + 0 if dialect_of(session) == "sqlite" else column
