"""/webhooks: subscriptions, a test delivery, and the delivery log (admin)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query

from app.services import webhook_admin
from app.services.pagination import decode_id_cursor, page_of
from app.web.api.deps import AdminActor, Session, Uow
from app.web.api.errors import COMMON_ERRORS
from app.web.api.schemas.common import Cursor, Deleted, Limit, Page, PathId
from app.web.api.schemas.webhooks import DeliveryOut, WebhookCreate, WebhookOut, WebhookUpdate

router = APIRouter(prefix="/webhooks", tags=["webhooks"], responses=COMMON_ERRORS)


@router.get("", response_model=Page[WebhookOut], summary="List webhooks (admin)")
async def list_webhooks(
    actor: AdminActor, session: Session, limit: Limit = 50, cursor: Cursor = None
) -> dict[str, Any]:
    rows = await webhook_admin.list_webhooks(
        session, actor.workspace_id, after_id=decode_id_cursor(cursor), limit=limit + 1
    )
    page, next_cursor = page_of(rows, limit, lambda h: h.id)
    items = [webhook_admin.webhook_public(h, with_secret=True) for h in page]
    return {"items": items, "next_cursor": next_cursor}


@router.post(
    "",
    status_code=201,
    response_model=WebhookOut,
    summary="Subscribe a URL (admin)",
    description="Deliveries are POSTed with `Helpdesk-Signature: t=<ts>,v1=<hex HMAC-SHA256"
    '(secret, "<ts>.<body>")>`, `Helpdesk-Event` and `Helpdesk-Delivery` headers.',
)
async def create_webhook(body: WebhookCreate, actor: AdminActor, uow: Uow) -> dict[str, Any]:
    hook = await webhook_admin.do_create_webhook(
        uow,
        actor,
        url=body.url,
        events=body.events,
        description=body.description,
        secret=body.secret,
        active=body.active,
    )
    out = webhook_admin.webhook_public(hook, with_secret=True)
    await uow.commit()
    return out


@router.get("/{webhook_id}", response_model=WebhookOut, summary="Get a webhook (admin)")
async def get_webhook(webhook_id: PathId, actor: AdminActor, session: Session) -> dict[str, Any]:
    hook = await webhook_admin.get_webhook(session, actor.workspace_id, webhook_id)
    return webhook_admin.webhook_public(hook, with_secret=True)


@router.patch("/{webhook_id}", response_model=WebhookOut, summary="Change a webhook (admin)")
async def update_webhook(
    webhook_id: PathId, body: WebhookUpdate, actor: AdminActor, uow: Uow
) -> dict[str, Any]:
    changes = {k: v for k, v in body.model_dump(exclude_unset=True).items() if v is not None}
    hook = await webhook_admin.do_update_webhook(uow, actor, webhook_id, changes)
    out = webhook_admin.webhook_public(hook, with_secret=True)
    await uow.commit()
    return out


@router.delete("/{webhook_id}", response_model=Deleted, summary="Delete a webhook (admin)")
async def delete_webhook(webhook_id: PathId, actor: AdminActor, uow: Uow) -> dict[str, Any]:
    await webhook_admin.do_delete_webhook(uow, actor, webhook_id)
    await uow.commit()
    return {"deleted": True}


@router.post(
    "/{webhook_id}/test",
    status_code=202,
    response_model=DeliveryOut,
    summary="Send a test delivery (admin)",
    description="Queues a `ping` event for this webhook; watch its delivery log for the result.",
)
async def test_webhook(webhook_id: PathId, actor: AdminActor, uow: Uow) -> dict[str, Any]:
    delivery = await webhook_admin.do_send_test(uow, actor, webhook_id)
    out = webhook_admin.delivery_public(delivery)
    await uow.commit()
    return out


@router.get(
    "/{webhook_id}/deliveries",
    response_model=Page[DeliveryOut],
    summary="Delivery log, newest first (admin)",
)
async def list_deliveries(
    webhook_id: PathId,
    actor: AdminActor,
    session: Session,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    cursor: Cursor = None,
) -> dict[str, Any]:
    rows, next_cursor = await webhook_admin.list_deliveries(
        session, actor.workspace_id, webhook_id, limit=limit, cursor=cursor
    )
    return {"items": [webhook_admin.delivery_public(d) for d in rows], "next_cursor": next_cursor}
