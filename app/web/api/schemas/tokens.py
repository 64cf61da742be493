"""API token shapes. The token itself is returned once, by the create call."""

from __future__ import annotations

from pydantic import BaseModel, Field

from app.models import Role
from app.web.api.schemas.common import Strict


class TokenCreate(Strict):
    name: str = Field(min_length=1, max_length=100)
    role: Role = Role.agent


class TokenOut(BaseModel):
    id: int
    name: str
    prefix: str = Field(description="The first characters, to recognise a token.")
    role: Role
    created_at: str
    last_used_at: str | None
    revoked_at: str | None


class TokenCreated(TokenOut):
    token: str = Field(description="The bearer token. Shown only now; store it safely.")
