"""Writes webhook deliveries into the outbox in the caller's transaction.

Delivery itself (signing, HTTP, retries) is the worker's job in
`app.services.webhooks`; enqueueing must never wait on the network.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

from sqlalchemy import bindparam
from sqlmodel import select

from app.events import UnitOfWork
from app.lean_sql import Lean
from app.models import Webhook, WebhookDelivery
from app.models.base import utcnow
from app.services.row_insert import core_connection

WEBHOOK_EVENTS = (
    "ticket.created",
    "ticket.updated",
    "ticket.event.created",
    "ticket.deleted",
    "contact.created",
    "contact.updated",
)

# Set by the worker so a freshly committed delivery is sent without waiting a poll.
_wakeups: list[Any] = []


def register_wakeup(callback: Any) -> None:
    _wakeups.append(callback)


def unregister_wakeup(callback: Any) -> None:
    if callback in _wakeups:
        _wakeups.remove(callback)


def _wake() -> None:
    for callback in tuple(_wakeups):
        callback()


def render_body(delivery_id: str, event: str, workspace_id: int, data: dict[str, Any]) -> str:
    envelope = {
        "id": delivery_id,
        "event": event,
        "workspace_id": workspace_id,
        "created_at": utcnow().isoformat(),
        "data": data,
    }
    return json.dumps(envelope, separators=(",", ":"), default=str)


# Built once: on a hot write path, building the statement costs more than running it.
_ACTIVE_HOOKS = Lean(
    select(Webhook.id, Webhook.events).where(
        Webhook.workspace_id == bindparam("workspace_id"), Webhook.active
    )
)


async def enqueue(uow: UnitOfWork, workspace_id: int, event: str, data: dict[str, Any]) -> int:
    """Queue `event` for every active webhook of the workspace that subscribed to it."""
    assert event in WEBHOOK_EVENTS, event
    # Looked up once per transaction and workspace: a batch announces many events.
    cache: dict[int, list[tuple[int, list[str]]]] = uow.session.info.setdefault(
        "webhooks_by_ws", {}
    )
    if workspace_id not in cache:
        connection = await core_connection(uow.session)
        params = {"workspace_id": workspace_id}
        cache[workspace_id] = [
            (hook_id, events) for hook_id, events in await _ACTIVE_HOOKS.execute(connection, params)
        ]
    count = 0
    for hook_id, events in cache[workspace_id]:
        if events and event not in events:
            continue
        delivery_id = str(uuid.uuid4())
        uow.session.add(
            WebhookDelivery(
                id=delivery_id,
                workspace_id=workspace_id,
                webhook_id=hook_id,
                event=event,
                body=render_body(delivery_id, event, workspace_id, data),
            )
        )
        count += 1
    if count:
        uow.after_commit.append(_wake)
    return count
