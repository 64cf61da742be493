"""inbound mail sources in the row: mail_message.raw_data

Small inbound mails keep their original bytes in their row instead of a file of
their own (`HELPDESK_EMAIL_INLINE_RAW_BYTES`); existing rows keep their files.
Downgrading drops the column: the sources stored in it are lost.

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | Sequence[str] | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # A plain ADD COLUMN on both backends (no batch copy of the table on SQLite).
    op.add_column("mail_message", sa.Column("raw_data", sa.LargeBinary(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("mail_message", schema=None) as batch_op:
        batch_op.drop_column("raw_data")
