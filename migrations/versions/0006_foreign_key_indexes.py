"""an index on every foreign key column no index led with

Deleting a row makes the database find the rows that refer to it, for ON DELETE
actions and for the plain references it must refuse. Without an index on the
referring column that is a scan of the whole table, once per deleted row:
erasing a ticket scanned `attachment`, `mail_message` and `outbound_email` once
per event, and the whole `ticket` table for `merged_into_id`. A test now checks
that every foreign key column leads some index. Downgrading drops them again.

Revision ID: 0006
Revises: 0005
"""

from __future__ import annotations

from collections.abc import Sequence

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
    ("call", "contact_id"),
    ("call", "inbox_id"),
    ("call", "recording_attachment_id"),
    ("call", "team_id"),
    ("callback_request", "agent_id"),
    ("callback_request", "contact_id"),
    ("callback_request", "inbox_id"),
    ("callback_request", "team_id"),
    ("contact", "merged_into_id"),
    ("inbox", "team_id"),
    ("mail_message", "event_id"),
    ("outbound_email", "event_id"),
    ("outbound_email", "mail_id"),
    ("ticket", "inbox_id"),
    ("ticket", "merged_into_id"),
    ("visitor_presence", "inbox_id"),
]


def upgrade() -> None:
    for table, column in COLUMNS:
        op.create_index(f"ix_{table}_{column}", table, [column])


def downgrade() -> None:
    for table, column in reversed(COLUMNS):
        op.drop_index(f"ix_{table}_{column}", table_name=table)
