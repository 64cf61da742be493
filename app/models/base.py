"""Column helpers shared by every table."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import JSON, DateTime, Index, TypeDecorator, text
from sqlalchemy.engine import Dialect
from sqlmodel import Column, Field


def never_reused_ids() -> dict[str, Any]:
    """Table options for a table whose ids leave the process (REST, webhooks, the widget
    and voice protocols, URLs) and whose rows can be deleted.

    SQLite gives a new row the largest id in the table plus one, so once the newest row
    is deleted the next insert gets its id, and an integration holding "ticket 41"
    would later find another ticket (of any workspace) under it. AUTOINCREMENT makes
    ids only grow, as PostgreSQL's sequences do (the option means nothing there). It
    costs one `sqlite_sequence` update per INSERT, so tables whose rows are never
    deleted or whose ids stay inside do without. Adding it to an existing table takes
    a rebuild on SQLite (see migration 0004).
    """
    return {"sqlite_autoincrement": True}


def not_null_index(table: str, column: str) -> Index:
    """`ix_<table>_<column>` over the rows where `column` is set, for a reference that
    is nearly always NULL (`merged_into_id`). Deleting a row needs it to find what
    refers to the row (`column = ?` implies NOT NULL, so the index serves); a query
    asking for `column IS NULL` cannot pick it, which a plain index would invite
    on SQLite, where the planner has no statistics to tell how many rows are NULL."""
    where = text(f"{column} IS NOT NULL")
    return Index(f"ix_{table}_{column}", column, sqlite_where=where, postgresql_where=where)


def utcnow() -> datetime:
    return datetime.now(UTC)


class TZDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes on every backend (SQLite stores them naive)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def created_at_field() -> Any:
    return Field(default_factory=utcnow, sa_type=TZDateTime, nullable=False)


def datetime_field(*, index: bool = False) -> Any:
    return Field(default=None, sa_type=TZDateTime, nullable=True, index=index)


def json_field(default_factory: Any = dict) -> Any:
    return Field(default_factory=default_factory, sa_column=Column(JSON, nullable=False))
