"""Webhook subscriptions for admins: create, change, delete, test, and the delivery log.

Delivery (signing, HTTP, retries) belongs to the worker in `app.services.webhooks`;
everything here only writes rows, so no request ever waits on a receiver.
"""

from __future__ import annotations

import secrets
import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from app.events import UnitOfWork
from app.models import Role, Webhook, WebhookDelivery
from app.services import audit, webhook_outbox
from app.services.actors import Actor
from app.services.errors import Invalid, NotFound
from app.services.tickets import decode_cursor, encode_cursor
from app.services.timeline import iso

MAX_URL = 2000
MIN_SECRET = 16
MAX_SECRET = 128
MAX_HOOKS_PER_WORKSPACE = 50
TEST_EVENT = "ping"


def check_url(url: str) -> str:
    url = url.strip()
    if len(url) > MAX_URL:
        raise Invalid(f"url is longer than {MAX_URL} characters")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise Invalid("url must be an absolute http:// or https:// URL")
    if parts.username or parts.password:
        raise Invalid("url must not carry credentials; verify the signature instead")
    return url


def check_events(events: Sequence[str]) -> list[str]:
    unknown = sorted(set(events) - set(webhook_outbox.WEBHOOK_EVENTS))
    if unknown:
        raise Invalid(
            "unknown events: " + ", ".join(unknown),
            {"allowed": list(webhook_outbox.WEBHOOK_EVENTS)},
        )
    return sorted(set(events))


def check_secret(secret: str) -> str:
    if not MIN_SECRET <= len(secret) <= MAX_SECRET:
        raise Invalid(f"secret must be {MIN_SECRET} to {MAX_SECRET} characters")
    return secret


def webhook_public(hook: Webhook, *, with_secret: bool = False) -> dict[str, Any]:
    out: dict[str, Any] = {
        "id": hook.id,
        "url": hook.url,
        "events": hook.events,
        "description": hook.description,
        "active": hook.active,
        "created_at": iso(hook.created_at),
    }
    if with_secret:
        out["secret"] = hook.secret
    return out


def delivery_public(delivery: WebhookDelivery) -> dict[str, Any]:
    return {
        "id": delivery.id,
        "webhook_id": delivery.webhook_id,
        "event": delivery.event,
        "status": delivery.status.value,
        "attempts": delivery.attempts,
        "next_attempt_at": iso(delivery.next_attempt_at),
        "last_status_code": delivery.last_status_code,
        "last_error": delivery.last_error,
        "created_at": iso(delivery.created_at),
        "delivered_at": iso(delivery.delivered_at),
        "history": delivery.history,
        "body": delivery.body,
    }


async def list_webhooks(
    session: AsyncSession, workspace_id: int, *, after_id: int | None = None, limit: int = 50
) -> Sequence[Webhook]:
    stmt = select(Webhook).where(Webhook.workspace_id == workspace_id)
    if after_id is not None:
        stmt = stmt.where(col(Webhook.id) > after_id)
    return (await session.exec(stmt.order_by(col(Webhook.id)).limit(limit))).all()


async def get_webhook(session: AsyncSession, workspace_id: int, webhook_id: int) -> Webhook:
    hook = await session.get(Webhook, webhook_id)
    if hook is None or hook.workspace_id != workspace_id:
        raise NotFound("webhook not found")
    return hook


async def do_create_webhook(
    uow: UnitOfWork,
    actor: Actor,
    *,
    url: str,
    events: Sequence[str] = (),
    description: str = "",
    secret: str | None = None,
    active: bool = True,
) -> Webhook:
    actor.require(Role.admin)
    existing = await list_webhooks(
        uow.session, actor.workspace_id, limit=MAX_HOOKS_PER_WORKSPACE + 1
    )
    if len(existing) >= MAX_HOOKS_PER_WORKSPACE:
        raise Invalid(f"a workspace has at most {MAX_HOOKS_PER_WORKSPACE} webhooks")
    hook = Webhook(
        workspace_id=actor.workspace_id,
        url=check_url(url),
        events=check_events(events),
        description=description.strip(),
        secret=check_secret(secret) if secret is not None else "whsec_" + secrets.token_hex(24),
        active=active,
    )
    uow.session.add(hook)
    await uow.session.flush()
    audit.record(uow, actor, "webhook.create", "webhook", hook.id, {"url": hook.url})
    return hook


