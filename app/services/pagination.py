"""Opaque cursors for lists ordered by id: clients pass back what they were given."""

from __future__ import annotations

import base64
from collections.abc import Callable, Sequence
from typing import TypeVar

from app.services.errors import Invalid

MAX_ID = 2**63 - 1
T = TypeVar("T")


def encode_id_cursor(last_id: int) -> str:
    return base64.urlsafe_b64encode(f"id:{last_id}".encode()).decode().rstrip("=")


def decode_id_cursor(cursor: str | None) -> int | None:
    if not cursor:
        return None
    try:
        raw = base64.urlsafe_b64decode((cursor + "=" * (-len(cursor) % 4)).encode()).decode()
    except (ValueError, UnicodeDecodeError):
        raise Invalid("cursor is not valid") from None
    kind, _, value = raw.partition(":")
    if kind != "id" or not value.isdigit() or not 0 < int(value) <= MAX_ID:
        raise Invalid("cursor is not valid")
    return int(value)


def page_of(
    rows: Sequence[T], limit: int, key: Callable[[T], int | None]
) -> tuple[list[T], str | None]:
    """`rows` was fetched with limit + 1; trims it and returns the next cursor."""
    if len(rows) <= limit:
        return list(rows), None
    kept = list(rows[:limit])
    last = key(kept[-1])
    return kept, encode_id_cursor(last) if last is not None else None
