"""Inbound mail into the ticket stream: dedupe, thread, contact, timeline, bounces, auto-ack.

The channel layer parses (channels/email/parse.py) and decides the thread from the
facts `lookup_thread` returns; this module owns every database write, all inside
the caller's unit of work, so "250 OK" is only ever said after one commit.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from enum import StrEnum
from pathlib import Path
from typing import Any

from sqlalchemy import func
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from app.events import UnitOfWork
from app.models import (
    Attachment,
    Channel,
    Contact,
    EventKind,
    IdentityKind,
    Inbox,
    InboxKind,
    MailDirection,
    MailMessage,
    OutboundEmail,
    OutboundKind,
    Ticket,
    TicketStatus,
)
from app.models.base import utcnow
from app.services import email_outbox
from app.services.actors import Actor
from app.services.attachments import safe_filename, write_blob
from app.services.contacts import IdentityIn, do_resolve_contact
from app.services.errors import Invalid
from app.services.tickets import do_create_ticket, do_customer_message
from app.services.timeline import MAX_BODY_CHARS

MAX_PARTICIPANTS = 50
MAX_FULL_TEXT = 1_000_000
DEFAULT_ACK_THROTTLE_MINUTES = 60


@dataclass(frozen=True)
class MailFile:
    filename: str
    content_type: str
    data: bytes
    content_id: str | None = None
    inline: bool = False
    kind: str = "file"


@dataclass(frozen=True)
class IncomingMail:
    """A parsed inbound message, in the terms the domain needs."""

    raw: bytes
    message_id: str  # the dedupe key: Message-ID, or a content hash when there is none
    subject: str = ""
    sender_email: str | None = None
    sender_name: str = ""
    to: tuple[str, ...] = ()
    cc: tuple[str, ...] = ()
    new_text: str = ""
    full_text: str = ""
    quoted: str = ""
    signature: str = ""
    html: str | None = None
    attachments: tuple[MailFile, ...] = ()
    auto_reasons: tuple[str, ...] = ()
    bounce_of: str | None = None  # the Message-ID a delivery-status report refers to
    bounce: dict[str, Any] | None = None
    errors: tuple[str, ...] = ()
    source: str = "smtp"

    @property
    def automated(self) -> bool:
        return bool(self.auto_reasons)


class IngestStatus(StrEnum):
    created = "created"  # a new ticket
    appended = "appended"  # threaded into an existing ticket
    duplicate = "duplicate"  # this inbox already has this Message-ID; nothing written
    bounce = "bounce"  # a DSN; the referenced outbound mail was marked failed
    stored = "stored"  # kept (raw + row) without a ticket, e.g. a bounce of unknown mail


@dataclass
class IngestResult:
    status: IngestStatus
    mail_id: int | None = None
    ticket_id: int | None = None
    event_id: int | None = None
    auto_ack_id: int | None = None
    notes: list[str] = field(default_factory=list)


async def inbox_for_address(session: AsyncSession, address: str) -> Inbox | None:
    """The email inbox receiving `address` (`support+anything@x` reaches `support@x`)."""
    local, at, domain = address.strip().strip("<>").rpartition("@")
    if not at:
        return None
    base = f"{local.split('+', 1)[0]}@{domain}".lower()
    stmt = select(Inbox).where(Inbox.kind == InboxKind.email, func.lower(Inbox.address) == base)
    return (await session.exec(stmt)).first()


async def find_mail(session: AsyncSession, inbox_id: int, message_id: str) -> MailMessage | None:
    stmt = select(MailMessage).where(
        MailMessage.inbox_id == inbox_id, MailMessage.message_id == message_id
    )
    return (await session.exec(stmt)).first()


@dataclass(frozen=True)
class ThreadFacts:
    token_ticket_id: int | None = None
    reference_ticket_ids: tuple[int, ...] = ()
    subject_ticket_id: int | None = None
    subject_addresses: frozenset[str] = frozenset()


async def _live_ticket(session: AsyncSession, workspace_id: int, ticket_id: int) -> Ticket | None:
    """Follow merges, stay inside the workspace."""
    ticket = await session.get(Ticket, ticket_id)
    hops = 0
    while ticket is not None and ticket.merged_into_id is not None and hops < 10:
        ticket = await session.get(Ticket, ticket.merged_into_id)
        hops += 1
    if ticket is None or ticket.workspace_id != workspace_id:
        return None
    return ticket


async def lookup_thread(
    session: AsyncSession,
    workspace_id: int,
    *,
    token_ticket_id: int | None,
    thread_ids: Sequence[str],
    subject_number: int | None,
) -> ThreadFacts:
    """Resolve the threading keys of one mail against this workspace's data."""
    token_ticket: int | None = None
    if token_ticket_id is not None:
        ticket = await _live_ticket(session, workspace_id, token_ticket_id)
        token_ticket = ticket.id if ticket else None
    reference_ids: list[int] = []
    ids = list(dict.fromkeys(thread_ids))[:60]
    if ids:
        stmt = select(MailMessage.message_id, MailMessage.ticket_id).where(
            MailMessage.workspace_id == workspace_id,
            col(MailMessage.message_id).in_(ids),
            col(MailMessage.ticket_id).is_not(None),
        )
        owner = {m: t for m, t in (await session.exec(stmt)).all() if t is not None}
        for message_id in ids:
            if message_id in owner:
                ticket = await _live_ticket(session, workspace_id, owner[message_id])
                if ticket is not None and ticket.id not in reference_ids:
                    reference_ids.append(ticket.id or 0)
    subject_ticket: int | None = None
    addresses: frozenset[str] = frozenset()
    if subject_number is not None:
        stmt2 = select(Ticket).where(
            Ticket.workspace_id == workspace_id, Ticket.number == subject_number
        )
        found = (await session.exec(stmt2)).first()
        ticket = await _live_ticket(session, workspace_id, found.id or 0) if found else None
        if ticket is not None:
            subject_ticket = ticket.id
            contact = await session.get(Contact, ticket.contact_id) if ticket.contact_id else None
            allowed = {p.lower() for p in ticket.participants}
            if contact is not None and contact.email:
                allowed.add(contact.email.lower())
            addresses = frozenset(allowed)
    return ThreadFacts(token_ticket, tuple(reference_ids), subject_ticket, addresses)