async def do_update_webhook(
    uow: UnitOfWork, actor: Actor, webhook_id: int, changes: dict[str, Any]
) -> Webhook:
    actor.require(Role.admin)
    hook = await get_webhook(uow.session, actor.workspace_id, webhook_id)
    if changes.pop("rotate_secret", False):
        changes["secret"] = "whsec_" + secrets.token_hex(24)
    elif "secret" in changes:
        changes["secret"] = check_secret(changes["secret"])
    if "url" in changes:
        changes["url"] = check_url(changes["url"])
    if "events" in changes:
        changes["events"] = check_events(changes["events"])
    if "description" in changes:
        changes["description"] = changes["description"].strip()
    for key, value in changes.items():
        setattr(hook, key, value)
    uow.session.add(hook)
    audit.record(uow, actor, "webhook.update", "webhook", hook.id, {"fields": sorted(changes)})
    return hook


async def do_delete_webhook(uow: UnitOfWork, actor: Actor, webhook_id: int) -> None:
    actor.require(Role.admin)
    hook = await get_webhook(uow.session, actor.workspace_id, webhook_id)
    await uow.session.delete(hook)
    audit.record(uow, actor, "webhook.delete", "webhook", webhook_id, {"url": hook.url})


async def do_send_test(uow: UnitOfWork, actor: Actor, webhook_id: int) -> WebhookDelivery:
    """Queue a `ping` for this one webhook (even if inactive or not subscribed to anything).

    It goes through the same outbox and worker as real events, so a passing test
    proves the URL, the signature check on the receiver, and the retry path.
    """
    actor.require(Role.admin)
    hook = await get_webhook(uow.session, actor.workspace_id, webhook_id)
    assert hook.id is not None
    delivery_id = str(uuid.uuid4())
    data = {"webhook_id": hook.id, "message": "This is a test delivery from the help desk."}
    delivery = WebhookDelivery(
        id=delivery_id,
        workspace_id=actor.workspace_id,
        webhook_id=hook.id,
        event=TEST_EVENT,
        body=webhook_outbox.render_body(delivery_id, TEST_EVENT, actor.workspace_id, data),
    )
    uow.session.add(delivery)
    await uow.session.flush()
    audit.record(uow, actor, "webhook.test", "webhook", hook.id, {"delivery": delivery_id})
    uow.after_commit.append(webhook_outbox._wake)
    return delivery


async def list_deliveries(
    session: AsyncSession,
    workspace_id: int,
    webhook_id: int,
    *,
    limit: int = 50,
    cursor: str | None = None,
) -> tuple[Sequence[WebhookDelivery], str | None]:
    """Newest first. Delivery ids are UUIDs, so the cursor is (created_at, id)."""
    await get_webhook(session, workspace_id, webhook_id)
    stmt = select(WebhookDelivery).where(
        WebhookDelivery.workspace_id == workspace_id, WebhookDelivery.webhook_id == webhook_id
    )
    if cursor:
        raw_created, last_id = decode_cursor(cursor)
        try:
            created = datetime.fromisoformat(str(raw_created))
        except ValueError:
            raise Invalid("cursor is not valid") from None
        if not isinstance(last_id, str) or len(last_id) > 36:
            raise Invalid("cursor is not valid")
        stmt = stmt.where(
            (col(WebhookDelivery.created_at) < created)
            | ((col(WebhookDelivery.created_at) == created) & (col(WebhookDelivery.id) < last_id))
        )
    stmt = stmt.order_by(col(WebhookDelivery.created_at).desc(), col(WebhookDelivery.id).desc())
    rows = list((await session.exec(stmt.limit(limit + 1))).all())
    if len(rows) <= limit:
        return rows, None
    rows = rows[:limit]
    return rows, encode_cursor([rows[-1].created_at.isoformat(), rows[-1].id])
