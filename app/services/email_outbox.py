"""The email outbox: rows written in the same transaction as the agent's reply,
claimed and settled by the sending worker (channels/email/send.py).

Delivery guarantees:
- a reply that committed has its outbox row (the timeline hook runs inside the
  transaction), so nothing is lost between "agent pressed send" and the relay;
- the worker commits `sending` (attempts+1) *before* it talks to the relay, and a
  row left in `sending` by a crash is settled as failed instead of being resent,
  so a restart never sends the same mail twice (the agent sees it and can resend);
- transient relay errors retry with exponential backoff up to MAX_ATTEMPTS.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from sqlalchemy import update
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from app.events import UnitOfWork, ticket_topic
from app.models import (
    ActorType,
    Attachment,
    Channel,
    Contact,
    EventKind,
    Inbox,
    InboxKind,
    MailDirection,
    MailMessage,
    OutboundEmail,
    OutboundKind,
    OutboxState,
    Ticket,
    TicketEvent,
    Workspace,
)
from app.models.base import utcnow
from app.services import timeline, visitor_presence

MAX_ATTEMPTS = 8
MAX_PARTICIPANTS_CC = 20
MAX_THREAD_REFERENCES = 30

# The sending worker registers a callback here so a committed reply is sent at once
# instead of at the next poll.
wakers: list[Callable[[], None]] = []


def _wake() -> None:
    for waker in list(wakers):
        waker()


def new_message_id(address: str) -> str:
    domain = address.rpartition("@")[2].strip().lower() or "helpdesk.invalid"
    return f"{uuid.uuid4().hex}@{domain}"


async def _thread_ids(session: AsyncSession, ticket_id: int) -> tuple[str | None, list[str]]:
    """(In-Reply-To, References) for the next outbound mail on a ticket."""
    stmt = (
        select(MailMessage.message_id, MailMessage.direction)
        .where(MailMessage.ticket_id == ticket_id)
        .order_by(col(MailMessage.id))
    )
    rows = (await session.exec(stmt)).all()
    ids = [m for m, _ in rows if not m.endswith("@helpdesk.invalid")]
    inbound = [m for m, d in rows if d is MailDirection.inbound and m in ids]
    in_reply_to = inbound[-1] if inbound else (ids[-1] if ids else None)
    if len(ids) > MAX_THREAD_REFERENCES:
        ids = [ids[0], *ids[-(MAX_THREAD_REFERENCES - 1) :]]
    return in_reply_to, ids


async def enqueue_outbound(
    uow: UnitOfWork,
    inbox: Inbox,
    ticket: Ticket,
    *,
    kind: OutboundKind,
    to: Sequence[str],
    cc: Sequence[str] = (),
    event_id: int | None = None,
) -> OutboundEmail:
    assert inbox.id is not None and ticket.id is not None and inbox.address
    in_reply_to, references = await _thread_ids(uow.session, ticket.id)
    message_id = new_message_id(inbox.address)
    mail = MailMessage(
        workspace_id=ticket.workspace_id,
        inbox_id=inbox.id,
        ticket_id=ticket.id,
        event_id=event_id,
        direction=MailDirection.outbound,
        message_id=message_id,
        subject=ticket.subject,
        from_address=inbox.address,
        source="outbox",
    )
    uow.session.add(mail)
    await uow.session.flush()
    assert mail.id is not None
    outbound = OutboundEmail(
        workspace_id=ticket.workspace_id,
        inbox_id=inbox.id,
        ticket_id=ticket.id,
        event_id=event_id,
        mail_id=mail.id,
        kind=kind,
        message_id=message_id,
        to_address=to[0].lower(),
        recipients={"to": list(to), "cc": list(cc)},
        in_reply_to=in_reply_to,
        references=references,
    )
    uow.session.add(outbound)
    await uow.session.flush()
    uow.after_commit.append(_wake)
    return outbound


async def reply_email_inbox(session: AsyncSession, ticket: Ticket) -> Inbox | None:
    """The email inbox that answers a chat ticket by email.

    In order: the widget inbox's `reply_email_inbox_id` setting, an email inbox of
    the widget's team, the workspace's `default_email_inbox_id` setting, the
    workspace's oldest email inbox."""
    widget = await session.get(Inbox, ticket.inbox_id) if ticket.inbox_id else None
    stmt = (
        select(Inbox)
        .where(
            Inbox.workspace_id == ticket.workspace_id,
            Inbox.kind == InboxKind.email,
            col(Inbox.address).is_not(None),
        )
        .order_by(col(Inbox.id))
    )
    inboxes = list((await session.exec(stmt)).all())
    if not inboxes:
        return None
    by_id = {i.id: i for i in inboxes}
    explicit = widget.settings.get("reply_email_inbox_id") if widget else None
    if explicit in by_id:
        return by_id[explicit]
    team_id = widget.team_id if widget is not None else ticket.team_id
    for inbox in inboxes:
        if team_id is not None and inbox.team_id == team_id:
            return inbox
    workspace = await session.get(Workspace, ticket.workspace_id)
    default = workspace.settings.get("default_email_inbox_id") if workspace else None
    return by_id.get(default, inboxes[0])