def _mail_row(inbox: Inbox, mail: IncomingMail, raw_key: str) -> MailMessage:
    assert inbox.id is not None
    return MailMessage(
        workspace_id=inbox.workspace_id,
        inbox_id=inbox.id,
        direction=MailDirection.inbound,
        message_id=mail.message_id[:255],
        subject=mail.subject[:500],
        from_address=(mail.sender_email or "")[:254],
        raw_key=raw_key,
        size=len(mail.raw),
        html=mail.html,
        full_text=mail.full_text[:MAX_FULL_TEXT],
        auto_reasons=list(mail.auto_reasons),
        parse_errors=[e[:300] for e in mail.errors[:20]],
        source=mail.source,
    )


async def _handle_bounce(
    uow: UnitOfWork, inbox: Inbox, mail: IncomingMail, row: MailMessage
) -> IngestResult:
    outbound = (
        await email_outbox.find_outbound_by_message_id(
            uow.session, inbox.workspace_id, mail.bounce_of
        )
        if mail.bounce_of
        else None
    )
    uow.session.add(row)
    if outbound is None:
        await uow.session.flush()
        return IngestResult(IngestStatus.stored, mail_id=row.id, notes=["bounce of unknown mail"])
    info = mail.bounce or {}
    row.ticket_id = outbound.ticket_id
    await uow.session.flush()
    await email_outbox.mark_bounced(
        uow,
        outbound,
        status=str(info.get("status", "")),
        diagnostic=str(info.get("diagnostic", "")),
        recipients=[str(r) for r in info.get("recipients", [])],
    )
    return IngestResult(IngestStatus.bounce, mail_id=row.id, ticket_id=outbound.ticket_id)


async def _store_files(
    uow: UnitOfWork, ticket: Ticket, mail: IncomingMail, data_dir: Path, max_bytes: int
) -> tuple[list[Attachment], list[str]]:
    stored: list[Attachment] = []
    skipped: list[str] = []
    for item in mail.attachments:
        if not item.data:
            skipped.append(f"{item.filename}: empty")
            continue
        if len(item.data) > max_bytes:
            skipped.append(f"{item.filename}: larger than {max_bytes} bytes")
            continue
        key, sha = write_blob(data_dir, ticket.workspace_id, item.data)
        attachment = Attachment(
            workspace_id=ticket.workspace_id,
            ticket_id=ticket.id,
            filename=safe_filename(item.filename),
            content_type=item.content_type[:255],
            size=len(item.data),
            sha256=sha,
            storage_key=key,
            content_id=item.content_id,
            inline=item.inline,
        )
        uow.session.add(attachment)
        stored.append(attachment)
    if stored:
        await uow.session.flush()
    return stored, skipped


def _participants(ticket: Ticket, inbox: Inbox, mail: IncomingMail) -> list[str]:
    ours = {(inbox.address or "").lower()}
    sender = (mail.sender_email or "").lower()
    current = list(ticket.participants)
    for address in (*mail.cc, *mail.to):
        address = address.strip().lower()
        base = address.split("+", 1)[0] + "@" + address.rpartition("@")[2]
        if "@" not in address or address in ours or base in ours or address == sender:
            continue
        if address not in current and len(current) < MAX_PARTICIPANTS:
            current.append(address)
    return current


def _too_old_to_reopen(ticket: Ticket, inbox: Inbox) -> bool:
    days = inbox.settings.get("reopen_days")
    if ticket.status is not TicketStatus.closed or not isinstance(days, int | float):
        return False
    closed = ticket.closed_at or ticket.updated_at
    return utcnow() - closed > timedelta(days=float(days))


