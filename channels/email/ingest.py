"""Raw bytes -> committed ticket event, shared by the SMTP listener and the IMAP poller.

Parse (pure, in the caller's task), then queue for the writer: look the threading
keys up, decide (pure), write (services), commit. Returns only after the commit,
which is what lets the SMTP listener say 250 safely.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy.exc import IntegrityError, OperationalError

from app.context import AppContext
from app.events import UnitOfWork
from app.models import Inbox
from app.services.email_batch import BatchItem, IngestBatch
from app.services.email_ingest import IncomingMail, IngestResult, MailFile
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
_QUEUE_KEY = "email_ingest_queue"
# Bounds of one group-commit transaction: it holds SQLite's write lock while it runs.
MAX_BATCH_MESSAGES = 32
MAX_BATCH_BYTES = 16 * 1024 * 1024
# After a batch of several mails (concurrent deliveries), wait this long for more
# before the next transaction, like PostgreSQL's commit_delay: measured with 8 and
# 16 SMTP sessions, about 10% less CPU per mail at the same throughput and latency.
# A lone mail is never delayed.
COMMIT_DELAY_SECONDS = 0.002


@functools.lru_cache(maxsize=8)
def _token_key(secret: bytes) -> bytes:
    """`token_key`, derived once per secret instead of once per mail."""
    return token_key(secret)


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


async def _store_batch(
    uow: UnitOfWork, ctx: AppContext, batch: Sequence[_Job]
) -> list[list[IngestResult]]:
    """Every mail of the batch for each of its inboxes, in arrival order (not committed)."""
    inboxes: dict[int, Inbox] = {}
    items: list[BatchItem] = []
    for job in batch:
        for inbox_id in job.inbox_ids:
            inbox = inboxes.get(inbox_id) or await uow.session.get(Inbox, inbox_id)
            if inbox is None:
                raise LookupError(f"inbox {inbox_id} disappeared")
            inboxes[inbox_id] = inbox
            items.append(
                BatchItem(
                    inbox=inbox,
                    mail=job.mail,
                    thread_ids=job.parsed.thread_ids,
                    token_ticket_id=job.token_ticket_id,
                    subject_number=job.subject_number,
                )
            )
    stored = await IngestBatch.open(
        uow,
        items,
        data_dir=ctx.settings.data_dir,
        max_attachment_bytes=ctx.settings.max_upload_bytes,
    )
    results: list[IngestResult] = []
    for index, item in enumerate(items):
        facts = await stored.thread_facts(index)
        choice = choose_thread(
            item.mail.sender_email,
            ThreadLookups(
                token_ticket_id=facts.token_ticket_id,
                reference_ticket_ids=facts.reference_ticket_ids,
                subject_ticket_id=facts.subject_ticket_id,
                subject_ticket_addresses=facts.subject_addresses,
            ),
        )
        results.append(
            await stored.store(index, ticket_id=choice.ticket_id, threaded_by=choice.by.value)
        )
    await stored.finish()
    per_job: list[list[IngestResult]] = []
    for job in batch:
        per_job.append(results[: len(job.inbox_ids)])
        del results[: len(job.inbox_ids)]
    return per_job


@dataclass
class _Job:
    parsed: ParsedEmail
    mail: IncomingMail
    inbox_ids: list[int]
    token_ticket_id: int | None
    subject_number: int | None
    done: asyncio.Future[list[IngestResult]]


class IngestQueue:
    """Group commit: mail that arrives while a transaction runs goes into the next one.

    One writer task per process drains the queue; each transaction stores every
    queued message (up to a bound) and commits once, and only then are the callers
    answered, so "250 OK" still means "committed". Concurrent SMTP sessions thus
    share one BEGIN/COMMIT, one inbox and webhook lookup, and on SQLite never wait
    for each other's write lock. A lone message is written at once; only while mail
    arrives concurrently does the writer wait `COMMIT_DELAY_SECONDS` for more.

    A message that fails must not cost the others: the batch is rolled back and
    every message of it is retried in a transaction of its own (cheaper than a
    SAVEPOINT around each message, which would cost two statements per message
    for a case that should not happen). Only a database-level failure (locked,
    unreachable) fails the whole batch at once: retrying one by one would only
    repeat the wait.
    """

    def __init__(self, ctx: AppContext) -> None:
        self.ctx = ctx
        self.pending: deque[_Job] = deque()
        self.writing = 0  # mails in the transaction now running
        self.last_batch = 0
        self.writer: asyncio.Task[None] | None = None

    async def submit(self, job: _Job) -> list[IngestResult]:
        self.pending.append(job)
        writer = self.writer
        if writer is None or writer.done():
            self.writer = self.ctx.spawn(self._drain(), name="email-ingest-writer")
        return await job.done

    def _next_batch(self) -> list[_Job]:
        batch: list[_Job] = []
        size = 0
        while self.pending and len(batch) < MAX_BATCH_MESSAGES and size < MAX_BATCH_BYTES:
            job = self.pending.popleft()
            if job.done.done():
                continue  # the sender gave up (connection lost): it was never acknowledged
            batch.append(job)
            size += len(job.parsed.raw)
        return batch

    async def _drain(self) -> None:
        batch: list[_Job] = []
        try:
            while self.pending:
                if self.last_batch > 1 and len(self.pending) < MAX_BATCH_MESSAGES:
                    await asyncio.sleep(COMMIT_DELAY_SECONDS)
                else:
                    # One turn of the loop: sessions whose DATA arrived with this
                    # wake-up join the batch instead of waiting for the next commit.
                    await asyncio.sleep(0)
                batch = self._next_batch()
                self.last_batch = self.writing = len(batch)
                if batch:
                    await self._write(batch)
                batch = []
                self.writing = 0
            self.last_batch = 0  # idle: the next mail is written at once
        except BaseException:
            self.writing = self.last_batch = 0
            # Cancelled at shutdown: nobody may wait forever (the SMTP client gets 451).
            for job in [*batch, *self.pending]:
                if not job.done.done():
                    job.done.set_exception(RuntimeError("mail ingest stopped"))
            self.pending.clear()
            raise

    async def _write(self, batch: list[_Job]) -> None:
        try:
            results = await self._transaction(batch)
        except OperationalError as exc:
            for job in batch:
                _fail(job, exc)
            return
        except Exception as exc:
            if len(batch) == 1:
                _fail(batch[0], exc)
                return
            log.warning(
                "a batch of %d mails failed (%s); storing them one by one",
                len(batch),
                type(exc).__name__,
            )
            for job in batch:
                await self._write([job])
            return
        for job, result in zip(batch, results, strict=True):
            if not job.done.done():
                job.done.set_result(result)

    async def _transaction(self, batch: list[_Job]) -> list[list[IngestResult]]:
        for attempt in range(2):
            try:
                async with self.ctx.uow() as uow:
                    results = await _store_batch(uow, self.ctx, batch)
                    await uow.commit()
                    return results
            except IntegrityError:
                # The same Message-ID committed concurrently by another process (or
                # node): on the retry it is a duplicate.
                if attempt or len(batch) > 1:
                    raise
        raise AssertionError("unreachable")


def _fail(job: _Job, exc: BaseException) -> None:
    if not job.done.done():
        job.done.set_exception(exc)


def ingest_queue(ctx: AppContext) -> IngestQueue:
    """This app's queue (one per context, made on first use)."""
    queue = ctx.extras.get(_QUEUE_KEY)
    if queue is None:
        queue = ctx.extras[_QUEUE_KEY] = IngestQueue(ctx)
    assert isinstance(queue, IngestQueue)
    return queue


async def ingest_raw(
    ctx: AppContext,
    raw: bytes,
    inbox_ids: Sequence[int],
    *,
    recipients: Sequence[str],
    envelope_sender: str | None = None,
    source: str = "smtp",
) -> list[IngestResult]:
    """Parse, thread and store one message for each inbox; returns after the commit."""
    parsed = await parse(raw, envelope_sender)
    # The token may sit in the envelope (SMTP RCPT) or only in the headers (IMAP).
    everyone = [*recipients, *(a.email for a in parsed.to), *(a.email for a in parsed.cc)]
    job = _Job(
        parsed=parsed,
        mail=to_incoming(parsed, source),
        inbox_ids=list(dict.fromkeys(inbox_ids)),
        token_ticket_id=token_ticket_id(_token_key(ctx.settings.secret), everyone),
        subject_number=subject_tag(parsed.subject),
        done=asyncio.get_running_loop().create_future(),
    )
    return await ingest_queue(ctx).submit(job)
