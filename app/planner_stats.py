"""Statistics for SQLite's query planner where ANALYZE has gathered none.

Without `sqlite_stat1` SQLite prices every index alike: `workspace_id = ?` looks as
selective as `contact_id = ?`. Where two indexes tie, their order in the schema
decides, and that order came from the migrations' iteration over a Python set of
indexes, so it differs from one installation to the next: with one build a
contact merge updated its tickets through the contact's index, with another it
walked the whole workspace (found by comparing the plans of every statement the
test suite sends across builds). The statements that must never walk a workspace
also compare it as an expression (`app.services.sql_dialect.without_index`).

So after migrating, every index without statistics gets estimated ones, written
as ANALYZE would (rows, then rows per value of each leading column), from what
its table and columns are: the history tables (tickets, events, contacts…) are
large, the others small; a workspace matches a tenth of a large table (a
hundredth of a small one), a status or a kind a fifth, a team or an inbox a
fiftieth of a large table, any other id about ten rows, anything else one or
two. They describe a large installation, where a bad plan costs most. Statistics
that ANALYZE gathered (an operator may run it) are kept.
"""

from __future__ import annotations

import sqlite3

# Tables that grow with the history of every workspace; the others (agents, teams,
# inboxes, webhooks, presence rows…) stay small whatever the history.
LARGE_TABLES = frozenset(
    {
        "ticket",
        "ticket_event",
        "contact",
        "contact_identity",
        "attachment",
        "mail_message",
        "outbound_email",
        "call",
        "callback_request",
        "webhook_delivery",
        "audit_log",
        "visitor_presence",
        "idempotency_record",
    }
)
LARGE_ROWS = 1_000_000
SMALL_ROWS = 10_000
# The share of a large table's rows that one value of a column matches. In a small
# table a workspace has a hundredth of the rows (its agents, teams, hooks) and a
# team or an inbox a handful, like any other id.
LARGE_SHARE = {"workspace_id": 0.1, "team_id": 0.02, "inbox_id": 0.02}
SMALL_SHARE = {"workspace_id": 0.01}
LOW_CARDINALITY_SHARE = 0.2
LOW_CARDINALITY = frozenset(
    {
        "status",
        "state",
        "kind",
        "channel",
        "priority",
        "direction",
        "internal",
        "verified",
        "active",
        "event",
        "role",
        "actor_type",
        "source",
        "sent",
    }
)


def matching(column: str, table_rows: int) -> float:
    """Rows of a table of `table_rows` that one value of `column` matches."""
    share = (LARGE_SHARE if table_rows >= LARGE_ROWS else SMALL_SHARE).get(column)
    if share is not None:
        return table_rows * share
    if column in LOW_CARDINALITY:
        return table_rows * LOW_CARDINALITY_SHARE
    if column == "id" or column.endswith("_id"):
        return 10.0
    return 2.0


def estimate(table: str, columns: list[str], unique: bool) -> str:
    """An `sqlite_stat1.stat` value: rows, then rows per value of each prefix."""
    total = LARGE_ROWS if table in LARGE_TABLES else SMALL_ROWS
    per_value: list[int] = []
    rows = float(total)
    for column in columns:
        rows = max(1.0, rows * matching(column, total) / total)
        per_value.append(round(rows))
    if unique and per_value:
        per_value[-1] = 1
    return " ".join(str(n) for n in [total, *per_value])


def _tables(conn: sqlite3.Connection) -> list[str]:
    rows = conn.execute(
        "SELECT name FROM sqlite_master WHERE type = 'table'"
        " AND name NOT LIKE 'sqlite_%' AND name NOT LIKE 'fts_%' AND name != 'alembic_version'"
    )
    return [str(row[0]) for row in rows]


def fill_missing(path: str) -> int:
    """Estimate statistics for each index of the database at `path` that has none;
    how many were written."""
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.execute("ANALYZE sqlite_master")  # creates sqlite_stat1 if missing
        known = {(str(t), str(i)) for t, i in conn.execute("SELECT tbl, idx FROM sqlite_stat1")}
        written = 0
        conn.execute("BEGIN IMMEDIATE")
        for table in _tables(conn):
            for _seq, index, unique, *_ in conn.execute(f'PRAGMA index_list("{table}")').fetchall():
                if (table, str(index)) in known:
                    continue
                columns = [
                    str(row[2]) for row in conn.execute(f'PRAGMA index_info("{index}")').fetchall()
                ]
                if not columns or any(c == "None" for c in columns):
                    continue  # an expression index: nothing to say about it
                conn.execute(
                    "INSERT INTO sqlite_stat1 (tbl, idx, stat) VALUES (?, ?, ?)",
                    (table, str(index), estimate(table, columns, bool(unique))),
                )
                written += 1
        conn.execute("COMMIT")
        # Connections opened from now on read them; this one reloads its own.
        conn.execute("ANALYZE sqlite_master")
        return written
    finally:
        conn.close()
