"""Canned responses: reusable reply texts an agent inserts with the `/` picker."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import UniqueConstraint
from sqlmodel import Field, SQLModel

from app.models.base import created_at_field, never_reused_ids


class CannedResponse(SQLModel, table=True):
    __tablename__ = "canned_response"
    __table_args__ = (UniqueConstraint("workspace_id", "shortcut"), never_reused_ids())

    id: int | None = Field(default=None, primary_key=True)
    workspace_id: int = Field(foreign_key="workspace.id", index=True, ondelete="CASCADE")
    # What the agent types after "/" to find it, e.g. "refund".
    shortcut: str = Field(max_length=64)
    title: str = Field(max_length=200)
    body: str = Field(max_length=10_000)
    created_at: datetime = created_at_field()
    updated_at: datetime = created_at_field()
