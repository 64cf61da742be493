"""Inbound mail into the ticket stream: dedupe, thread, contact, timeline, bounces, auto-ack.

The channel layer parses (channels/email/parse.py) and decides the thread from the
facts `lookup_thread` returns; this module (with `email_batch`, which stores a
batch of mails at once) owns every database write, all inside the caller's unit
of work, so "250 OK" is only ever said after one commit.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from enum import StrEnum
from pathlib import Path
from typing import Any

from sqlalchemy import bindparam, func, update
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
from app.services.email_lookups import MAX_THREAD_IDS, MailLookups
from app.services.errors import Invalid
from app.services.inbox_addresses import address_key
from app.services.ticket_batch import (
    QueuedEvent,
    TimelineBatch,
    can_append,
    hooks_ignore_customer_messages,
)
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
    base = address_key(address)
    if base is None:
        return None
    stmt = select(Inbox).where(Inbox.kind == InboxKind.email, func.lower(Inbox.address) == base)
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
    known: MailLookups,
) -> ThreadFacts:
    """Resolve the threading keys of one mail against this workspace's data (`known`,
    loaded for its batch, answers what would otherwise be two queries)."""
    token_ticket: int | None = None
    if token_ticket_id is not None:
        ticket = await _live_ticket(session, workspace_id, token_ticket_id)
        token_ticket = ticket.id if ticket else None
    reference_ids: list[int] = []
    ids = list(dict.fromkeys(thread_ids))[:MAX_THREAD_IDS]
    if ids:
        owner = known.owners_of(ids)
        for message_id in ids:
            if message_id in owner:
                ticket = await _live_ticket(session, workspace_id, owner[message_id])
                if ticket is not None and ticket.id not in reference_ids:
                    reference_ids.append(ticket.id or 0)
    subject_ticket: int | None = None
    addresses: frozenset[str] = frozenset()
    if subject_number is not None:
        found = known.ticket_numbered(subject_number)
        ticket = await _live_ticket(session, workspace_id, found) if found is not None else None
        if ticket is not None:
            subject_ticket = ticket.id
            contact = await session.get(Contact, ticket.contact_id) if ticket.contact_id else None
            allowed = {p.lower() for p in ticket.participants}
            if contact is not None and contact.email:
                allowed.add(contact.email.lower())
            addresses = frozenset(allowed)
    return ThreadFacts(token_ticket, tuple(reference_ids), subject_ticket, addresses)


def mail_values(
    inbox: Inbox, mail: IncomingMail, raw_key: str | None, raw_data: bytes | None = None
) -> dict[str, Any]:
    """The `mail_message` row of an inbound mail, before it has a ticket and an event;
    its source is either the file `raw_key` or the bytes `raw_data`."""
    assert inbox.id is not None
    return {
        "workspace_id": inbox.workspace_id,
        "inbox_id": inbox.id,
        "ticket_id": None,
        "event_id": None,
        "direction": MailDirection.inbound,
        "message_id": mail.message_id[:255],
        "subject": mail.subject[:500],
        "from_address": (mail.sender_email or "")[:254],
        "raw_key": raw_key,
        "raw_data": raw_data,
        "size": len(mail.raw),
        "html": mail.html,
        "full_text": mail.full_text[:MAX_FULL_TEXT],
        "auto_reasons": list(mail.auto_reasons),
        "parse_errors": [e[:300] for e in mail.errors[:20]],
        "source": mail.source,
        "created_at": utcnow(),
    }


# Built once: on the ingest path, building a statement costs more than running it.
_LINK_MAIL = (
    update(MailMessage)
    .where(col(MailMessage.id) == bindparam("row_id"))
    .values(ticket_id=bindparam("ticket"), event_id=bindparam("event"))
    .execution_options(synchronize_session=False)
)
_LINK_FILE = (
    update(Attachment)
    .where(col(Attachment.id) == bindparam("row_id"))
    .values(ticket_id=bindparam("ticket"), event_id=bindparam("event"))
    .execution_options(synchronize_session=False)
)


@dataclass
class PendingLinks:
    """Which ticket and event each stored mail and file belongs to, written at the end.

    A mail's row is inserted before its event (the event's payload names the row),
    so the link is an UPDATE; collected over a batch it is one executemany UPDATE
    per table instead of one statement per mail."""

    mails: list[dict[str, Any]] = field(default_factory=list)
    files: list[dict[str, Any]] = field(default_factory=list)

    async def write(self, session: AsyncSession) -> None:
        # On the connection: through the session, a list of parameters would make
        # this an ORM bulk UPDATE, which wants primary keys by attribute name.
        connection = await session.connection()
        for statement, params in ((_LINK_MAIL, self.mails), (_LINK_FILE, self.files)):
            if params:
                await connection.execute(statement, params)
        self.mails, self.files = [], []


async def _handle_bounce(
    uow: UnitOfWork, inbox: Inbox, mail: IncomingMail, mail_id: int, links: PendingLinks
) -> IngestResult:
    outbound = (
        await email_outbox.find_outbound_by_message_id(
            uow.session, inbox.workspace_id, mail.bounce_of
        )
        if mail.bounce_of
        else None
    )
    if outbound is None:
        return IngestResult(IngestStatus.stored, mail_id=mail_id, notes=["bounce of unknown mail"])
    info = mail.bounce or {}
    links.mails.append({"row_id": mail_id, "ticket": outbound.ticket_id, "event": None})
    await email_outbox.mark_bounced(
        uow,
        outbound,
        status=str(info.get("status", "")),
        diagnostic=str(info.get("diagnostic", "")),
        recipients=[str(r) for r in info.get("recipients", [])],
    )
    return IngestResult(IngestStatus.bounce, mail_id=mail_id, ticket_id=outbound.ticket_id)


@dataclass(frozen=True)
class StoredFiles:
    """A mail's attachments as stored by its batch: rows (ticket and event are set once
    they exist) and the files that were not kept, with why."""

    ids: tuple[int, ...] = ()
    skipped: tuple[str, ...] = ()


def file_values(
    workspace_id: int, mail: IncomingMail, data_dir: Path, max_bytes: int
) -> tuple[list[dict[str, Any]], list[str]]:
    """The `attachment` rows of the mail's files, their bytes written; and what was skipped."""
    rows: list[dict[str, Any]] = []
    skipped: list[str] = []
    now = utcnow()
    for item in mail.attachments:
        if not item.data:
            skipped.append(f"{item.filename}: empty")
            continue
        if len(item.data) > max_bytes:
            skipped.append(f"{item.filename}: larger than {max_bytes} bytes")
            continue
        key, sha = write_blob(data_dir, workspace_id, item.data)
        rows.append(
            {
                "workspace_id": workspace_id,
                "ticket_id": None,
                "event_id": None,
                "filename": safe_filename(item.filename),
                "content_type": item.content_type[:255],
                "size": len(item.data),
                "sha256": sha,
                "storage_key": key,
                "content_id": item.content_id,
                "inline": item.inline,
                "created_at": now,
            }
        )
    return rows, skipped


