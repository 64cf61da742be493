"""Raw bytes -> committed ticket event, shared by the SMTP listener and the IMAP poller.

Parse (pure), look the threading keys up, decide (pure), write (services), commit.
Returns only after the commit, which is what lets the SMTP listener say 250 safely.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from sqlalchemy.exc import IntegrityError

from app.context import AppContext
from app.models import Inbox
from app.services import email_ingest
from app.services.email_ingest import IncomingMail, IngestResult, IngestStatus, MailFile
from channels.email.parse import ParsedEmail, parse_email
from channels.email.quoting import split_reply
from channels.email.thread_keys import (
    ThreadLookups,
    choose_thread,
    subject_tag,
    token_key,
    token_ticket_id,
)

log = logging.getLogger(__name__)

# Parsing is CPU work; small mail is parsed inline (a thread hop costs more than it
# saves), big mail in a worker thread so one 20 MB message cannot stall the loop.
INLINE_PARSE_BYTES = 256 * 1024
_LOCK_KEY = "email_sqlite_writer_lock"


def _writer_turn(ctx: AppContext) -> contextlib.AbstractAsyncContextManager[Any]:
    """On SQLite, queue this process's mail writers on an asyncio lock.

    SQLite has one writer at a time anyway; without the lock, concurrent sessions
    wait for it inside SQLite's busy handler, which sleeps in growing steps (up to
    100 ms) and leaves the lock idle between holders. Measured with 8 concurrent
    SMTP sessions: about half the throughput and several times the p99."""
    if not ctx.settings.is_sqlite:
        return contextlib.nullcontext()
    lock = ctx.extras.get(_LOCK_KEY)
    if lock is None:
        lock = ctx.extras[_LOCK_KEY] = asyncio.Lock()
    assert isinstance(lock, asyncio.Lock)
    return lock


def to_incoming(parsed: ParsedEmail, source: str) -> IncomingMail:
    parts = split_reply(parsed.text)
    bounce = parsed.bounce
    return IncomingMail(
        raw=parsed.raw,
        message_id=parsed.dedupe_id,
        subject=parsed.subject,
        sender_email=parsed.sender.normalized if parsed.sender else None,
        sender_name=parsed.sender.name if parsed.sender else "",
        to=tuple(a.normalized for a in parsed.to),
        cc=tuple(a.normalized for a in parsed.cc),
        new_text=parts.new_text,
        full_text=parsed.text,
        quoted=parts.quoted,
        signature=parts.signature,
        html=parsed.html,
        attachments=tuple(
            MailFile(a.filename, a.content_type, a.data, a.content_id, a.inline, a.kind)
            for a in parsed.attachments
        ),
        auto_reasons=parsed.auto.reasons,
        bounce_of=bounce.original_message_id if bounce else None,
        bounce=(
            {
                "status": bounce.status,
                "action": bounce.action,
                "diagnostic": bounce.diagnostic,
                "recipients": list(bounce.recipients),
            }
            if bounce is not None and bounce.is_failure
            else None
        ),
        errors=tuple(parsed.errors),
        source=source,
    )


async def parse(raw: bytes, envelope_sender: str | None) -> ParsedEmail:
    if len(raw) <= INLINE_PARSE_BYTES:
        return parse_email(raw, envelope_sender=envelope_sender)
    return await asyncio.to_thread(parse_email, raw, envelope_sender=envelope_sender)


async def ingest_for_inbox(
    ctx: AppContext,
    inbox_id: int,
    parsed: ParsedEmail,
    *,
    recipients: Sequence[str],
    source: str,
) -> IngestResult:
    """Thread and store one parsed mail for one inbox; commits before returning."""
    mail = to_incoming(parsed, source)
    key = token_key(ctx.settings.secret)
    data_dir: Path = ctx.settings.data_dir
    for attempt in range(2):
        try:
            async with _writer_turn(ctx), ctx.uow() as uow:
                inbox = await uow.session.get(Inbox, inbox_id)
                if inbox is None:
                    raise LookupError(f"inbox {inbox_id} disappeared")
                facts = await email_ingest.lookup_thread(
                    uow.session,
                    inbox.workspace_id,
                    token_ticket_id=token_ticket_id(key, recipients),
                    thread_ids=parsed.thread_ids,
                    subject_number=subject_tag(parsed.subject),
                )
                choice = choose_thread(
                    mail.sender_email,
                    ThreadLookups(
                        token_ticket_id=facts.token_ticket_id,
                        reference_ticket_ids=facts.reference_ticket_ids,
                        subject_ticket_id=facts.subject_ticket_id,
                        subject_ticket_addresses=facts.subject_addresses,
                    ),
                )
                result = await email_ingest.do_ingest_email(
                    uow,
                    inbox,
                    mail,
                    ticket_id=choice.ticket_id,
                    threaded_by=choice.by.value,
                    data_dir=data_dir,
                    max_attachment_bytes=ctx.settings.max_upload_bytes,
                )
                await uow.commit()
                return result
        except IntegrityError:
            # The same Message-ID committed concurrently (SMTP and IMAP at once, or a
            # client retrying on another connection): the second one is a duplicate.
            if attempt:
                raise
    return IngestResult(IngestStatus.duplicate)


async def ingest_raw(
    ctx: AppContext,
    raw: bytes,
    inbox_ids: Sequence[int],
    *,
    recipients: Sequence[str],
    envelope_sender: str | None = None,
    source: str = "smtp",
) -> list[IngestResult]:
    parsed = await parse(raw, envelope_sender)
    # The token may sit in the envelope (SMTP RCPT) or only in the headers (IMAP).
    everyone = [*recipients, *(a.email for a in parsed.to), *(a.email for a in parsed.cc)]
    results = []
    for inbox_id in dict.fromkeys(inbox_ids):
        results.append(
            await ingest_for_inbox(ctx, inbox_id, parsed, recipients=everyone, source=source)
        )
    return results
