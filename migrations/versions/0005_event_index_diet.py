"""ticket_event: drop the single-column indexes the unique ones already cover

`ix_ticket_event_workspace_id` and `ix_ticket_event_ticket_id` duplicate the
leading column of `UNIQUE (workspace_id, client_id)` and `UNIQUE (ticket_id,
seq)`: every lookup and cascade they served uses those. Each stored message
paid two index inserts for them: on SQLite, a batch of 32 messages went from 2.0
to 1.35 ms of CPU without them. Downgrading recreates them.

Revision ID: 0005
Revises: 0004
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0005"
down_revision: str | Sequence[str] | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.drop_index("ix_ticket_event_workspace_id", table_name="ticket_event")
    op.drop_index("ix_ticket_event_ticket_id", table_name="ticket_event")


def downgrade() -> None:
    op.create_index("ix_ticket_event_ticket_id", "ticket_event", ["ticket_id"])
    op.create_index("ix_ticket_event_workspace_id", "ticket_event", ["workspace_id"])