async def _sender_contact(
    uow: UnitOfWork,
    workspace_id: int,
    mail: IncomingMail,
    known: MailLookups,
    queued: TimelineBatch | None,
) -> Contact | None:
    if not mail.sender_email:
        return None
    name = mail.sender_name[:200]
    contact = known.contact(mail.sender_email)
    if contact is not None:
        if name and not contact.name:  # as `do_resolve_contact` does
            contact.name = name.strip()
            uow.session.add(contact)
        return contact
    # A sender the batch does not know yet: look up once more (cheap), or create.
    if queued is not None:
        await queued.flush(uow)  # a new contact is announced after the mails before it
    try:
        contact, _ = await do_resolve_contact(
            uow, workspace_id, IdentityIn(IdentityKind.email, mail.sender_email), name=name
        )
    except Invalid:
        contact = None  # an unusable From; the mail is still kept and shown
    known.remember_contact(mail.sender_email, contact)
    return contact


def _participants(ticket: Ticket, inbox: Inbox, mail: IncomingMail) -> list[str]:
    return _with_participants(ticket.participants, inbox, mail)


def _with_participants(participants: list[str], inbox: Inbox, mail: IncomingMail) -> list[str]:
    ours = {(inbox.address or "").lower()}
    sender = (mail.sender_email or "").lower()
    current = list(participants)
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
    mail_id: int,
    ticket_id: int | None,
    threaded_by: str,
    files: StoredFiles,
    known: MailLookups,
    links: PendingLinks,
    queue: TimelineBatch | None = None,
) -> IngestResult:
    """Put one stored inbound mail (row `mail_id`, its attachments `files`, see
    `email_batch`) on a ticket.

    The caller writes `links` and commits; nothing is published before that.
    `known` is kept current, so later mails of the same batch see this one.

    With `queue`, the ticket and event are queued there when they can be (the
    result's ids are set when the caller flushes it); what cannot be queued is
    written at once, after flushing what was queued before it."""
    assert inbox.id is not None
    if mail.bounce is not None:
        result = await _handle_bounce(uow, inbox, mail, mail_id, links)
        known.remember_mail(inbox.id, mail.message_id[:255], result.ticket_id)
        return result

    ws = inbox.workspace_id
    system = Actor.system(ws, name=inbox.name or "Email")
    contact = await _sender_contact(uow, ws, mail, known, queue)
    author = (
        Actor.contact(ws, contact.id, contact.name or contact.email or "")
        if contact is not None and contact.id is not None
        else Actor.system(ws, name=mail.sender_email or "Unknown sender")
    )

    ticket = await _live_ticket(uow.session, ws, ticket_id) if ticket_id is not None else None
    linked_from: int | None = None
    if ticket is not None and _too_old_to_reopen(ticket, inbox):
        linked_from, ticket = ticket.id, None

    # The files were stored before the event, whose payload names them; linked at the end.
    body = mail.new_text or mail.full_text or ("(no text)" if not files.ids else "")
    payload: dict[str, Any] = {
        "mail_id": mail_id,
        "message_id": mail.message_id,
        "subject": mail.subject,
        "from": {"email": mail.sender_email, "name": mail.sender_name},
        "to": list(mail.to),
        "cc": list(mail.cc),
        "has_html": mail.html is not None,
        "has_history": bool(mail.quoted or mail.signature),
        "quoted": mail.quoted[:20_000],
        "signature": mail.signature[:2_000],
        "attachments": list(files.ids),
        "skipped_attachments": list(files.skipped),
        "auto": list(mail.auto_reasons),
        "threaded_by": threaded_by,
        "parse_errors": list(mail.errors[:5]),
    }
    if linked_from is not None:
        payload["linked_ticket_id"] = linked_from
    if queue is not None:
        if _queueable(inbox, ticket):
            return await _enqueue(
                uow, queue, inbox, mail, ticket, contact, author, body, payload, mail_id, files,
                known, links,
            )  # fmt: skip
        await queue.flush(uow)  # written in arrival order
    created = ticket is None
    if ticket is None:
        # With its first message: the ticket is inserted with that event's seq
        # already counted, which saves the counter UPDATE.
        ticket, first = await do_create_ticket(
            uow,
            system,
            subject=mail.subject or "(no subject)",
            contact_id=contact.id if contact else None,
            channel=Channel.email,
            inbox_id=inbox.id,
            team_id=inbox.team_id,
            message=body[:MAX_BODY_CHARS],
            message_kind=EventKind.email_in,
            message_actor=author,
            message_payload=payload,
            number=await known.numbers.take(uow.session),
        )
        assert first is not None
        event = first
    else:
        event, _ = await do_customer_message(
            uow,
            ticket,
            author,
            body=body[:MAX_BODY_CHARS],
            kind=EventKind.email_in,
            payload=payload,
        )
    assert ticket.id is not None
    participants = _participants(ticket, inbox, mail)
    if participants != ticket.participants:
        ticket.participants = participants
        uow.session.add(ticket)
    links.mails.append({"row_id": mail_id, "ticket": ticket.id, "event": event.id})
    for file_id in files.ids:
        links.files.append({"row_id": file_id, "ticket": ticket.id, "event": event.id})

    result = IngestResult(
        IngestStatus.created if created else IngestStatus.appended,
        mail_id=mail_id,
        ticket_id=ticket.id,
        event_id=event.id,
    )
    if created and contact is not None and contact.email:
        ack = await _maybe_auto_ack(uow, inbox, ticket, mail, contact.email)
        result.auto_ack_id = ack.id if ack else None
    known.remember_mail(inbox.id, mail.message_id[:255], ticket.id)
    if created:
        known.remember_ticket(ticket)
    return result