async def do_ingest_email(
    uow: UnitOfWork,
    inbox: Inbox,
    mail: IncomingMail,
    *,
    ticket_id: int | None,
    threaded_by: str,
    data_dir: Path,
    max_attachment_bytes: int,
) -> IngestResult:
    """Store one inbound mail. The caller commits; nothing is published before that."""
    assert inbox.id is not None
    if await find_mail(uow.session, inbox.id, mail.message_id[:255]) is not None:
        return IngestResult(IngestStatus.duplicate)
    raw_key, _ = write_blob(data_dir, inbox.workspace_id, mail.raw)
    row = _mail_row(inbox, mail, raw_key)
    if mail.bounce is not None:
        return await _handle_bounce(uow, inbox, mail, row)

    ws = inbox.workspace_id
    system = Actor.system(ws, name=inbox.name or "Email")
    contact: Contact | None = None
    if mail.sender_email:
        try:
            contact, _ = await do_resolve_contact(
                uow,
                ws,
                IdentityIn(IdentityKind.email, mail.sender_email),
                name=mail.sender_name[:200],
            )
        except Invalid:
            contact = None  # an unusable From; the mail is still kept and shown
    author = (
        Actor.contact(ws, contact.id, contact.name or contact.email or "")
        if contact is not None and contact.id is not None
        else Actor.system(ws, name=mail.sender_email or "Unknown sender")
    )

    ticket = await _live_ticket(uow.session, ws, ticket_id) if ticket_id is not None else None
    linked_from: int | None = None
    if ticket is not None and _too_old_to_reopen(ticket, inbox):
        linked_from, ticket = ticket.id, None
    created = ticket is None
    if ticket is None:
        ticket, _ = await do_create_ticket(
            uow,
            system,
            subject=mail.subject or "(no subject)",
            contact_id=contact.id if contact else None,
            channel=Channel.email,
            inbox_id=inbox.id,
            team_id=inbox.team_id,
        )
    assert ticket.id is not None
    ticket.participants = _participants(ticket, inbox, mail)
    uow.session.add(ticket)

    files, skipped = await _store_files(uow, ticket, mail, data_dir, max_attachment_bytes)
    uow.session.add(row)
    row.ticket_id = ticket.id
    await uow.session.flush()
    body = mail.new_text or mail.full_text or ("(no text)" if not files else "")
    payload: dict[str, Any] = {
        "mail_id": row.id,
        "message_id": mail.message_id,
        "subject": mail.subject,
        "from": {"email": mail.sender_email, "name": mail.sender_name},
        "to": list(mail.to),
        "cc": list(mail.cc),
        "has_html": mail.html is not None,
        "has_history": bool(mail.quoted or mail.signature),
        "quoted": mail.quoted[:20_000],
        "signature": mail.signature[:2_000],
        "attachments": [a.id for a in files],
        "skipped_attachments": skipped,
        "auto": list(mail.auto_reasons),
        "threaded_by": threaded_by,
        "parse_errors": list(mail.errors[:5]),
    }
    if linked_from is not None:
        payload["linked_ticket_id"] = linked_from
    event, _ = await do_customer_message(
        uow,
        ticket,
        author,
        body=body[:MAX_BODY_CHARS],
        kind=EventKind.email_in,
        payload=payload,
    )
    row.event_id = event.id
    for attachment in files:
        attachment.event_id = event.id
        uow.session.add(attachment)
    uow.session.add(row)

    result = IngestResult(
        IngestStatus.created if created else IngestStatus.appended,
        mail_id=row.id,
        ticket_id=ticket.id,
        event_id=event.id,
    )
    if created and contact is not None and contact.email:
        ack = await _maybe_auto_ack(uow, inbox, ticket, mail, contact.email)
        result.auto_ack_id = ack.id if ack else None
    await uow.session.flush()
    return result


async def _maybe_auto_ack(
    uow: UnitOfWork, inbox: Inbox, ticket: Ticket, mail: IncomingMail, address: str
) -> OutboundEmail | None:
    """RFC 3834: never answer automatic mail; at most one ack per sender per window."""
    if not inbox.auto_ack or mail.automated:
        return None
    if await inbox_for_address(uow.session, address) is not None:
        return None  # one of our own inboxes: answering would loop between them
    minutes = inbox.settings.get("auto_ack_throttle_minutes", DEFAULT_ACK_THROTTLE_MINUTES)
    since = utcnow() - timedelta(minutes=float(minutes))
    stmt = select(OutboundEmail.id).where(
        OutboundEmail.inbox_id == inbox.id,
        OutboundEmail.kind == OutboundKind.auto_ack,
        OutboundEmail.to_address == address.lower(),
        col(OutboundEmail.created_at) >= since,
    )
    if (await uow.session.exec(stmt.limit(1))).first() is not None:
        return None
    return await email_outbox.enqueue_outbound(
        uow, inbox, ticket, kind=OutboundKind.auto_ack, to=[address]
    )
