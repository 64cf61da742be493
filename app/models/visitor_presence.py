"""Widget visitors with an open websocket, shared by every app process through the database.

One row per widget connection, refreshed by its node's heartbeat and deleted on
close; rows of a node that died go stale and are swept. The email outbox asks it
whether a chat customer would see an agent's answer live, or needs it by email.
"""

from __future__ import annotations

from datetime import datetime

from sqlmodel import Field, SQLModel

from app.models.base import created_at_field


class VisitorPresence(SQLModel, table=True):
    __tablename__ = "visitor_presence"

    id: str = Field(primary_key=True, max_length=64)  # the connection id
    workspace_id: int = Field(foreign_key="workspace.id", index=True, ondelete="CASCADE")
    inbox_id: int = Field(index=True, foreign_key="inbox.id", ondelete="CASCADE")
    visitor_id: str = Field(max_length=64, index=True)
    # Known once the visitor has a contact (first message or verified identity).
    contact_id: int | None = Field(
        default=None, foreign_key="contact.id", index=True, ondelete="CASCADE"
    )
    node: str = Field(max_length=64, index=True)
    heartbeat_at: datetime = created_at_field()
