"""/inboxes: widget keys and email addresses (admins write; secrets only to admins)."""

from __future__ import annotations

import secrets
from typing import Any

from fastapi import APIRouter

from app.models import Inbox, Role
from app.services import workspaces
from app.services.actors import Actor
from app.services.timeline import iso
from app.web.api.deps import AdminActor, CurrentActor, Session, Uow
from app.web.api.errors import COMMON_ERRORS, error_responses
from app.web.api.schemas.common import Deleted, Page, PathId
from app.web.api.schemas.inboxes import InboxCreate, InboxOut, InboxUpdate

router = APIRouter(prefix="/inboxes", tags=["inboxes"], responses=COMMON_ERRORS)


def inbox_out(inbox: Inbox, actor: Actor) -> dict[str, Any]:
    return {
        "id": inbox.id,
        "kind": inbox.kind,
        "name": inbox.name,
        "team_id": inbox.team_id,
        "public_key": inbox.public_key,
        "allowed_origins": inbox.allowed_origins,
        "theme": inbox.theme,
        "greeting": inbox.greeting,
        "prechat_form": inbox.prechat_form,
        "address": inbox.address,
        "auto_ack": inbox.auto_ack,
        "identity_secret": inbox.identity_secret if actor.role.at_least(Role.admin) else None,
        "created_at": iso(inbox.created_at),
    }


@router.get("", response_model=Page[InboxOut], summary="List inboxes")
async def list_inboxes(actor: CurrentActor, session: Session) -> dict[str, Any]:
    rows = await workspaces.list_inboxes(session, actor.workspace_id)
    return {"items": [inbox_out(i, actor) for i in rows], "next_cursor": None}


@router.get("/{inbox_id}", response_model=InboxOut, summary="Get an inbox")
async def get_inbox(inbox_id: PathId, actor: CurrentActor, session: Session) -> dict[str, Any]:
    return inbox_out(await workspaces.get_inbox(session, actor.workspace_id, inbox_id), actor)


@router.post(
    "",
    status_code=201,
    response_model=InboxOut,
    summary="Create an inbox (admin)",
    description="A widget inbox gets a public key and an identity secret; an email inbox "
    "needs an `address`.",
    responses=error_responses(409),
)
async def create_inbox(body: InboxCreate, actor: AdminActor, uow: Uow) -> dict[str, Any]:
    fields = body.model_dump(exclude={"kind", "name", "address"})
    if body.address is not None:
        fields["address"] = str(body.address)
    inbox = await workspaces.do_create_inbox(uow, actor, kind=body.kind, name=body.name, **fields)
    out = inbox_out(inbox, actor)
    await uow.commit()
    return out


@router.patch(
    "/{inbox_id}",
    response_model=InboxOut,
    summary="Change an inbox (admin)",
    responses=error_responses(409),
)
async def update_inbox(
    inbox_id: PathId, body: InboxUpdate, actor: AdminActor, uow: Uow
) -> dict[str, Any]:
    changes = body.model_dump(exclude_unset=True, exclude={"rotate_identity_secret"})
    for key in list(changes):
        if changes[key] is None and key != "team_id":
            changes.pop(key)
    if "address" in changes:
        changes["address"] = str(changes["address"])
    if body.rotate_identity_secret:
        current = await workspaces.get_inbox(uow.session, actor.workspace_id, inbox_id)
        if current.public_key is not None:
            changes["identity_secret"] = secrets.token_urlsafe(32)
    inbox = await workspaces.do_update_inbox(uow, actor, inbox_id, **changes)
    out = inbox_out(inbox, actor)
    await uow.commit()
    return out


@router.delete("/{inbox_id}", response_model=Deleted, summary="Delete an inbox (admin)")
async def delete_inbox(inbox_id: PathId, actor: AdminActor, uow: Uow) -> dict[str, Any]:
    await workspaces.do_delete_inbox(uow, actor, inbox_id)
    await uow.commit()
    return {"deleted": True}
