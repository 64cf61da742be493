"""an index on every foreign key column no index led with

Deleting a row makes the database find the rows that refer to it, for ON DELETE
actions and for the plain references it must refuse. Without an index on the
referring column that is a scan of the whole table, once per deleted row:
erasing a ticket scanned `attachment`, `mail_message` and `outbound_email` once
per event, and the whole `ticket` table for `merged_into_id`. A test now checks
that every foreign key column leads some index, except four whose index would
tempt SQLite's planner (it has no statistics) away from a better one on a hot
query: `ticket.inbox_id` (see `app.models.ticket`) and `call.contact_id`,
`call.inbox_id`, `call.team_id` (the voice queue's `(workspace_id, state)`). The `merged_into_id` indexes cover only the merged rows, so
that queries for unmerged rows never pick them. Downgrading drops them again.

Revision ID: 0006
Revises: 0005
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | Sequence[str] | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# (table, column): each gets ix_<table>_<column>, the models' name for it.
COLUMNS = [
    ("agentteam", "team_id"),
    ("api_token", "agent_id"),
    ("attachment", "event_id"),
    ("call", "callback_id"),
    ("call", "recording_attachment_id"),
    ("callback_request", "agent_id"),
    ("callback_request", "contact_id"),
    ("callback_request", "inbox_id"),
    ("callback_request", "team_id"),
    ("inbox", "team_id"),
    ("mail_message", "event_id"),
    ("outbound_email", "event_id"),
    ("outbound_email", "mail_id"),
    ("visitor_presence", "inbox_id"),
]


# Nearly always NULL: indexed where set (`app.models.base.not_null_index`).
MERGED = [("contact", "merged_into_id"), ("ticket", "merged_into_id")]


def upgrade() -> None:
    for table, column in COLUMNS:
        op.create_index(f"ix_{table}_{column}", table, [column])
    for table, column in MERGED:
        where = sa.text(f"{column} IS NOT NULL")
        op.create_index(
            f"ix_{table}_{column}", table, [column], sqlite_where=where, postgresql_where=where
        )


def downgrade() -> None:
    for table, column in reversed(COLUMNS + MERGED):
        op.drop_index(f"ix_{table}_{column}", table_name=table)