async def _offline_chat_answer(uow: UnitOfWork, ticket: Ticket, event: TicketEvent) -> None:
    """An agent's chat answer also goes out by email when the customer left the widget.

    Decided when the answer is written: a customer who is connected sees it live;
    one who left an offline message (or closed the tab) gets it by email, with a
    Reply-To token so their email answer threads back into this chat ticket."""
    if event.internal or event.actor_type not in (ActorType.agent, ActorType.api):
        return
    if "merged_from" in event.payload or ticket.contact_id is None:
        return
    contact = await uow.session.get(Contact, ticket.contact_id)
    if contact is None or contact.id is None or not contact.email:
        return  # nobody to mail; the widget shows the answer when they come back
    if await visitor_presence.contact_online(uow.session, ticket.workspace_id, contact.id):
        return
    inbox = await reply_email_inbox(uow.session, ticket)
    if inbox is None or not inbox.address:
        event.payload = {
            **event.payload,
            "email": {"state": "failed", "error": "no email inbox to answer offline chats from"},
        }
        return
    outbound = await enqueue_outbound(
        uow, inbox, ticket, kind=OutboundKind.reply, to=[contact.email], event_id=event.id
    )
    event.payload = {
        **event.payload,
        "email": {"to": contact.email, "inbox_id": inbox.id, "reason": "customer offline"},
        "delivery": {"state": "pending", "outbound_id": outbound.id},
        "message_id": outbound.message_id,
    }


async def on_timeline_event(uow: UnitOfWork, ticket: Ticket, event: TicketEvent) -> None:
    """Timeline hook: an email_out event on an email ticket becomes an outbox row,
    and so does an agent's chat answer to a customer who is not in the widget."""
    if event.kind is EventKind.message and ticket.channel is Channel.chat:
        await _offline_chat_answer(uow, ticket, event)
        return
    if event.kind is not EventKind.email_out or ticket.inbox_id is None:
        return
    if "merged_from" in event.payload or event.actor_type is ActorType.contact:
        return  # copies made by a merge were delivered (or not) on their own ticket
    inbox = await uow.session.get(Inbox, ticket.inbox_id)
    if inbox is not None and inbox.kind is InboxKind.widget:
        # An offline message left in the widget (app/services/chat.py makes it an email
        # ticket of the widget inbox): answered from the team's email inbox.
        inbox = await reply_email_inbox(uow.session, ticket)
        if inbox is None:
            event.payload = {
                **event.payload,
                "delivery": {"state": "failed", "error": "no email inbox to answer from"},
            }
            return
    if inbox is None or inbox.kind is not InboxKind.email or not inbox.address:
        return
    contact = await uow.session.get(Contact, ticket.contact_id) if ticket.contact_id else None
    if contact is None or not contact.email:
        event.payload = {
            **event.payload,
            "delivery": {"state": "failed", "error": "the ticket's contact has no email address"},
        }
        return
    own = {inbox.address.lower(), contact.email.lower()}
    cc = [p for p in ticket.participants if p.lower() not in own][:MAX_PARTICIPANTS_CC]
    outbound = await enqueue_outbound(
        uow, inbox, ticket, kind=OutboundKind.reply, to=[contact.email], cc=cc, event_id=event.id
    )
    event.payload = {
        **event.payload,
        "delivery": {"state": "pending", "outbound_id": outbound.id},
        "message_id": outbound.message_id,
    }


