"""Contact shapes."""

from __future__ import annotations

from pydantic import BaseModel, Field

from app.models import IdentityKind
from app.web.api.schemas.common import CustomFields, Email, ObjectId, Strict


class IdentityIn(Strict):
    kind: IdentityKind = Field(description="email, visitor (widget visitor id) or external")
    value: str = Field(min_length=1, max_length=254)
    verified: bool = Field(default=False, description="Proven by a signed identity or a login.")


class IdentityOut(BaseModel):
    id: int
    kind: IdentityKind
    value: str
    verified: bool


class ContactCreate(Strict):
    name: str = Field(default="", max_length=200)
    email: Email | None = Field(default=None, description="Also added as an email identity.")
    phone: str | None = Field(default=None, max_length=64)
    external_id: str | None = Field(
        default=None, min_length=1, max_length=254, description="Your system's id for the person."
    )
    custom_fields: CustomFields = Field(default_factory=dict)
    identities: list[IdentityIn] = Field(default_factory=list, max_length=20)


class ContactUpdate(Strict):
    name: str | None = Field(default=None, max_length=200)
    email: Email | None = Field(
        default=None, description="New primary address; also added as an identity."
    )
    phone: str | None = Field(default=None, max_length=64)
    custom_fields: CustomFields | None = None


class ContactOut(BaseModel):
    id: int
    name: str
    email: str | None
    phone: str | None
    custom_fields: dict[str, object]
    merged_into_id: int | None = Field(description="Set when this contact was merged away.")
    created_at: str
    updated_at: str
    identities: list[IdentityOut]


class ContactMerge(Strict):
    source_contact_id: ObjectId = Field(
        description="Its identities and tickets move to this contact; it is kept as a pointer."
    )
