"""Inbox shapes: widget keys and email addresses."""

from __future__ import annotations

import re
from typing import Any

from pydantic import BaseModel, Field, field_validator

from app.models import InboxKind
from app.web.api.schemas.common import Email, ObjectId, Strict

ORIGIN_RE = re.compile(r"^https?://[A-Za-z0-9.-]+(:\d{1,5})?$")
MAX_ORIGINS = 50
MAX_THEME_KEYS = 20


def _check_origins(value: list[str] | None) -> list[str] | None:
    if value is None:
        return None
    cleaned = []
    for origin in value:
        origin = origin.strip().rstrip("/").lower()
        if not ORIGIN_RE.match(origin):
            raise ValueError(f"{origin!r} is not an origin like https://shop.example.com")
        if origin not in cleaned:
            cleaned.append(origin)
    return cleaned


def _check_theme(value: dict[str, Any] | None) -> dict[str, Any] | None:
    if value is not None and len(value) > MAX_THEME_KEYS:
        raise ValueError(f"at most {MAX_THEME_KEYS} theme keys")
    return value


class InboxCreate(Strict):
    kind: InboxKind
    name: str = Field(min_length=1, max_length=200)
    team_id: ObjectId | None = Field(default=None, description="New tickets go to this team.")
    allowed_origins: list[str] = Field(
        default_factory=list,
        max_length=MAX_ORIGINS,
        description="Widget: sites allowed to embed it, e.g. https://shop.example.com.",
    )
    theme: dict[str, Any] = Field(default_factory=dict, description="Widget colours and texts.")
    greeting: str = Field(default="", max_length=500)
    prechat_form: bool = False
    address: Email | None = Field(default=None, description="Email: the support address.")
    auto_ack: bool = Field(default=False, description="Email: acknowledge new tickets.")

    _origins = field_validator("allowed_origins")(_check_origins)
    _theme = field_validator("theme")(_check_theme)


class InboxUpdate(Strict):
    name: str | None = Field(default=None, min_length=1, max_length=200)
    team_id: ObjectId | None = None
    allowed_origins: list[str] | None = Field(default=None, max_length=MAX_ORIGINS)
    theme: dict[str, Any] | None = None
    greeting: str | None = Field(default=None, max_length=500)
    prechat_form: bool | None = None
    address: Email | None = None
    auto_ack: bool | None = None
    rotate_identity_secret: bool = Field(
        default=False, description="Widget: issue a new identity-verification secret."
    )

    _origins = field_validator("allowed_origins")(_check_origins)
    _theme = field_validator("theme")(_check_theme)


class InboxOut(BaseModel):
    id: int
    kind: InboxKind
    name: str
    team_id: int | None
    public_key: str | None = Field(description="Widget: the key in the embed snippet.")
    allowed_origins: list[str]
    theme: dict[str, Any]
    greeting: str
    prechat_form: bool
    address: str | None = Field(description="Email: the support address.")
    auto_ack: bool
    identity_secret: str | None = Field(
        description="Widget: HMAC secret for verified identities. Only shown to admins."
    )
    created_at: str
