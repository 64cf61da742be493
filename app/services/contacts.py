"""Contacts and identities. The same email on chat and mail is one contact."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import bindparam, func, or_, update
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from app.events import UnitOfWork
from app.models import Contact, ContactIdentity, IdentityKind, Role, Ticket
from app.models.base import utcnow
from app.services import audit, webhook_outbox
from app.services.actors import Actor
from app.services.errors import Conflict, Invalid, NotFound
from app.services.workspaces import EMAIL_RE


@dataclass(frozen=True)
class IdentityIn:
    kind: IdentityKind
    value: str
    verified: bool = False


def normalize_identity(kind: IdentityKind, value: str) -> str:
    value = value.strip()
    if kind is IdentityKind.email:
        value = value.lower()
        if not EMAIL_RE.match(value) or len(value) > 254:
            raise Invalid(f"{value!r} is not an email address")
    if not value or len(value) > 254:
        raise Invalid("identity value must be 1 to 254 characters")
    return value


def contact_public(contact: Contact, identities: Sequence[ContactIdentity] = ()) -> dict[str, Any]:
    return {
        "id": contact.id,
        "name": contact.name,
        "email": contact.email,
        "phone": contact.phone,
        "custom_fields": contact.custom_fields,
        "merged_into_id": contact.merged_into_id,
        "created_at": contact.created_at.isoformat(),
        "updated_at": contact.updated_at.isoformat(),
        "identities": [
            {"id": i.id, "kind": i.kind.value, "value": i.value, "verified": i.verified}
            for i in identities
        ],
    }


async def get_contact(session: AsyncSession, workspace_id: int, contact_id: int) -> Contact:
    contact = await session.get(Contact, contact_id)
    if contact is None or contact.workspace_id != workspace_id:
        raise NotFound("contact not found")
    return contact


async def identities_of(session: AsyncSession, contact_id: int) -> Sequence[ContactIdentity]:
    stmt = (
        select(ContactIdentity)
        .where(ContactIdentity.contact_id == contact_id)
        .order_by(col(ContactIdentity.id))
    )
    return (await session.exec(stmt)).all()


# Built once: every widget connection and message resolves its contact this way.
_BY_IDENTITY = (
    select(Contact)
    .join(ContactIdentity, col(ContactIdentity.contact_id) == Contact.id)
    .where(
        ContactIdentity.workspace_id == bindparam("workspace_id"),
        ContactIdentity.kind == bindparam("kind"),
        ContactIdentity.value == bindparam("value"),
    )
)


async def find_by_identity(
    session: AsyncSession, workspace_id: int, kind: IdentityKind, value: str
) -> Contact | None:
    params = {"workspace_id": workspace_id, "kind": kind, "value": normalize_identity(kind, value)}
    contact = (await session.exec(_BY_IDENTITY, params=params)).first()
    # Follow merges so old identities keep landing on the surviving contact.
    while contact is not None and contact.merged_into_id is not None:
        contact = await session.get(Contact, contact.merged_into_id)
    return contact


async def _add_identity(uow: UnitOfWork, contact: Contact, ident: IdentityIn) -> None:
    assert contact.id is not None
    value = normalize_identity(ident.kind, ident.value)
    other = await find_by_identity(uow.session, contact.workspace_id, ident.kind, value)
    if other is not None:
        if other.id != contact.id:
            raise Conflict(f"{ident.kind.value} identity {value} belongs to another contact")
        return
    uow.session.add(
        ContactIdentity(
            workspace_id=contact.workspace_id,
            contact_id=contact.id,
            kind=ident.kind,
            value=value,
            verified=ident.verified,
        )
    )
    if ident.kind is IdentityKind.email and not contact.email:
        contact.email = value
        uow.session.add(contact)


async def do_create_contact(
    uow: UnitOfWork,
    workspace_id: int,
    *,
    name: str = "",
    identities: Sequence[IdentityIn] = (),
    phone: str | None = None,
    custom_fields: dict[str, Any] | None = None,
) -> Contact:
    contact = Contact(
        workspace_id=workspace_id,
        name=name.strip(),
        phone=phone,
        custom_fields=custom_fields or {},
    )
    uow.session.add(contact)
    await uow.session.flush()
    for ident in identities:
        await _add_identity(uow, contact, ident)
    await uow.session.flush()
    await webhook_outbox.enqueue(
        uow,
        workspace_id,
        "contact.created",
        contact_public(contact, await identities_of(uow.session, contact.id or 0)),
    )
    return contact


async def do_resolve_contact(
    uow: UnitOfWork, workspace_id: int, identity: IdentityIn, *, name: str = ""
) -> tuple[Contact, bool]:
    """The contact owning `identity`, created when new. Returns (contact, created)."""
    contact = await find_by_identity(uow.session, workspace_id, identity.kind, identity.value)
    if contact is not None:
        if name and not contact.name:
            contact.name = name.strip()
            uow.session.add(contact)
        return contact, False
    return await do_create_contact(uow, workspace_id, name=name, identities=[identity]), True


async def do_update_contact(
    uow: UnitOfWork, actor: Actor, contact_id: int, **changes: Any
) -> Contact:
    contact = await get_contact(uow.session, actor.workspace_id, contact_id)
    if contact.merged_into_id is not None:
        raise Conflict("this contact was merged; change the contact it was merged into")
    new_identities: list[IdentityIn] = list(changes.pop("identities", None) or ())
    if "email" in changes:
        email = changes.pop("email")
        if email is None:
            contact.email = None
        else:
            # The primary address is always also an identity, so mail from it lands here.
            email = normalize_identity(IdentityKind.email, email)
            new_identities.append(IdentityIn(IdentityKind.email, email))
            contact.email = email
    if "name" in changes:
        changes["name"] = (changes["name"] or "").strip()
    for key, value in changes.items():
        setattr(contact, key, value)
    contact.updated_at = utcnow()
    uow.session.add(contact)
    for ident in new_identities:
        await _add_identity(uow, contact, ident)
    await uow.session.flush()
    await webhook_outbox.enqueue(
        uow,
        actor.workspace_id,
        "contact.updated",
        contact_public(contact, await identities_of(uow.session, contact_id)),
    )
    return contact


async def do_add_identity(
    uow: UnitOfWork, actor: Actor, contact_id: int, ident: IdentityIn
) -> Contact:
    contact = await get_contact(uow.session, actor.workspace_id, contact_id)
    if contact.merged_into_id is not None:
        raise Conflict("this contact was merged; add identities to the contact it was merged into")
    await _add_identity(uow, contact, ident)
    contact.updated_at = utcnow()
    uow.session.add(contact)
    await uow.session.flush()
    await webhook_outbox.enqueue(
        uow,
        actor.workspace_id,
        "contact.updated",
        contact_public(contact, await identities_of(uow.session, contact_id)),
    )
    return contact


async def do_delete_contact(uow: UnitOfWork, actor: Actor, contact_id: int) -> None:
    """Erase a contact and its identities (admins only); its tickets stay, unlinked.

    Contacts merged into this one are tombstones of the same person and go with it.
    """
    actor.require(Role.admin)
    contact = await get_contact(uow.session, actor.workspace_id, contact_id)
    doomed = [contact]
    frontier = [contact_id]
    while frontier:
        stmt = select(Contact).where(
            Contact.workspace_id == actor.workspace_id, col(Contact.merged_into_id).in_(frontier)
        )
        found = list((await uow.session.exec(stmt)).all())
        doomed += found
        frontier = [c.id for c in found if c.id is not None]
    ids = [c.id for c in doomed if c.id is not None]
    await uow.session.exec(
        update(Ticket)
        .where(col(Ticket.workspace_id) == actor.workspace_id, col(Ticket.contact_id).in_(ids))
        .values(contact_id=None)
    )
    await uow.session.exec(
        update(Contact).where(col(Contact.id).in_(ids)).values(merged_into_id=None)
    )
    await uow.session.flush()
    for doomed_contact in doomed:
        await uow.session.delete(doomed_contact)
    audit.record(uow, actor, "contact.delete", "contact", contact_id, {"merged": sorted(ids)[:100]})
    await uow.session.flush()


async def do_merge_contacts(
    uow: UnitOfWork, actor: Actor, target_id: int, source_id: int
) -> Contact:
    """Move identities and tickets of `source` onto `target`; `source` points at `target`."""
    actor.require(Role.agent)
    if target_id == source_id:
        raise Invalid("cannot merge a contact into itself")
    target = await get_contact(uow.session, actor.workspace_id, target_id)
    source = await get_contact(uow.session, actor.workspace_id, source_id)
    if source.merged_into_id is not None or target.merged_into_id is not None:
        raise Conflict("one of these contacts was already merged")
    await uow.session.exec(
        update(ContactIdentity)
        .where(col(ContactIdentity.contact_id) == source_id)
        .values(contact_id=target_id)
    )
    await uow.session.exec(
        update(Ticket)
        .where(col(Ticket.contact_id) == source_id, col(Ticket.workspace_id) == actor.workspace_id)
        .values(contact_id=target_id)
    )
    source.merged_into_id = target_id
    target.name = target.name or source.name
    target.email = target.email or source.email
    target.phone = target.phone or source.phone
    target.custom_fields = {**source.custom_fields, **target.custom_fields}
    target.updated_at = utcnow()
    uow.session.add_all([source, target])
    audit.record(uow, actor, "contact.merge", "contact", target_id, {"source": source_id})
    await uow.session.flush()
    await webhook_outbox.enqueue(
        uow,
        actor.workspace_id,
        "contact.updated",
        contact_public(target, await identities_of(uow.session, target_id)),
    )
    return target


async def list_contacts(
    session: AsyncSession,
    workspace_id: int,
    *,
    q: str | None = None,
    after_id: int | None = None,
    limit: int = 50,
) -> Sequence[Contact]:
    stmt = select(Contact).where(
        Contact.workspace_id == workspace_id, col(Contact.merged_into_id).is_(None)
    )
    if q:
        like = "%" + q.lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        stmt = stmt.where(
            or_(
                func.lower(Contact.name).like(like, escape="\\"),
                func.lower(col(Contact.email)).like(like, escape="\\"),
            )
        )
    if after_id is not None:
        stmt = stmt.where(col(Contact.id) > after_id)
    stmt = stmt.order_by(col(Contact.id)).limit(limit)
    return (await session.exec(stmt)).all()


async def identities_by_contact(
    session: AsyncSession, contact_ids: Sequence[int]
) -> dict[int, list[ContactIdentity]]:
    """Identities of many contacts in one query (for list pages)."""
    out: dict[int, list[ContactIdentity]] = {cid: [] for cid in contact_ids}
    if not contact_ids:
        return out
    stmt = (
        select(ContactIdentity)
        .where(col(ContactIdentity.contact_id).in_(list(contact_ids)))
        .order_by(col(ContactIdentity.id))
    )
    for ident in (await session.exec(stmt)).all():
        out.setdefault(ident.contact_id, []).append(ident)
    return out


async def contacts_public(
    session: AsyncSession, contacts: Sequence[Contact]
) -> list[dict[str, Any]]:
    idents = await identities_by_contact(session, [c.id for c in contacts if c.id is not None])
    return [contact_public(c, idents.get(c.id or 0, [])) for c in contacts]
