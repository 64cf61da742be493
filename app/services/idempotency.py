"""`Idempotency-Key` records: a retried create returns the first response, stores nothing."""

from __future__ import annotations

import hashlib
import json
from typing import Any

from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession

from app.events import UnitOfWork
from app.models import IdempotencyRecord
from app.services.errors import Conflict, Invalid

MAX_KEY = 255


def request_hash(payload: Any) -> str:
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()


async def lookup(
    session: AsyncSession, workspace_id: int, key: str, payload: Any
) -> IdempotencyRecord | None:
    if not key or len(key) > MAX_KEY:
        raise Invalid(f"Idempotency-Key must be 1 to {MAX_KEY} characters")
    stmt = select(IdempotencyRecord).where(
        IdempotencyRecord.workspace_id == workspace_id, IdempotencyRecord.key == key
    )
    record = (await session.exec(stmt)).first()
    if record is not None and record.request_hash != request_hash(payload):
        raise Conflict("this Idempotency-Key was used with a different request")
    return record


def remember(
    uow: UnitOfWork, workspace_id: int, key: str, payload: Any, status: int, response: Any
) -> None:
    uow.session.add(
        IdempotencyRecord(
            workspace_id=workspace_id,
            key=key,
            request_hash=request_hash(payload),
            status_code=status,
            response=response,
        )
    )
