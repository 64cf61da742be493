"""indexes for read paths that grew with a workspace's history

Found by timing the REST API and the console against a workspace of 50 000
tickets and 380 000 events on SQLite (no statistics, so the planner walks the
workspace's `(workspace_id, updated_at)` index unless a better one exists):

- the console's "mine" and "unassigned" views (an assignee, or none, newest
  first) walked the whole workspace for a page: `(workspace_id, assignee_id,
  updated_at, id)` reads them in order and stops at the page, however many an
  agent (or the unassigned backlog) holds;
- an agent's active tickets (routing's capacity check, the supervisor's load)
  were read through the agent's whole history: `(assignee_id, status)` replaces
  the plain `assignee_id` index;
- routing's queue of a team (its unassigned chats, oldest first) and a
  visitor's place in it were read through the team's whole history:
  `(team_id, assignee_id, status)` replaces the plain `team_id` index;
- a webhook's delivery log sorted all the workspace's deliveries:
  `(webhook_id, created_at, id)` replaces the plain `webhook_id` index.

On PostgreSQL the indexes build CONCURRENTLY, so a large installation keeps
taking writes while they do.

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


# (name, table, columns) of the new indexes.
ADDED = [
    ("ix_ticket_ws_assignee_updated", "ticket", ["workspace_id", "assignee_id", "updated_at", "id"]),
    ("ix_webhook_delivery_webhook_created", "webhook_delivery", ["webhook_id", "created_at", "id"]),
    ("ix_ticket_assignee_status", "ticket", ["assignee_id", "status"]),
    ("ix_ticket_team_queue", "ticket", ["team_id", "assignee_id", "status"]),
]
# Replaced by an index above that begins with the same column.
REPLACED = [
    ("ix_webhook_delivery_webhook_id", "webhook_delivery", ["webhook_id"]),
    ("ix_ticket_assignee_id", "ticket", ["assignee_id"]),
    ("ix_ticket_team_id", "ticket", ["team_id"]),
]


def _concurrently() -> bool:
    # On PostgreSQL an index on a big table builds without blocking writes to it, which
    # needs a statement of its own outside the migration's transaction.
    return op.get_bind().dialect.name == "postgresql"


def _create(name: str, table: str, columns: list[str]) -> None:
    if _concurrently():
        with op.get_context().autocommit_block():
            op.create_index(name, table, columns, postgresql_concurrently=True)
    else:
        op.create_index(name, table, columns)


def _drop(name: str, table: str) -> None:
    if _concurrently():
        with op.get_context().autocommit_block():
            op.drop_index(name, table_name=table, postgresql_concurrently=True)
    else:
        op.drop_index(name, table_name=table)


def upgrade() -> None:
    for name, table, columns in ADDED:
        _create(name, table, columns)
    for name, table, _columns in REPLACED:
        _drop(name, table)


def downgrade() -> None:
    for name, table, columns in REPLACED:
        _create(name, table, columns)
    for name, table, _columns in reversed(ADDED):
        _drop(name, table)
