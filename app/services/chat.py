"""Live chat: visitors, their conversation (an open chat ticket), and messages from the widget.

The widget's conversation is the visitor's open chat ticket in that inbox. The
first message of a visitor without one creates it in the inbox's team; a
contact row is only created then, so page views write nothing.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import bindparam, update
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from app.events import UnitOfWork
from app.models import (
    Agent,
    Channel,
    Contact,
    ContactIdentity,
    IdentityKind,
    Inbox,
    Ticket,
    TicketEvent,
)
from app.services import presence
from app.services.actors import Actor
from app.services.attachments import check_attachments
from app.services.contacts import (
    IdentityIn,
    do_create_contact,
    find_by_identity,
    normalize_identity,
)
from app.services.errors import Conflict, Invalid
from app.services.routing import LOCK_CONTACT, OPEN_CHAT_STATUSES, xact_lock
from app.services.tickets import do_create_ticket, do_customer_message
from app.services.timeline import find_by_client_id, list_events
from app.services.visitors import visitor_topic
from app.services.workspaces import EMAIL_RE

MAX_ATTACHMENTS = 10
SUBJECT_CHARS = 80


@dataclass
class ChatVisitor:
    """Who is on the other end of one widget connection."""

    workspace_id: int
    inbox_id: int
    visitor_id: str
    contact_id: int | None = None
    external_id: str | None = None  # set only after a verified identify

    @property
    def verified(self) -> bool:
        return self.external_id is not None


@dataclass
class VisitorMessage:
    """One message from the widget, as the visitor sent it."""

    visitor: ChatVisitor
    inbox: Inbox
    client_id: str
    body: str
    attachments: Sequence[int] = ()
    name: str = ""  # from the pre-chat form
    email: str | None = None


@dataclass
class MessageResult:
    ticket_id: int
    seq: int
    # The caller adopts it once committed: a contact created by a batch that then
    # rolled back must not stay on the connection.
    contact_id: int
    created: bool
    ticket_created: bool
    contact_created: bool


def contact_summary(contact: Contact | None, verified: bool) -> dict[str, Any]:
    if contact is None:
        return {"id": None, "name": "", "email": None, "verified": False}
    return {
        "id": contact.id,
        "name": contact.name,
        "email": contact.email,
        "verified": verified,
    }


def check_email(value: object) -> str | None:
    if value is None or value == "":
        return None
    if not isinstance(value, str) or len(value) > 254 or not EMAIL_RE.match(value.strip()):
        raise Invalid("email is not a valid address")
    return value.strip().lower()


async def visitor_contact(session: AsyncSession, visitor: ChatVisitor) -> Contact | None:
    if visitor.external_id is not None:
        return await find_by_identity(
            session, visitor.workspace_id, IdentityKind.external, visitor.external_id
        )
    return await find_by_identity(
        session, visitor.workspace_id, IdentityKind.visitor, visitor.visitor_id
    )


async def open_chat_ticket(
    session: AsyncSession, workspace_id: int, inbox_id: int, contact_id: int | None
) -> Ticket | None:
    """The contact's newest open conversation in this widget inbox."""
    if contact_id is None:
        return None
    params = {"workspace_id": workspace_id, "inbox_id": inbox_id, "contact_id": contact_id}
    return (await session.exec(_OPEN_CHAT_TICKET, params=params)).first()


# Built once: this runs for every widget message and every welcome.
_OPEN_CHAT_TICKET = (
    select(Ticket)
    .where(
        Ticket.workspace_id == bindparam("workspace_id"),
        Ticket.inbox_id == bindparam("inbox_id"),
        Ticket.contact_id == bindparam("contact_id"),
        col(Ticket.status).in_(OPEN_CHAT_STATUSES),
        col(Ticket.merged_into_id).is_(None),
    )
    .order_by(col(Ticket.id).desc())
    .limit(1)
)


async def replay_events(
    session: AsyncSession, ticket_id: int, after_seq: int, upto: int, *, customer_view: bool
) -> list[TicketEvent]:
    """Events with after_seq < seq <= upto, oldest first, read in pages."""
    out: list[TicketEvent] = []
    cursor = after_seq
    while cursor < upto:
        page = await list_events(
            session, ticket_id, after_seq=cursor, limit=500, customer_view=customer_view
        )
        page = [e for e in page if e.seq <= upto]
        if not page:
            break
        out.extend(page)
        cursor = page[-1].seq
    return out


async def agent_name(session: AsyncSession, workspace_id: int, agent_id: int | None) -> str:
    if agent_id is None:
        return ""
    agent = await session.get(Agent, agent_id)
    return agent.name if agent is not None and agent.workspace_id == workspace_id else ""


async def do_identify(
    uow: UnitOfWork,
    visitor: ChatVisitor,
    external_id: str,
    *,
    name: str = "",
    email: str | None = None,
) -> Contact:
    """Switch the connection to the verified customer `external_id`.

    The anonymous visitor's open chat moves to the customer (they typed it); the
    visitor identity itself never does, so the visitor token alone can never
    read the customer's tickets.
    """
    ws = visitor.workspace_id
    contact, _ = await _resolve(
        uow, ws, IdentityIn(IdentityKind.external, external_id, verified=True), name
    )
    assert contact.id is not None
    if email:
        await _fill_email(uow, contact, email)
    anonymous = await find_by_identity(uow.session, ws, IdentityKind.visitor, visitor.visitor_id)
    if anonymous is not None and anonymous.id != contact.id:
        await uow.session.exec(
            update(Ticket)
            .where(
                col(Ticket.workspace_id) == ws,
                col(Ticket.inbox_id) == visitor.inbox_id,
                col(Ticket.contact_id) == anonymous.id,
                col(Ticket.status).in_(OPEN_CHAT_STATUSES),
            )
            .values(contact_id=contact.id)
        )
    visitor.external_id = external_id
    visitor.contact_id = contact.id
    return contact


