"""Shapes shared by several resources."""

from __future__ import annotations

from typing import Annotated, Any, Generic, TypeVar

from fastapi import Path, Query
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator

T = TypeVar("T")

# Database ids are signed 64-bit integers; anything outside that range can never name a
# row, and letting it through would overflow the driver (a 500) instead of a clean 404/422.
MAX_ID = 2**63 - 1
ObjectId = Annotated[int, Field(ge=1, le=MAX_ID)]
PathId = Annotated[int, Path(ge=1, le=MAX_ID)]
QueryId = Annotated[int | None, Query(ge=1, le=MAX_ID)]

# Deliberately looser than EmailStr, which refuses special-use domains such as
# `.localhost` and `.test` that dev and demo workspaces use; services normalise.
Email = Annotated[
    str,
    Field(
        min_length=3,
        max_length=254,
        pattern=r"^[^@\s]+@[^@\s]+$",
        json_schema_extra={"format": "email"},
    ),
]

MAX_CUSTOM_FIELDS = 50
MAX_JSON_DEPTH = 8


def _bad_text(value: str) -> bool:
    # NUL is refused by PostgreSQL text columns and lone surrogates cannot be encoded as
    # UTF-8 by any driver: both would surface as a 500 deep in the database layer.
    return "\x00" in value or any("\ud800" <= ch <= "\udfff" for ch in value)


def check_text(value: Any, depth: int = 0) -> None:
    if depth > MAX_JSON_DEPTH + 4:
        raise ValueError(f"JSON nests deeper than {MAX_JSON_DEPTH} levels")
    if isinstance(value, str):
        if _bad_text(value):
            raise ValueError("text must not contain NUL characters or lone surrogates")
    elif isinstance(value, dict):
        for key, item in value.items():
            check_text(key, depth + 1)
            check_text(item, depth + 1)
    elif isinstance(value, list):
        for item in value:
            check_text(item, depth + 1)


def check_query_text(value: str | None) -> str | None:
    if value is not None and _bad_text(value):
        from app.services.errors import Invalid

        raise Invalid("text must not contain NUL characters")
    return value


class Strict(BaseModel):
    """Request bodies reject unknown fields: a typo should fail loudly, not be ignored."""

    model_config = ConfigDict(extra="forbid")

    @model_validator(mode="before")
    @classmethod
    def _clean_text(cls, data: Any) -> Any:
        check_text(data)
        return data


def _check_custom_fields(value: dict[str, Any]) -> dict[str, Any]:
    if len(value) > MAX_CUSTOM_FIELDS:
        raise ValueError(f"at most {MAX_CUSTOM_FIELDS} custom fields")
    for key in value:
        if not 1 <= len(key) <= 64:
            raise ValueError("custom field names must be 1 to 64 characters")
    return value


CustomFields = Annotated[
    dict[str, Any],
    AfterValidator(_check_custom_fields),
    Field(description=f"Free-form JSON, at most {MAX_CUSTOM_FIELDS} keys."),
]


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


Limit = Annotated[int, Query(ge=1, le=200, description="Page size, 1 to 200.")]
Cursor = Annotated[
    str | None, Query(max_length=500, description="`next_cursor` of the previous page.")
]
