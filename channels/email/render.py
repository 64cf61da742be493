"""Build outbound mail: agent replies and auto-acknowledgements. Pure (templates from disk).

Threading in the customer's client relies on three things we set here:
`In-Reply-To`/`References` chaining the ticket's messages, a `Reply-To` carrying the
signed plus-address token (our strongest threading key), and the `[#n]` subject tag.
"""

from __future__ import annotations

import html
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.headerregistry import Address as HeaderAddress
from email.message import EmailMessage
from email.policy import SMTP
from email.utils import format_datetime
from pathlib import Path

import jinja2
from markupsafe import Markup

from channels.email.thread_keys import reply_subject, tag_subject

TEMPLATES = Path(__file__).resolve().parents[2] / "app" / "templates"
LOCALES = ("en", "de")
MAX_REFERENCES = 20  # long threads: keep the root and the most recent ids (RFC 5322 3.6.4)

_env = jinja2.Environment(
    loader=jinja2.FileSystemLoader(TEMPLATES),
    autoescape=jinja2.select_autoescape(enabled_extensions=("html",), default=False),
    keep_trailing_newline=True,
    undefined=jinja2.StrictUndefined,
)

_ACK_SUBJECT = {"en": "Received: {subject}", "de": "Eingegangen: {subject}"}


@dataclass(frozen=True)
class OutboundAttachment:
    filename: str
    content_type: str
    data: bytes


@dataclass(frozen=True)
class ReplyContext:
    """Everything needed to address and thread one outbound message."""

    inbox_address: str
    inbox_name: str
    sender_name: str  # agent display name, or the inbox name for automatic mail
    to: Sequence[str]
    ticket_number: int
    subject: str  # the ticket's subject; prefixes and tag are added here
    message_id: str  # without angle brackets
    reply_to: str | None = None  # the plus address with the signed token
    cc: Sequence[str] = ()
    in_reply_to: str | None = None
    references: Sequence[str] = ()
    locale: str = "en"
    date: datetime | None = None
    attachments: Sequence[OutboundAttachment] = field(default_factory=tuple)


def make_message_id(domain: str) -> str:
    """A fresh, globally unique id on the inbox's domain (stored without brackets)."""
    return f"{uuid.uuid4().hex}@{domain or 'helpdesk.invalid'}"


def domain_of(address: str) -> str:
    return address.rpartition("@")[2].strip().strip(">").lower()


def _locale(value: str) -> str:
    short = value.replace("_", "-").split("-", 1)[0].lower()
    return short if short in LOCALES else "en"


def _render(template: str, locale: str, ext: str, **values: object) -> str:
    return _env.get_template(f"email/{template}.{locale}.{ext}").render(**values)


def text_to_html(text: str) -> str:
    """Agent text as safe HTML paragraphs (the text may contain anything)."""
    paragraphs = [p for p in text.replace("\r\n", "\n").split("\n\n") if p.strip()]
    return "\n".join(
        "<p>" + html.escape(p.strip()).replace("\n", "<br>\n") + "</p>" for p in paragraphs
    )


def _chain(ctx: ReplyContext) -> list[str]:
    refs = [r for r in ctx.references if r]
    if ctx.in_reply_to and (not refs or refs[-1] != ctx.in_reply_to):
        refs.append(ctx.in_reply_to)
    refs = list(dict.fromkeys(refs))
    if len(refs) > MAX_REFERENCES:
        refs = [refs[0], *refs[-(MAX_REFERENCES - 1) :]]
    return refs


def _base(ctx: ReplyContext, subject: str) -> EmailMessage:
    msg = EmailMessage(policy=SMTP)
    local, _, domain = ctx.inbox_address.rpartition("@")
    msg["From"] = HeaderAddress(display_name=ctx.sender_name, username=local, domain=domain)
    msg["To"] = ", ".join(ctx.to)
    if ctx.cc:
        msg["Cc"] = ", ".join(ctx.cc)
    if ctx.reply_to:
        msg["Reply-To"] = ctx.reply_to
    msg["Subject"] = subject
    msg["Date"] = format_datetime(ctx.date or datetime.now(UTC))
    msg["Message-ID"] = f"<{ctx.message_id}>"
    if ctx.in_reply_to:
        msg["In-Reply-To"] = f"<{ctx.in_reply_to}>"
    chain = _chain(ctx)
    if chain:
        msg["References"] = " ".join(f"<{r}>" for r in chain)
    return msg


def _add_attachments(msg: EmailMessage, attachments: Sequence[OutboundAttachment]) -> None:
    for att in attachments:
        maintype, _, subtype = att.content_type.partition("/")
        if not subtype:
            maintype, subtype = "application", "octet-stream"
        # EmailMessage encodes non-ASCII filenames per RFC 2231 itself.
        msg.add_attachment(att.data, maintype=maintype, subtype=subtype, filename=att.filename)


def render_reply(ctx: ReplyContext, body: str, *, first_message: bool = False) -> EmailMessage:
    """An agent's message on a ticket: multipart/alternative (+ attachments)."""
    locale = _locale(ctx.locale)
    subject = (
        tag_subject(ctx.subject, ctx.ticket_number)
        if first_message
        else reply_subject(ctx.subject, ctx.ticket_number)
    )
    values = {
        "body": body.strip(),
        "body_html": Markup(text_to_html(body)),
        "agent_name": ctx.sender_name,
        "inbox_name": ctx.inbox_name,
        "number": ctx.ticket_number,
        "subject": subject,
    }
    msg = _base(ctx, subject)
    msg.set_content(_render("reply", locale, "txt", **values))
    msg.add_alternative(_render("reply", locale, "html", **values), subtype="html")
    _add_attachments(msg, ctx.attachments)
    return msg


def render_auto_ack(ctx: ReplyContext, customer_name: str = "") -> EmailMessage:
    """RFC 3834 auto-reply: marked so other robots never answer it."""
    locale = _locale(ctx.locale)
    base_subject = _ACK_SUBJECT[locale].format(subject=ctx.subject.strip() or "-")
    subject = tag_subject(base_subject, ctx.ticket_number)
    values = {
        "name": customer_name,
        "number": ctx.ticket_number,
        "subject": ctx.subject.strip(),
        "inbox_name": ctx.inbox_name,
    }
    msg = _base(ctx, subject)
    msg["Auto-Submitted"] = "auto-replied"
    msg["X-Auto-Response-Suppress"] = "All"
    msg.set_content(_render("auto_ack", locale, "txt", **values))
    msg.add_alternative(_render("auto_ack", locale, "html", **values), subtype="html")
    return msg
