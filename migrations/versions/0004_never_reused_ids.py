"""ids are never reused on SQLite: AUTOINCREMENT on tables whose rows can be deleted

SQLite gives a new row the largest id in its table plus one, so the id of a deleted
newest row went to the next insert: an integration that stored "ticket 41" could later
see another ticket (of another workspace, even) under it. AUTOINCREMENT keeps ids
growing (`app.models.base.never_reused_ids`); PostgreSQL's sequences never reuse, and
this revision does nothing there.

SQLite cannot add AUTOINCREMENT to a table: each one is rebuilt ("move and copy" batch
mode: create, copy the rows with their ids, drop, rename), which takes a while on a
large database. A rebuild drops the table's triggers; those present before (the
full-text search triggers of 0002 on ``ticket`` and ``ticket_event``) are re-created as
they were. The full-text index itself stays valid: it is keyed by the ids, which are
kept. migrations/env.py turns foreign key enforcement off while migrating, or dropping a
table would delete the rows referencing it.

Each table's counter (``sqlite_sequence``) starts at the largest id still in the table
or named by the audit log (which records deleted tickets, contacts, teams, inboxes,
webhooks and canned responses), so ids deleted before this revision are not reused
either where the log remembers them.

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | Sequence[str] | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Ids seen outside the process, rows deletable (directly, or with their ticket, contact
# or inbox). Not here: workspaces, agents and API tokens are never deleted; the audit
# log is append-only; idempotency records keep their ids inside.
TABLES = (
    "team",
    "inbox",
    "contact",
    "contact_identity",
    "ticket",
    "ticket_event",
    "attachment",
    "call",
    "callback_request",
    "mail_message",
    "outbound_email",
    "webhook",
    "canned_response",
)


def _rebuild(table: str, *, autoincrement: bool) -> None:
    bind = op.get_bind()
    triggers = bind.execute(
        sa.text("SELECT sql FROM sqlite_master WHERE type = 'trigger' AND tbl_name = :t"),
        {"t": table},
    ).scalars()
    kept = [sql for sql in triggers if sql]
    with op.batch_alter_table(
        table, recreate="always", table_kwargs={"sqlite_autoincrement": autoincrement}
    ):
        pass
    for sql in kept:
        op.execute(sql)


def _seed_counter(table: str) -> None:
    """Start the table's counter past every id it has had that is still known."""
    known = [f"SELECT max(id) AS n FROM {table}"]
    known.append("SELECT max(target_id) FROM audit_log WHERE target_type = :t")
    if table == "contact":
        # Erasing a contact takes the contacts merged into it along (listed in details).
        known.append(
            "SELECT max(j.value) FROM audit_log, json_each(audit_log.details, '$.merged') AS j"
            " WHERE audit_log.action = 'contact.delete'"
        )
    bind = op.get_bind()
    sql = f"SELECT max(n) FROM ({' UNION ALL '.join(known)})"
    top = bind.execute(sa.text(sql), {"t": table}).scalar()
    if top is None:
        return
    # Copying the rows set the counter to the largest id copied; only ever raise it.
    params = {"t": table, "top": int(top)}
    op.execute(
        sa.text("UPDATE sqlite_sequence SET seq = :top WHERE name = :t AND seq < :top").bindparams(
            **params
        )
    )
    op.execute(
        sa.text(
            "INSERT INTO sqlite_sequence (name, seq) SELECT :t, :top"
            " WHERE NOT EXISTS (SELECT 1 FROM sqlite_sequence WHERE name = :t)"
        ).bindparams(**params)
    )


def upgrade() -> None:
    if op.get_bind().dialect.name != "sqlite":
        return  # PostgreSQL: sequences never hand out an id twice
    for table in TABLES:
        _rebuild(table, autoincrement=True)
        _seed_counter(table)


def downgrade() -> None:
    if op.get_bind().dialect.name != "sqlite":
        return
    for table in TABLES:
        # Dropping the AUTOINCREMENT table dropped its sqlite_sequence row too.
        _rebuild(table, autoincrement=False)
