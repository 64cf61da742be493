"""Agent presence for chat routing, shared by every app process through the database.

One `agent_presence` row per open console connection, refreshed by its node's
heartbeat; rows of a node that died go stale and are swept. `agent_routing`
keeps what routing needs across connections: when the agent went offline (for
the requeue grace period) and when they were last given a chat (longest idle).
"""

from __future__ import annotations

from datetime import datetime

from sqlmodel import Field, SQLModel

from app.models.base import created_at_field, datetime_field


class AgentPresence(SQLModel, table=True):
    __tablename__ = "agent_presence"

    id: str = Field(primary_key=True, max_length=36)
    workspace_id: int = Field(foreign_key="workspace.id", index=True, ondelete="CASCADE")
    agent_id: int = Field(foreign_key="agent.id", index=True, ondelete="CASCADE")
    node: str = Field(max_length=64, index=True)
    status: str = Field(max_length=16)
    connected_at: datetime = created_at_field()
    heartbeat_at: datetime = created_at_field()


class AgentRouting(SQLModel, table=True):
    __tablename__ = "agent_routing"

    agent_id: int = Field(foreign_key="agent.id", primary_key=True, ondelete="CASCADE")
    workspace_id: int = Field(foreign_key="workspace.id", index=True, ondelete="CASCADE")
    offline_since: datetime | None = datetime_field()
    last_assigned_at: datetime | None = datetime_field()
