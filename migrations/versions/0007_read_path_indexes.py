"""indexes for read paths that grew with a workspace's history

Found by timing the REST API and the console against a workspace of 50 000
tickets and 380 000 events on SQLite (no statistics, so the planner walks the
workspace's `(workspace_id, updated_at)` index unless a better one exists):

- the console's "mine" and "unassigned" views (an assignee, or none, and some
  statuses) read the whole workspace: `(assignee_id, status)` replaces the
  plain `assignee_id` index, which it also stands in for as the foreign key's;
- `sort=created_at` sorted every ticket of the workspace: `(workspace_id,
  created_at, id)` serves it as `(workspace_id, updated_at, id)` serves the default;
- a webhook's delivery log sorted all the workspace's deliveries:
  `(webhook_id, created_at, id)` replaces the plain `webhook_id` index.

Revision ID: 0007
Revises: 0006
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0007"
down_revision: str | Sequence[str] | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index("ix_ticket_assignee_status", "ticket", ["assignee_id", "status"])
    op.drop_index("ix_ticket_assignee_id", table_name="ticket")
    op.create_index("ix_ticket_ws_created", "ticket", ["workspace_id", "created_at", "id"])
    op.create_index(
        "ix_webhook_delivery_webhook_created",
        "webhook_delivery",
        ["webhook_id", "created_at", "id"],
    )
    op.drop_index("ix_webhook_delivery_webhook_id", table_name="webhook_delivery")


def downgrade() -> None:
    op.create_index("ix_webhook_delivery_webhook_id", "webhook_delivery", ["webhook_id"])
    op.drop_index("ix_webhook_delivery_webhook_created", table_name="webhook_delivery")
    op.drop_index("ix_ticket_ws_created", table_name="ticket")
    op.create_index("ix_ticket_assignee_id", "ticket", ["assignee_id"])
    op.drop_index("ix_ticket_assignee_status", table_name="ticket")
