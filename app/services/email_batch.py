"""Store a batch of inbound mails in one transaction with few statements.

The channel's group commit (`channels.email.ingest`) hands over every mail that
queued while the previous transaction ran. Per batch, not per mail: the lookups
(`email_lookups`, at most three queries), one multi-row INSERT of the mail rows and
one of their attachments' rows, one UPDATE per table linking rows to their tickets
and events, the ticket numbers taken from the counter at once (unused ones given back), and
the new tickets and their events queued (`ticket_batch`) and inserted together:
one multi-row INSERT per table each time the queue is flushed. It is flushed when a
mail must see a queued ticket (it replies to a mail of the batch) or cannot be
queued itself, and at the end; so rows and announcements keep the arrival order.

A mail's raw source goes into its row when it is at most `inline_raw_bytes` long
(the common case: no file is created, the commit makes row and source durable
together), into a file otherwise. Attachments are always files.

Use: `open` (dedupe, raw sources and attachments, rows), then for each item in order
`thread_facts`, decide, `store`; then `finish`, then commit.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import insert
from sqlmodel import col

from app.events import UnitOfWork
from app.models import Attachment, Inbox, MailMessage
from app.services.attachments import write_blob
from app.services.email_ingest import (
    IncomingMail,
    IngestResult,
    IngestStatus,
    PendingLinks,
    StoredFiles,
    ThreadFacts,
    do_ingest_email,
    file_values,
    lookup_thread,
    mail_values,
)
from app.services.email_lookups import MailKeys, MailLookups
from app.services.row_insert import insert_rows
from app.services.ticket_batch import TimelineBatch


@dataclass
class _Files:
    """What `IngestBatch._write_files` wrote: rows to insert, and who owns which."""

    mails: list[dict[str, Any]] = field(default_factory=list)
    attachments: list[dict[str, Any]] = field(default_factory=list)
    owners: list[int] = field(default_factory=list)  # the item of each attachment row
    skipped: dict[int, list[str]] = field(default_factory=dict)


@dataclass(frozen=True)
class BatchItem:
    """One mail for one inbox, with the threading keys the channel extracted."""

    inbox: Inbox
    mail: IncomingMail
    thread_ids: Sequence[str] = ()
    token_ticket_id: int | None = None
    subject_number: int | None = None

    @property
    def message_id(self) -> str:
        return self.mail.message_id[:255]


_INSERT_MAILS = insert(MailMessage).returning(
    col(MailMessage.id), col(MailMessage.inbox_id), col(MailMessage.message_id)
)


class IngestBatch:
    def __init__(
        self,
        uow: UnitOfWork,
        items: Sequence[BatchItem],
        known: dict[int, MailLookups],
        *,
        data_dir: Path,
        max_attachment_bytes: int,
        inline_raw_bytes: int = 0,
    ) -> None:
        self.uow = uow
        self.items = items
        self.known = known
        self.data_dir = data_dir
        self.max_attachment_bytes = max_attachment_bytes
        self.inline_raw_bytes = inline_raw_bytes
        self.mail_ids: list[int | None] = [None] * len(items)  # None: a duplicate
        self.files: list[StoredFiles] = [StoredFiles()] * len(items)
        self.links = PendingLinks()
        self.queue = TimelineBatch()

    @classmethod
    async def open(
        cls,
        uow: UnitOfWork,
        items: Sequence[BatchItem],
        *,
        data_dir: Path,
        max_attachment_bytes: int,
        inline_raw_bytes: int = 0,
    ) -> IngestBatch:
        """Look up what the items need and store every new mail's raw source and row."""
        by_workspace: dict[int, list[MailKeys]] = {}
        for item in items:
            assert item.inbox.id is not None
            by_workspace.setdefault(item.inbox.workspace_id, []).append(
                MailKeys(
                    inbox_id=item.inbox.id,
                    message_id=item.message_id,
                    thread_ids=item.thread_ids,
                    token_ticket_id=item.token_ticket_id,
                    subject_number=item.subject_number,
                    sender_email=item.mail.sender_email,
                )
            )
        session = uow.session
        known = {ws: await MailLookups.load(session, ws, keys) for ws, keys in by_workspace.items()}
        batch = cls(
            uow,
            items,
            known,
            data_dir=data_dir,
            max_attachment_bytes=max_attachment_bytes,
            inline_raw_bytes=inline_raw_bytes,
        )
        rows: dict[tuple[int, str], int] = {}
        for index, item in enumerate(items):
            assert item.inbox.id is not None
            key = (item.inbox.id, item.message_id)
            if known[item.inbox.workspace_id].is_stored(*key) or key in rows:
                continue  # stored before, or earlier in this batch: a duplicate
            rows[key] = index
        if rows:
            new = list(rows.values())
            # Files are written before the rows that name them: a committed row always
            # has its file.
            # (In a worker thread it measured more CPU per mail, not less.)
            files = batch._write_files(new)
            # One multi-row INSERT (executemany on the connection: through the session
            # it would be an ORM bulk insert). RETURNING order is not guaranteed, but
            # (inbox, Message-ID) is unique.
            connection = await session.connection()
            result = await connection.execute(_INSERT_MAILS, files.mails)
            for row_id, inbox_id, message_id in result.all():
                batch.mail_ids[rows[(inbox_id, message_id)]] = row_id
            await batch._store_files(files)
        return batch

    def _write_files(self, new: list[int]) -> _Files:
        """The rows of the new mails (items `new`) with their raw sources (in the row or
        on disk), and their attachments on disk with their rows. A bounce's parts are not
        kept as attachments (its raw source has them)."""
        files = _Files()
        for index in new:
            item = self.items[index]
            raw = item.mail.raw
            if len(raw) <= self.inline_raw_bytes:
                files.mails.append(mail_values(item.inbox, item.mail, None, raw))
            else:
                raw_key, _ = write_blob(self.data_dir, item.inbox.workspace_id, raw)
                files.mails.append(mail_values(item.inbox, item.mail, raw_key))
            if item.mail.bounce is not None or not item.mail.attachments:
                continue
            rows, files.skipped[index] = file_values(
                item.inbox.workspace_id, item.mail, self.data_dir, self.max_attachment_bytes
            )
            files.attachments += rows
            files.owners += [index] * len(rows)
        return files

    async def _store_files(self, files: _Files) -> None:
        """The attachment rows of the batch, in one multi-row INSERT."""
        ids: dict[int, list[int]] = {}
        if files.attachments:
            connection = await self.uow.session.connection()
            table = Attachment.__table__  # type: ignore[attr-defined]
            file_ids = await insert_rows(connection, table, files.attachments)
            for file_id, index in zip(file_ids, files.owners, strict=True):
                ids.setdefault(index, []).append(file_id)
        for index, reasons in files.skipped.items():
            self.files[index] = StoredFiles(tuple(ids.get(index, ())), tuple(reasons))

    async def thread_facts(self, index: int) -> ThreadFacts:
        item = self.items[index]
        known = self.known[item.inbox.workspace_id]
        if known.waits_for_pending(item.thread_ids, item.subject_number):
            await self.queue.flush(self.uow)
        return await lookup_thread(
            self.uow.session,
            item.inbox.workspace_id,
            token_ticket_id=item.token_ticket_id,
            thread_ids=item.thread_ids,
            subject_number=item.subject_number,
            known=self.known[item.inbox.workspace_id],
        )

    async def store(self, index: int, *, ticket_id: int | None, threaded_by: str) -> IngestResult:
        item = self.items[index]
        mail_id = self.mail_ids[index]
        if mail_id is None:
            return IngestResult(IngestStatus.duplicate)
        known = self.known[item.inbox.workspace_id]
        # Tickets this and the later mails of the workspace may open, at most.
        known.numbers.wanted = sum(
            1
            for later, other in enumerate(self.items[index:], start=index)
            if other.inbox.workspace_id == item.inbox.workspace_id
            and self.mail_ids[later] is not None
            and other.mail.bounce is None
        )
        return await do_ingest_email(
            self.uow,
            item.inbox,
            item.mail,
            mail_id=mail_id,
            ticket_id=ticket_id,
            threaded_by=threaded_by,
            files=self.files[index],
            known=known,
            links=self.links,
            queue=self.queue,
        )

    async def finish(self) -> None:
        """Link every stored row to its ticket and event, give back unused ticket
        numbers; then the caller commits."""
        await self.queue.flush(self.uow)
        await self.links.write(self.uow.session)
        for known in self.known.values():
            await known.numbers.give_back(self.uow.session)