def _queueable(inbox: Inbox, ticket: Ticket | None) -> bool:
    # Queued events are rows, not ORM objects, and the timeline hooks are not run for them.
    if not hooks_ignore_customer_messages():
        return False
    if ticket is None:
        return not inbox.auto_ack  # an acknowledgement is written with its ticket
    return can_append(ticket)


async def _enqueue(
    uow: UnitOfWork,
    queue: TimelineBatch,
    inbox: Inbox,
    mail: IncomingMail,
    ticket: Ticket | None,
    contact: Contact | None,
    author: Actor,
    body: str,
    payload: dict[str, Any],
    mail_id: int,
    files: StoredFiles,
    known: MailLookups,
    links: PendingLinks,
) -> IngestResult:
    """The rest of `do_ingest_email`, with the ticket and event queued in `queue`."""
    assert inbox.id is not None
    inbox_id, message_id = inbox.id, mail.message_id[:255]
    now = utcnow()
    number: int | None = None
    event: QueuedEvent
    if ticket is None:
        number = await known.numbers.take(uow.session)
        new, event = queue.open_ticket(
            Actor.system(inbox.workspace_id, name=inbox.name or "Email"),
            number=number,
            subject=mail.subject or "(no subject)",
            contact_id=contact.id if contact else None,
            channel=Channel.email,
            inbox_id=inbox.id,
            team_id=inbox.team_id,
            message=body[:MAX_BODY_CHARS],
            message_kind=EventKind.email_in,
            message_actor=author,
            message_payload=payload,
            now=now,
        )
        participants = _with_participants([], inbox, mail)
        if participants:
            new.later["participants"] = participants
        known.remember_pending(message_id, number)
    else:
        event = queue.append(
            ticket, author, body=body[:MAX_BODY_CHARS], kind=EventKind.email_in, payload=payload,
            now=now,
        )  # fmt: skip
        participants = _participants(ticket, inbox, mail)
        if participants != ticket.participants:
            ticket.participants = participants
            uow.session.add(ticket)
        known.remember_mail(inbox_id, message_id, ticket.id)
    result = IngestResult(
        IngestStatus.created if ticket is None else IngestStatus.appended, mail_id=mail_id
    )

    def stored(event: QueuedEvent) -> None:
        ticket_id = event.ticket_id
        result.ticket_id, result.event_id = ticket_id, event.id
        links.mails.append({"row_id": mail_id, "ticket": ticket_id, "event": event.id})
        for file_id in files.ids:
            links.files.append({"row_id": file_id, "ticket": ticket_id, "event": event.id})
        if number is not None:
            known.remember_mail(inbox_id, message_id, ticket_id)
            known.remember_number(number, ticket_id)

    event.stored = stored
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