def install() -> None:
    """Register the timeline hook once per process (idempotent)."""
    if on_timeline_event not in timeline.event_hooks:
        timeline.event_hooks.append(on_timeline_event)


# -- worker side -------------------------------------------------------------------


@dataclass(frozen=True)
class AttachmentRef:
    filename: str
    content_type: str
    storage_key: str


@dataclass(frozen=True)
class OutboundData:
    """Everything the channel needs to render and send one outbox row."""

    id: int
    kind: OutboundKind
    workspace_id: int
    ticket_id: int
    ticket_number: int
    ticket_subject: str
    inbox_address: str
    inbox_name: str
    sender_name: str
    customer_name: str
    locale: str
    body: str
    message_id: str
    in_reply_to: str | None
    references: list[str]
    to: list[str]
    cc: list[str]
    raw_key: str | None
    first_message: bool
    attachments: list[AttachmentRef] = field(default_factory=list)


async def recover_interrupted(uow: UnitOfWork, lease: timedelta) -> int:
    """Rows a crashed worker left in `sending`: settle them, never resend blindly."""
    cutoff = utcnow() - lease
    stmt = select(OutboundEmail).where(
        OutboundEmail.state == OutboxState.sending, col(OutboundEmail.claimed_at) < cutoff
    )
    rows = (await uow.session.exec(stmt)).all()
    for row in rows:
        await _settle(
            uow,
            row,
            OutboxState.failed,
            "interrupted while sending; not retried automatically to avoid a duplicate",
        )
    return len(rows)


async def claim_due(uow: UnitOfWork, limit: int = 10) -> list[int]:
    """Mark due rows `sending` (one conditional UPDATE each, safe across processes)."""
    now = utcnow()
    stmt = (
        select(OutboundEmail.id)
        .where(OutboundEmail.state == OutboxState.pending, OutboundEmail.next_attempt_at <= now)
        .order_by(col(OutboundEmail.next_attempt_at), col(OutboundEmail.id))
        .limit(limit)
    )
    claimed: list[int] = []
    for outbound_id in (await uow.session.exec(stmt)).all():
        assert outbound_id is not None
        result = await uow.session.exec(
            update(OutboundEmail)
            .where(
                col(OutboundEmail.id) == outbound_id,
                col(OutboundEmail.state) == OutboxState.pending,
            )
            .values(
                state=OutboxState.sending,
                attempts=col(OutboundEmail.attempts) + 1,
                claimed_at=now,
            )
        )
        if result.rowcount:
            claimed.append(outbound_id)
    return claimed


async def load_outbound(session: AsyncSession, outbound_id: int) -> OutboundData | None:
    row = await session.get(OutboundEmail, outbound_id)
    if row is None:
        return None
    ticket = await session.get(Ticket, row.ticket_id)
    inbox = await session.get(Inbox, row.inbox_id)
    mail = await session.get(MailMessage, row.mail_id)
    if ticket is None or inbox is None or mail is None or not inbox.address:
        return None
    event = await session.get(TicketEvent, row.event_id) if row.event_id else None
    contact = await session.get(Contact, ticket.contact_id) if ticket.contact_id else None
    attachments: list[AttachmentRef] = []
    ids = (
        [int(i) for i in (event.payload.get("attachments") or []) if str(i).isdigit()]
        if event
        else []
    )
    if ids:
        stmt = select(Attachment).where(
            Attachment.workspace_id == ticket.workspace_id, col(Attachment.id).in_(ids)
        )
        attachments = [
            AttachmentRef(a.filename, a.content_type, a.storage_key)
            for a in (await session.exec(stmt)).all()
        ]
    first = not await _has_earlier_mail(session, ticket.id or 0, row.mail_id)
    return OutboundData(
        id=outbound_id,
        kind=row.kind,
        workspace_id=row.workspace_id,
        ticket_id=row.ticket_id,
        ticket_number=ticket.number,
        ticket_subject=ticket.subject,
        inbox_address=inbox.address,
        inbox_name=inbox.name,
        # Customers see the agent's name; integrations and robots speak as the inbox.
        sender_name=(
            event.actor_name
            if event and event.actor_type is ActorType.agent and event.actor_name
            else inbox.name
        ),
        customer_name=contact.name if contact else "",
        locale=str(inbox.settings.get("locale", "en")),
        body=event.body if event else "",
        message_id=row.message_id,
        in_reply_to=row.in_reply_to,
        references=list(row.references),
        to=list(row.recipients.get("to", [])),
        cc=list(row.recipients.get("cc", [])),
        raw_key=mail.raw_key,
        first_message=first,
        attachments=attachments,
    )


