"""Workspace (tenant) and the people and entry points that belong to it."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import UniqueConstraint
from sqlmodel import Field, SQLModel

from app.models.base import created_at_field, datetime_field, json_field, never_reused_ids


class Workspace(SQLModel, table=True):
    id: int | None = Field(default=None, primary_key=True)
    slug: str = Field(max_length=64, unique=True, index=True)
    name: str = Field(max_length=200)
    ticket_counter: int = Field(default=0)
    settings: dict[str, Any] = json_field()
    created_at: datetime = created_at_field()


class Role(StrEnum):
    admin = "admin"
    supervisor = "supervisor"
    agent = "agent"

    @property
    def rank(self) -> int:
        return _RANKS[self.value]

    def at_least(self, other: Role) -> bool:
        return self.rank >= other.rank


# Asked for every bus message offered to every agent console: built once.
_RANKS = {"agent": 1, "supervisor": 2, "admin": 3}


class Team(SQLModel, table=True):
    __table_args__ = (UniqueConstraint("workspace_id", "name"), never_reused_ids())

    id: int | None = Field(default=None, primary_key=True)
    workspace_id: int = Field(foreign_key="workspace.id", index=True, ondelete="CASCADE")
    name: str = Field(max_length=100)
    created_at: datetime = created_at_field()


class AgentTeam(SQLModel, table=True):
    agent_id: int = Field(foreign_key="agent.id", primary_key=True, ondelete="CASCADE")
    team_id: int = Field(index=True, foreign_key="team.id", primary_key=True, ondelete="CASCADE")


def default_capacity() -> dict[str, int]:
    return {"chat": 3, "voice": 1, "email": 50}


class Agent(SQLModel, table=True):
    __table_args__ = (UniqueConstraint("workspace_id", "email"),)

    id: int | None = Field(default=None, primary_key=True)
    workspace_id: int = Field(foreign_key="workspace.id", index=True, ondelete="CASCADE")
    email: str = Field(max_length=254, index=True)
    name: str = Field(max_length=200)
    password_hash: str = Field(default="", max_length=255)
    role: Role = Field(default=Role.agent)
    skills: list[str] = json_field(list)
    languages: list[str] = json_field(list)
    time_zone: str = Field(default="UTC", max_length=64)
    locale: str = Field(default="en", max_length=8)
    capacity: dict[str, int] = json_field(default_capacity)
    is_active: bool = Field(default=True)
    created_at: datetime = created_at_field()
    last_seen_at: datetime | None = datetime_field()


class InboxKind(StrEnum):
    widget = "widget"
    email = "email"


class Inbox(SQLModel, table=True):
    __table_args__ = (never_reused_ids(),)

    id: int | None = Field(default=None, primary_key=True)
    workspace_id: int = Field(foreign_key="workspace.id", index=True, ondelete="CASCADE")
    kind: InboxKind
    name: str = Field(max_length=200)
    team_id: int | None = Field(
        index=True, default=None, foreign_key="team.id", ondelete="SET NULL"
    )
    # widget inboxes
    public_key: str | None = Field(default=None, max_length=64, unique=True, index=True)
    allowed_origins: list[str] = json_field(list)
    theme: dict[str, Any] = json_field()
    greeting: str = Field(default="", max_length=500)
    prechat_form: bool = Field(default=False)
    identity_secret: str | None = Field(default=None, max_length=128)
    # email inboxes
    address: str | None = Field(default=None, max_length=254, unique=True, index=True)
    imap: dict[str, Any] = json_field()
    auto_ack: bool = Field(default=False)
    settings: dict[str, Any] = json_field()
    created_at: datetime = created_at_field()
