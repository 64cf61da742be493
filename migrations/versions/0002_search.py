"""full-text search over ticket subjects and timeline bodies

Hand-written: autogenerate cannot see FTS5 virtual tables, triggers or
expression indexes. Everything here is named with the ``fts_`` prefix, which
migrations/env.py excludes from autogenerate comparisons.

SQLite: two external-content FTS5 tables (the text stays in ``ticket`` and
``ticket_event``; FTS5 stores only the index) kept in sync by triggers.
CAUTION for later revisions: a batch ("move and copy") alteration of ``ticket``
or ``ticket_event`` on SQLite recreates the table and silently drops its
triggers; such a revision must re-create the ``fts_*`` triggers below.

PostgreSQL: GIN expression indexes on ``to_tsvector('simple', …)``; the search
service uses exactly these expressions so the planner can match them.

Both backends use the same word rules on purpose: case-insensitive, no
stemming, diacritics significant (PostgreSQL's ``simple`` configuration has no
accent folding without the unaccent extension, so SQLite does not fold either).

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0002"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# (fts table, content table, indexed column)
SQLITE_SOURCES = (("fts_ticket", "ticket", "subject"), ("fts_ticket_event", "ticket_event", "body"))

PG_INDEXES = (
    ("fts_ticket_subject", "ticket", "subject"),
    ("fts_ticket_event_body", "ticket_event", "body"),
)


def _sqlite_upgrade() -> None:
    for fts, table, column in SQLITE_SOURCES:
        op.execute(
            f"CREATE VIRTUAL TABLE {fts} USING fts5({column}, content='{table}', "
            f"content_rowid='id', tokenize='unicode61 remove_diacritics 0')"
        )
        op.execute(
            f"CREATE TRIGGER {fts}_ai AFTER INSERT ON {table} BEGIN "
            f"INSERT INTO {fts}(rowid, {column}) VALUES (new.id, new.{column}); END"
        )
        op.execute(
            f"CREATE TRIGGER {fts}_ad AFTER DELETE ON {table} BEGIN "
            f"INSERT INTO {fts}({fts}, rowid, {column}) "
            f"VALUES ('delete', old.id, old.{column}); END"
        )
        # Only a change of the indexed text touches the index (seq/status updates do not).
        op.execute(
            f"CREATE TRIGGER {fts}_au AFTER UPDATE OF {column} ON {table} BEGIN "
            f"INSERT INTO {fts}({fts}, rowid, {column}) "
            f"VALUES ('delete', old.id, old.{column}); "
            f"INSERT INTO {fts}(rowid, {column}) VALUES (new.id, new.{column}); END"
        )
        # Index the rows that exist already.
        op.execute(f"INSERT INTO {fts}({fts}) VALUES ('rebuild')")


def _sqlite_downgrade() -> None:
    for fts, _table, _column in SQLITE_SOURCES:
        for suffix in ("ai", "ad", "au"):
            op.execute(f"DROP TRIGGER IF EXISTS {fts}_{suffix}")
        op.execute(f"DROP TABLE IF EXISTS {fts}")


def _pg_upgrade() -> None:
    for name, table, column in PG_INDEXES:
        op.execute(
            f"CREATE INDEX {name} ON {table} USING gin (to_tsvector('simple'::regconfig, {column}))"
        )


def _pg_downgrade() -> None:
    for name, _table, _column in PG_INDEXES:
        op.execute(f"DROP INDEX IF EXISTS {name}")


def upgrade() -> None:
    dialect = op.get_bind().dialect.name
    if dialect == "sqlite":
        _sqlite_upgrade()
    elif dialect == "postgresql":
        _pg_upgrade()
    else:
        raise NotImplementedError(f"full-text search is not implemented for {dialect}")


def downgrade() -> None:
    dialect = op.get_bind().dialect.name
    if dialect == "sqlite":
        _sqlite_downgrade()
    elif dialect == "postgresql":
        _pg_downgrade()