async def _has_earlier_mail(session: AsyncSession, ticket_id: int, mail_id: int) -> bool:
    stmt = select(MailMessage.id).where(
        MailMessage.ticket_id == ticket_id, col(MailMessage.id) < mail_id
    )
    return (await session.exec(stmt.limit(1))).first() is not None


async def record_rendered(
    uow: UnitOfWork, outbound_id: int, *, raw_key: str, size: int, subject: str
) -> None:
    """Keep the exact bytes: retries resend them and the API serves them as .eml."""
    row = await uow.session.get(OutboundEmail, outbound_id)
    if row is None:
        return
    mail = await uow.session.get(MailMessage, row.mail_id)
    if mail is not None:
        mail.raw_key, mail.size, mail.subject = raw_key, size, subject[:500]
        uow.session.add(mail)


def backoff(attempts: int, base: float) -> timedelta:
    return timedelta(seconds=min(base * (2 ** max(0, attempts - 1)), 3600.0))


async def settle(
    uow: UnitOfWork,
    outbound_id: int,
    state: OutboxState,
    error: str = "",
    *,
    retry_base: float = 30.0,
) -> OutboxState:
    """Record a send outcome. A transient failure (`pending`) backs off or gives up."""
    row = await uow.session.get(OutboundEmail, outbound_id)
    if row is None:
        return state
    if state is OutboxState.pending and row.attempts >= MAX_ATTEMPTS:
        state = OutboxState.failed
        error = f"gave up after {row.attempts} attempts: {error}"
    if state is OutboxState.pending:
        row.next_attempt_at = utcnow() + backoff(row.attempts, retry_base)
    await _settle(uow, row, state, error)
    return state


async def _settle(uow: UnitOfWork, row: OutboundEmail, state: OutboxState, error: str) -> None:
    now = utcnow()
    row.state = state
    row.last_error = error[:1000]
    if state is OutboxState.sent:
        row.sent_at = now
    uow.session.add(row)
    await _delivery_on_event(uow, row, state.value, error)


async def _delivery_on_event(
    uow: UnitOfWork, row: OutboundEmail, state: str, error: str, extra: dict[str, Any] | None = None
) -> None:
    """Show the delivery state on the timeline event and tell live viewers."""
    if row.event_id is None:
        return
    event = await uow.session.get(TicketEvent, row.event_id)
    if event is None:
        return
    delivery = {
        "state": state,
        "outbound_id": row.id,
        "attempts": row.attempts,
        "error": error[:500],
        "at": utcnow().isoformat(),
        **(extra or {}),
    }
    event.payload = {**event.payload, "delivery": delivery}
    uow.session.add(event)
    uow.publish_on_commit(
        ticket_topic(row.workspace_id, row.ticket_id),
        {
            "type": "ticket.event.delivery",
            "workspace": row.workspace_id,
            "ticket": row.ticket_id,
            "event_id": row.event_id,
            "seq": event.seq,
            "delivery": delivery,
        },
    )


async def find_outbound_by_message_id(
    session: AsyncSession, workspace_id: int, message_id: str
) -> OutboundEmail | None:
    stmt = select(OutboundEmail).where(
        OutboundEmail.workspace_id == workspace_id, OutboundEmail.message_id == message_id
    )
    return (await session.exec(stmt)).first()


async def mark_bounced(
    uow: UnitOfWork, row: OutboundEmail, *, status: str, diagnostic: str, recipients: list[str]
) -> None:
    """A DSN reported this message as undeliverable."""
    row.state = OutboxState.failed
    row.last_error = f"bounced {status}: {diagnostic}"[:1000]
    uow.session.add(row)
    await _delivery_on_event(
        uow,
        row,
        "bounced",
        row.last_error,
        {"status": status, "recipients": recipients},
    )
