"""Contacts (customers) and the identities that recognise them on each channel."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import UniqueConstraint
from sqlmodel import Field, SQLModel

from app.models.base import created_at_field, json_field, never_reused_ids, not_null_index


class Contact(SQLModel, table=True):
    __table_args__ = (not_null_index("contact", "merged_into_id"), never_reused_ids())

    id: int | None = Field(default=None, primary_key=True)
    workspace_id: int = Field(foreign_key="workspace.id", index=True, ondelete="CASCADE")
    name: str = Field(default="", max_length=200)
    email: str | None = Field(default=None, max_length=254, index=True)
    phone: str | None = Field(default=None, max_length=64)
    custom_fields: dict[str, Any] = json_field()
    merged_into_id: int | None = Field(default=None, foreign_key="contact.id")
    created_at: datetime = created_at_field()
    updated_at: datetime = created_at_field()


class IdentityKind(StrEnum):
    email = "email"
    visitor = "visitor"
    external = "external"


class ContactIdentity(SQLModel, table=True):
    __tablename__ = "contact_identity"
    __table_args__ = (UniqueConstraint("workspace_id", "kind", "value"), never_reused_ids())

    id: int | None = Field(default=None, primary_key=True)
    workspace_id: int = Field(foreign_key="workspace.id", index=True, ondelete="CASCADE")
    contact_id: int = Field(foreign_key="contact.id", index=True, ondelete="CASCADE")
    kind: IdentityKind
    value: str = Field(max_length=254)
    verified: bool = Field(default=False)
    created_at: datetime = created_at_field()
