"""The widget's public HTTP side: inbox lookup by key, origin allowlist, the config the
widget renders from, and who may upload or download a visitor's files. No web framework."""

from __future__ import annotations

import re
from typing import Any

from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from app.models import (
    Attachment,
    Contact,
    Inbox,
    InboxKind,
    Ticket,
    TicketEvent,
)
from app.models.ticket import CUSTOMER_VISIBLE_KINDS
from app.services import chat, origins, presence, visitors
from app.services.errors import Forbidden, Invalid, NotFound

MAX_KEY = 64
MAX_MESSAGE_CHARS = 5000
MAX_NAME = 200
WIDGET_MAX_UPLOAD = 10 * 1024 * 1024
LOCALES = ("en", "de")

# Uploads a visitor may send, recognised by their first bytes rather than the declared
# type: a browser's claim about a file is the file's name, not its content.
UPLOAD_SIGNATURES: tuple[tuple[str, bytes, int], ...] = (
    ("image/png", b"\x89PNG\r\n\x1a\n", 0),
    ("image/jpeg", b"\xff\xd8\xff", 0),
    ("image/gif", b"GIF87a", 0),
    ("image/gif", b"GIF89a", 0),
    ("image/webp", b"WEBP", 8),
    ("application/pdf", b"%PDF-", 0),
)
UPLOAD_TYPES = frozenset(t for t, _, _ in UPLOAD_SIGNATURES)


def origin_allowed(inbox: Inbox, origin: str | None) -> bool:
    return origins.origin_allowed(origin, inbox.allowed_origins)


async def get_widget_inbox(session: AsyncSession, public_key: str | None) -> Inbox:
    if not public_key or len(public_key) > MAX_KEY:
        raise NotFound("unknown widget inbox")
    stmt = select(Inbox).where(Inbox.public_key == public_key, Inbox.kind == InboxKind.widget)
    inbox = (await session.exec(stmt)).first()
    if inbox is None:
        raise NotFound("unknown widget inbox")
    return inbox


def check_origin(inbox: Inbox, origin: str | None) -> None:
    if not origin_allowed(inbox, origin):
        raise Forbidden("this site is not allowed to use the widget")


def pick_locale(value: str | None) -> str:
    short = (value or "en").strip().lower()[:2]
    return short if short in LOCALES else "en"


def widget_max_upload(max_upload_bytes: int) -> int:
    return min(max_upload_bytes, WIDGET_MAX_UPLOAD)


def public_config(
    inbox: Inbox,
    *,
    locale: str,
    available: bool,
    max_upload_bytes: int,
    ice_servers: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """What the widget renders from; nothing secret (no identity secret, no origins).

    ``ice_servers`` are the STUN/TURN servers for the widget's calls (the same the
    server's call legs use), in ``RTCPeerConnection`` form.
    """
    theme = inbox.theme or {}
    color = str(theme.get("color", ""))
    greetings = (inbox.settings or {}).get("greetings", {})
    greeting = greetings.get(locale) if isinstance(greetings, dict) else None
    return {
        "title": str(theme.get("title") or inbox.name)[:MAX_NAME],
        "theme": {
            "color": color if re.fullmatch(r"#[0-9a-fA-F]{3,8}", color) else None,
            "position": "left" if theme.get("position") == "left" else "right",
            "title": str(theme.get("title") or inbox.name)[:MAX_NAME],
        },
        "greeting": str(greeting or inbox.greeting or ""),
        "prechat": bool(inbox.prechat_form),
        "available": available,
        "identity_verification": bool(inbox.identity_secret),
        "locale": locale,
        "max_upload_bytes": widget_max_upload(max_upload_bytes),
        "upload_types": sorted(UPLOAD_TYPES),
        "max_message_chars": MAX_MESSAGE_CHARS,
        "ice_servers": list(ice_servers or []),
    }


def sniff_upload(content: bytes) -> str:
    """The content type of an allowed upload, from its bytes; Invalid for anything else."""
    for ctype, magic, offset in UPLOAD_SIGNATURES:
        if content[offset : offset + len(magic)] == magic:
            if ctype == "image/webp" and not content.startswith(b"RIFF"):
                continue
            return ctype
    raise Invalid("only PNG, JPEG, GIF, WebP images and PDF files can be sent")


async def visitor_contact(
    session: AsyncSession,
    inbox: Inbox,
    secret: bytes,
    token: str | None,
    identity: dict[str, Any] | None = None,
) -> Contact | None:
    """Who is calling an HTTP widget endpoint: the verified customer when a valid identity
    comes along, else the anonymous visitor behind the token (None before their first
    message created a contact). Raises Forbidden for a token that does not verify."""
    visitor = visitors.read_token(secret, token, inbox.workspace_id)
    if visitor is None or inbox.id is None:
        raise Forbidden("a valid visitor token is required")
    who = chat.ChatVisitor(
        workspace_id=inbox.workspace_id, inbox_id=inbox.id, visitor_id=visitor.visitor_id
    )
    if identity:
        try:
            who.external_id = visitors.verify_identity(
                inbox.identity_secret,
                identity.get("id"),
                identity.get("expires"),
                identity.get("hash"),
            )
        except visitors.IdentityError as exc:
            raise Forbidden(exc.message) from None
    return await chat.visitor_contact(session, who)


async def open_chat_ticket(session: AsyncSession, inbox: Inbox, contact: Contact) -> Ticket | None:
    return await chat.open_chat_ticket(session, inbox.workspace_id, inbox.id or 0, contact.id)


def _references(event: TicketEvent, attachment_id: int) -> bool:
    for item in (event.payload or {}).get("attachments") or []:
        ref = item.get("id") if isinstance(item, dict) else item
        if ref == attachment_id:
            return True
    return False


async def visitor_attachment(
    session: AsyncSession, inbox: Inbox, contact: Contact | None, attachment_id: int
) -> Attachment:
    """An attachment the visitor may download: on one of their tickets and sent in an event
    they can see (a file on an internal note never reaches the widget)."""
    attachment = await session.get(Attachment, attachment_id)
    if (
        contact is None
        or attachment is None
        or attachment.workspace_id != inbox.workspace_id
        or attachment.ticket_id is None
    ):
        raise NotFound("attachment not found")
    ticket = await session.get(Ticket, attachment.ticket_id)
    if ticket is None or ticket.contact_id != contact.id:
        raise NotFound("attachment not found")
    stmt = select(TicketEvent).where(
        TicketEvent.ticket_id == ticket.id,
        col(TicketEvent.internal).is_(False),
        col(TicketEvent.kind).in_(list(CUSTOMER_VISIBLE_KINDS)),
    )
    for event in (await session.exec(stmt)).all():
        if event.id == attachment.event_id or _references(event, attachment_id):
            return attachment
    raise NotFound("attachment not found")


async def agents_available(session: AsyncSession, inbox: Inbox, presence_ttl: float) -> bool:
    """Is any agent of the inbox's team available right now (as the router sees it)?"""
    return await presence.team_available(session, inbox.workspace_id, inbox.team_id, presence_ttl)
