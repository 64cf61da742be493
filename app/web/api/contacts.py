"""/contacts: the customers behind tickets, their identities, merges."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query

from app.models import Contact, IdentityKind
from app.services import contacts
from app.services.pagination import decode_id_cursor, page_of
from app.web.api.deps import AdminActor, CurrentActor, Session, Uow
from app.web.api.errors import COMMON_ERRORS, error_responses
from app.web.api.schemas.common import Cursor, Deleted, Limit, Page, PathId, check_query_text
from app.web.api.schemas.contacts import (
    ContactCreate,
    ContactMerge,
    ContactOut,
    ContactUpdate,
    IdentityIn,
    IdentityOut,
)

router = APIRouter(prefix="/contacts", tags=["contacts"], responses=COMMON_ERRORS)


@router.get("", response_model=Page[ContactOut], summary="List or search contacts")
async def list_contacts(
    actor: CurrentActor,
    session: Session,
    q: Annotated[
        str | None, Query(max_length=200, description="Matches name or email, case-insensitive.")
    ] = None,
    limit: Limit = 50,
    cursor: Cursor = None,
) -> dict[str, Any]:
    rows = await contacts.list_contacts(
        session,
        actor.workspace_id,
        q=check_query_text(q),
        after_id=decode_id_cursor(cursor),
        limit=limit + 1,
    )
    page, next_cursor = page_of(rows, limit, lambda c: c.id)
    return {"items": await contacts.contacts_public(session, page), "next_cursor": next_cursor}


@router.post(
    "",
    status_code=201,
    response_model=ContactOut,
    summary="Create a contact",
    responses=error_responses(409),
)
async def create_contact(body: ContactCreate, actor: CurrentActor, uow: Uow) -> dict[str, Any]:
    identities = [contacts.IdentityIn(i.kind, i.value, i.verified) for i in body.identities]
    if body.email is not None:
        identities.insert(0, contacts.IdentityIn(IdentityKind.email, str(body.email)))
    if body.external_id is not None:
        identities.append(contacts.IdentityIn(IdentityKind.external, body.external_id))
    contact = await contacts.do_create_contact(
        uow,
        actor.workspace_id,
        name=body.name,
        identities=identities,
        phone=body.phone,
        custom_fields=body.custom_fields,
    )
    out = await _public(uow, contact.id)
    await uow.commit()
    return out


async def _public(uow: Uow, contact_id: int | None) -> dict[str, Any]:
    assert contact_id is not None
    contact = await uow.session.get(Contact, contact_id)
    assert contact is not None
    return contacts.contact_public(contact, await contacts.identities_of(uow.session, contact_id))


@router.get("/{contact_id}", response_model=ContactOut, summary="Get a contact")
async def get_contact(contact_id: PathId, actor: CurrentActor, session: Session) -> dict[str, Any]:
    contact = await contacts.get_contact(session, actor.workspace_id, contact_id)
    return contacts.contact_public(contact, await contacts.identities_of(session, contact_id))


@router.patch(
    "/{contact_id}",
    response_model=ContactOut,
    summary="Change a contact",
    responses=error_responses(409),
)
async def update_contact(
    contact_id: PathId, body: ContactUpdate, actor: CurrentActor, uow: Uow
) -> dict[str, Any]:
    changes = body.model_dump(exclude_unset=True)
    for key in ("name", "custom_fields"):
        if key in changes and changes[key] is None:
            changes.pop(key)
    if "email" in changes and changes["email"] is not None:
        changes["email"] = str(changes["email"])
    await contacts.do_update_contact(uow, actor, contact_id, **changes)
    out = await _public(uow, contact_id)
    await uow.commit()
    return out


@router.delete(
    "/{contact_id}",
    response_model=Deleted,
    summary="Delete a contact (admin)",
    description="Erases the contact and its identities; its tickets stay, without a contact.",
)
async def delete_contact(contact_id: PathId, actor: AdminActor, uow: Uow) -> dict[str, Any]:
    await contacts.do_delete_contact(uow, actor, contact_id)
    await uow.commit()
    return {"deleted": True}


@router.get("/{contact_id}/identities", response_model=Page[IdentityOut], summary="List identities")
async def list_identities(
    contact_id: PathId, actor: CurrentActor, session: Session
) -> dict[str, Any]:
    await contacts.get_contact(session, actor.workspace_id, contact_id)
    idents = await contacts.identities_of(session, contact_id)
    items = [{"id": i.id, "kind": i.kind, "value": i.value, "verified": i.verified} for i in idents]
    return {"items": items, "next_cursor": None}


@router.post(
    "/{contact_id}/identities",
    status_code=201,
    response_model=ContactOut,
    summary="Add an identity",
    description="409 when another contact already owns it: merge the contacts instead.",
    responses=error_responses(409),
)
async def add_identity(
    contact_id: PathId, body: IdentityIn, actor: CurrentActor, uow: Uow
) -> dict[str, Any]:
    await contacts.do_add_identity(
        uow, actor, contact_id, contacts.IdentityIn(body.kind, body.value, body.verified)
    )
    out = await _public(uow, contact_id)
    await uow.commit()
    return out


@router.post(
    "/{contact_id}/merge",
    response_model=ContactOut,
    summary="Merge another contact into this one",
    responses=error_responses(409),
)
async def merge_contact(
    contact_id: PathId, body: ContactMerge, actor: CurrentActor, uow: Uow
) -> dict[str, Any]:
    await contacts.do_merge_contacts(uow, actor, contact_id, body.source_contact_id)
    out = await _public(uow, contact_id)
    await uow.commit()
    return out
