"""Attachment metadata."""

from __future__ import annotations

from pydantic import BaseModel


class AttachmentOut(BaseModel):
    id: int
    ticket_id: int | None
    filename: str
    content_type: str
    size: int
    sha256: str
    inline: bool
    content_id: str | None
    created_at: str
