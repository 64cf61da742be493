"""Shapes shared by several resources."""

from __future__ import annotations

from typing import Any, Generic, TypeVar

from pydantic import BaseModel, ConfigDict, Field

T = TypeVar("T")


class Strict(BaseModel):
    """Request bodies reject unknown fields: a typo should fail loudly, not be ignored."""

    model_config = ConfigDict(extra="forbid")


class Page(BaseModel, Generic[T]):
    items: list[T]
    next_cursor: str | None = Field(
        default=None, description="Pass as `cursor` to get the next page; null on the last page."
    )


class Author(BaseModel):
    type: str = Field(description="agent, contact, system or api")
    id: int | None = None
    name: str


class EventOut(BaseModel):
    id: int
    ticket_id: int
    seq: int = Field(description="Position in the ticket's timeline: 1, 2, 3 … with no gaps.")
    kind: str
    author: Author
    body: str
    payload: dict[str, Any]
    internal: bool
    client_id: str | None
    created_at: str


class Deleted(BaseModel):
    deleted: bool = True
