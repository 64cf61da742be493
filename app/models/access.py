"""API tokens, idempotency records and the admin audit log."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import UniqueConstraint
from sqlmodel import Field, SQLModel

from app.models.base import created_at_field, datetime_field, json_field
from app.models.workspace import Role


class ApiToken(SQLModel, table=True):
    __tablename__ = "api_token"

    id: int | None = Field(default=None, primary_key=True)
    workspace_id: int = Field(foreign_key="workspace.id", index=True, ondelete="CASCADE")
    name: str = Field(max_length=100)
    # sha256 of a 256-bit random token: fast to check per request, useless if leaked.
    token_hash: str = Field(max_length=64, unique=True, index=True)
    prefix: str = Field(max_length=16)
    role: Role = Field(default=Role.agent)
    agent_id: int | None = Field(
        index=True, default=None, foreign_key="agent.id", ondelete="SET NULL"
    )
    created_at: datetime = created_at_field()
    last_used_at: datetime | None = datetime_field()
    revoked_at: datetime | None = datetime_field()


class IdempotencyRecord(SQLModel, table=True):
    __tablename__ = "idempotency_record"
    __table_args__ = (UniqueConstraint("workspace_id", "key"),)

    id: int | None = Field(default=None, primary_key=True)
    workspace_id: int = Field(foreign_key="workspace.id", index=True, ondelete="CASCADE")
    key: str = Field(max_length=255)
    request_hash: str = Field(max_length=64)
    status_code: int
    response: dict[str, Any] = json_field()
    created_at: datetime = created_at_field()


class AuditLog(SQLModel, table=True):
    __tablename__ = "audit_log"

    id: int | None = Field(default=None, primary_key=True)
    workspace_id: int = Field(foreign_key="workspace.id", index=True, ondelete="CASCADE")
    actor_type: str = Field(max_length=16)
    actor_id: int | None = None
    action: str = Field(max_length=64)
    target_type: str = Field(max_length=32)
    target_id: int | None = None
    details: dict[str, Any] = json_field()
    created_at: datetime = created_at_field()