async def _resolve(
    uow: UnitOfWork, workspace_id: int, identity: IdentityIn, name: str
) -> tuple[Contact, bool]:
    found = await find_by_identity(uow.session, workspace_id, identity.kind, identity.value)
    if found is not None:
        if name and not found.name:
            found.name = name.strip()[:200]
            uow.session.add(found)
        return found, False
    contact = await do_create_contact(
        uow, workspace_id, name=name.strip()[:200], identities=[identity]
    )
    return contact, True


async def _fill_email(uow: UnitOfWork, contact: Contact, email: str) -> None:
    """Remember an address the visitor typed. Unverified, so it never joins this
    contact to another one that already owns the address."""
    value = normalize_identity(IdentityKind.email, email)
    owner = await find_by_identity(uow.session, contact.workspace_id, IdentityKind.email, value)
    if owner is None:
        uow.session.add(
            ContactIdentity(
                workspace_id=contact.workspace_id,
                contact_id=contact.id or 0,
                kind=IdentityKind.email,
                value=value,
                verified=False,
            )
        )
    if not contact.email:
        contact.email = value
        uow.session.add(contact)


async def do_visitor_message(
    uow: UnitOfWork, message: VisitorMessage, *, presence_ttl: float
) -> MessageResult:
    """Store one widget message (idempotent on client_id); the caller commits.
    (`chat_batch.do_visitor_messages` stores most of a batch's messages at once.)"""
    visitor, inbox, client_id = message.visitor, message.inbox, message.client_id
    body, attachments, name = message.body, message.attachments, message.name
    ws = visitor.workspace_id
    existing = await find_by_client_id(uow.session, ws, client_id)
    if existing is not None:
        ticket = await uow.session.get(Ticket, existing.ticket_id)
        contact = await visitor_contact(uow.session, visitor)
        if ticket is None or contact is None or ticket.contact_id != contact.id:
            raise Conflict("client_id was already used for another message")
        return MessageResult(ticket.id or 0, existing.seq, contact.id or 0, False, False, False)
    if len(attachments) > MAX_ATTACHMENTS:
        raise Invalid(f"at most {MAX_ATTACHMENTS} attachments per message")
    if not body.strip() and not attachments:
        raise Invalid("a message needs a body or an attachment")
    email = check_email(message.email)
    if visitor.external_id is not None:
        identity = IdentityIn(IdentityKind.external, visitor.external_id, verified=True)
    else:
        identity = IdentityIn(IdentityKind.visitor, visitor.visitor_id)
    contact, contact_created = await _resolve(uow, ws, identity, name)
    assert contact.id is not None
    if contact_created:
        # Other tabs of this visitor learn that the contact exists and follow it.
        uow.publish_on_commit(
            visitor_topic(ws, visitor.visitor_id),
            {"type": "visitor.contact", "contact": contact.id},
        )
    await xact_lock(uow.session, LOCK_CONTACT, contact.id)
    if email:
        await _fill_email(uow, contact, email)
    actor = Actor.contact(ws, contact.id, contact.name or "Visitor")
    ticket = await open_chat_ticket(uow.session, ws, inbox.id or 0, contact.id)
    payload: dict[str, Any] = {}
    if ticket is not None and attachments:
        await check_attachments(uow.session, actor, ticket.id or 0, list(attachments))
    if attachments:
        payload["attachments"] = list(attachments)
    ticket_created = ticket is None
    if ticket is None:
        channel = Channel.chat
        participants: list[str] = []
        if email and not await presence.team_available(
            uow.session, ws, inbox.team_id, presence_ttl
        ):
            # Offline mode: nobody can chat now, so the answer goes out by email.
            channel = Channel.email
            participants = [email]
        subject = " ".join(body.split())[:SUBJECT_CHARS] or "Chat"
        ticket, event = await do_create_ticket(
            uow,
            Actor.system(ws, "Chat"),
            subject=subject,
            contact_id=contact.id,
            channel=channel,
            inbox_id=inbox.id,
            team_id=inbox.team_id,
            message=body,
            message_actor=actor,
            message_payload=payload or None,
            client_id=client_id,
        )
        if participants:
            ticket.participants = participants
            uow.session.add(ticket)
        if attachments:
            await check_attachments(uow.session, actor, ticket.id or 0, list(attachments))
        assert event is not None
        created = True
    else:
        event, created = await do_customer_message(
            uow,
            ticket,
            actor,
            body=body,
            payload=payload or None,
            client_id=client_id,
            client_id_checked=True,
        )
    if attachments and created:
        from app.models import Attachment

        await uow.session.exec(
            update(Attachment)
            .where(col(Attachment.id).in_(list(attachments)), col(Attachment.workspace_id) == ws)
            .values(ticket_id=ticket.id, event_id=event.id)
        )
    return MessageResult(
        ticket.id or 0, event.seq, contact.id, created, ticket_created, contact_created
    )
