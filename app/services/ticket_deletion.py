"""Deleting a ticket for good: its timeline, files, calls, mail and whatever else points at it.

Admins only (like erasing a contact). Everything goes in the caller's transaction; the
files go only after it commits (`UnitOfWork.after_commit`), so a crash in between can
leave orphan files on disk but never a row whose file is missing. Files are stored once
per content hash and workspace (`attachments.write_blob`), so a file another row still
names (another ticket's attachment with the same bytes, a mail's raw source) stays. A
small inbound mail keeps its source in its row (`raw_data`, no `raw_key`): it goes with
the row.

A ticket merged into another one left copies of its events there, naming its
attachments and mails; those rows move to the ticket holding the copies instead of
going, so deleting the source never breaks the target. Deleting a merge target turns
its sources back into plain (closed) tickets.

Webhook deliveries already queued for the ticket's earlier changes still go out (they
describe what happened while it existed); a `ticket.deleted` delivery follows them.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import delete, update
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from app.events import UnitOfWork, contact_topic, workspace_topic
from app.models import (
    Attachment,
    Call,
    CallbackRequest,
    IdempotencyRecord,
    MailMessage,
    OutboundEmail,
    Role,
    Ticket,
    TicketEvent,
)
from app.models.base import utcnow
from app.models.call import LIVE_CALL_STATES
from app.services import audit, webhook_outbox
from app.services.actors import Actor
from app.services.attachments import storage_path
from app.services.calls import recording_key
from app.services.errors import Conflict
from app.services.routing import LOCK_CONTACT, xact_lock
from app.services.tickets import get_ticket

log = logging.getLogger(__name__)

# Merge chains are short in practice; the bound only protects against a corrupt cycle.
MAX_MERGE_CHAIN = 50


@dataclass
class DeletedTicket:
    """What a deletion removed: reported in the audit log, files unlinked after commit."""

    id: int
    number: int
    counts: dict[str, int] = field(default_factory=dict)
    # Storage keys (under DATA_DIR/attachments) no remaining row names.
    files: list[str] = field(default_factory=list)


async def check_delete_ticket(session: AsyncSession, actor: Actor, ticket_id: int) -> Ticket:
    """The ticket, if `actor` may delete it now: admins only, and no call in progress."""
    actor.require(Role.admin)
    ticket = await get_ticket(session, actor, ticket_id)
    stmt = select(Call.id).where(Call.ticket_id == ticket_id, col(Call.state).in_(LIVE_CALL_STATES))
    live = (await session.exec(stmt.limit(1))).first()
    if live is not None:
        raise Conflict(
            f"ticket #{ticket.number} has a call in progress; delete it once the call has ended",
            {"call_id": live},
        )
    return ticket


async def do_delete_ticket(
    uow: UnitOfWork, actor: Actor, data_dir: Path, ticket_id: int
) -> DeletedTicket:
    """Delete the ticket and everything that belongs to it; the caller commits."""
    session = uow.session
    actor.require(Role.admin)
    ticket = await get_ticket(session, actor, ticket_id)
    if ticket.contact_id is not None:
        # A call starting for this contact takes the same lock (PostgreSQL; SQLite's
        # BEGIN IMMEDIATE already serialises): no call can attach to a vanishing ticket.
        await xact_lock(session, LOCK_CONTACT, ticket.contact_id)
    await check_delete_ticket(session, actor, ticket_id)
    ws = ticket.workspace_id
    stored = select(Attachment.id, Attachment.storage_key).where(_of(Attachment, ticket_id))
    files = dict((await session.exec(stored)).all())
    mailed = select(MailMessage.id, MailMessage.raw_key).where(_of(MailMessage, ticket_id))
    mails = dict((await session.exec(mailed)).all())
    call_ids = (await session.exec(select(Call.id).where(_of(Call, ticket_id)))).all()
    keep_files, keep_mails = await _kept_by_merge(
        session, ticket, {i for i in files if i}, {i for i in mails if i}
    )
    await _rehome(session, Attachment, keep_files)
    await _rehome(session, MailMessage, keep_mails)
    candidates = {key for i, key in files.items() if i not in keep_files}
    candidates |= {key for i, key in mails.items() if i not in keep_mails and key}
    # A recording that failed half-way has a file but no attachment row.
    candidates |= {recording_key(ws, i) for i in call_ids if i is not None}

    result = DeletedTicket(ticket_id, ticket.number, await _delete_rows(session, ticket))
    counts = result.counts
    counts["kept_for_merged_tickets"] = len(keep_files) + len(keep_mails)
    result.files = sorted(candidates - await _still_named(session, candidates))
    counts["files"] = len(result.files)
    audit.record(
        uow,
        actor,
        "ticket.delete",
        "ticket",
        ticket_id,
        {"number": ticket.number, "counts": dict(counts)},
    )
    gone = {"id": ticket_id, "number": ticket.number, "team_id": ticket.team_id}
    uow.publish_on_commit(workspace_topic(ws), {"type": "ticket.deleted", "ticket": gone})
    if ticket.contact_id is not None:
        # The customer's open widgets drop the conversation from the screen too.
        uow.publish_on_commit(
            contact_topic(ws, ticket.contact_id),
            {"type": "ticket.deleted", "ticket": {"id": ticket_id}},
        )
    await webhook_outbox.enqueue(
        uow,
        ws,
        "ticket.deleted",
        {"id": ticket_id, "number": ticket.number, "deleted_at": utcnow().isoformat()},
    )
    uow.after_commit.append(lambda: remove_files(data_dir, result.files))
    return result


async def _delete_rows(session: AsyncSession, ticket: Ticket) -> dict[str, int]:
    """Delete everything naming the ticket, then the ticket; returns rows per kind."""
    ticket_id, ws = ticket.id, ticket.workspace_id
    callbacks = select(CallbackRequest.id).where(CallbackRequest.ticket_id == ticket_id)
    await _run(session, update(Call).where(col(Call.callback_id).in_(callbacks)), callback_id=None)
    counts = {
        "calls": await _run(session, delete(Call).where(_of(Call, ticket_id))),
        "callbacks": await _run(
            session, delete(CallbackRequest).where(_of(CallbackRequest, ticket_id))
        ),
        "outbound_emails": await _run(
            session, delete(OutboundEmail).where(_of(OutboundEmail, ticket_id))
        ),
        "mails": await _run(session, delete(MailMessage).where(_of(MailMessage, ticket_id))),
        "attachments": await _run(session, delete(Attachment).where(_of(Attachment, ticket_id))),
    }
    merged_here = update(Ticket).where(col(Ticket.merged_into_id) == ticket_id)
    await _run(session, merged_here, merged_into_id=None)
    # The search index follows these deletes through its triggers (migration 0002).
    counts["events"] = await _run(session, delete(TicketEvent).where(_of(TicketEvent, ticket_id)))
    # A retried create must not answer with a ticket that no longer exists.
    created_by = col(IdempotencyRecord.response)["id"].as_integer() == ticket_id
    await _run(
        session,
        delete(IdempotencyRecord).where(col(IdempotencyRecord.workspace_id) == ws, created_by),
    )
    await session.delete(ticket)
    await session.flush()
    return counts


def remove_files(data_dir: Path, keys: Iterable[str]) -> int:
    """Unlink stored files; runs after the commit, so it must never raise.

    Not atomic with uploads: one that stores the very same bytes in the moment between
    the commit and this unlink finds the file present, skips writing it, and loses it.
    """
    removed = 0
    for key in keys:
        try:
            storage_path(data_dir, key).unlink()
            removed += 1
        except FileNotFoundError:
            pass
        except OSError:
            log.exception("could not remove %s; it is an orphan now", key)
    return removed


def _of(model: Any, ticket_id: int | None) -> Any:
    """The rows of `model` that belong to the ticket."""
    return col(model.ticket_id) == ticket_id


async def _run(session: AsyncSession, statement: Any, **values: Any) -> int:
    """One bulk UPDATE (with `values`) or DELETE; the rows it touched."""
    if values:
        statement = statement.values(**values)
    result = await session.exec(statement.execution_options(synchronize_session=False))
    return int(result.rowcount or 0)


async def _merge_chain(session: AsyncSession, ticket: Ticket) -> list[int]:
    """The tickets this one was merged into, nearest first (a target may be merged on)."""
    chain: list[int] = []
    seen = {ticket.id}
    next_id = ticket.merged_into_id
    while next_id is not None and next_id not in seen and len(chain) < MAX_MERGE_CHAIN:
        seen.add(next_id)
        chain.append(next_id)
        target = await session.get(Ticket, next_id)
        next_id = target.merged_into_id if target is not None else None
    return chain


def _ids(value: Any) -> set[int]:
    items = value if isinstance(value, list) else [value]
    return {i for i in items if isinstance(i, int) and not isinstance(i, bool)}


async def _kept_by_merge(
    session: AsyncSession, ticket: Ticket, attachment_ids: set[int], mail_ids: set[int]
) -> tuple[dict[int, int], dict[int, int]]:
    """Attachments and mails that merge copies elsewhere still show: {row id: new ticket}."""
    chain = await _merge_chain(session, ticket)
    if not chain or not (attachment_ids or mail_ids):
        return {}, {}
    rank = {ticket_id: i for i, ticket_id in enumerate(chain)}
    stmt = select(TicketEvent.ticket_id, TicketEvent.payload).where(
        col(TicketEvent.ticket_id).in_(chain)
    )
    files: dict[int, int] = {}
    mails: dict[int, int] = {}
    for holder, payload in (await session.exec(stmt)).all():
        if "merged_from" not in payload:
            continue
        named_files = _ids(payload.get("attachments")) | _ids(payload.get("attachment_id"))
        for found, wanted, named in (
            (files, attachment_ids, named_files),
            (mails, mail_ids, _ids(payload.get("mail_id"))),
        ):
            for row_id in named & wanted:
                if row_id not in found or rank[holder] < rank[found[row_id]]:
                    found[row_id] = holder
    return files, mails


async def _rehome(
    session: AsyncSession, model: type[Attachment] | type[MailMessage], moves: dict[int, int]
) -> None:
    by_holder: dict[int, list[int]] = {}
    for row_id, holder in moves.items():
        by_holder.setdefault(holder, []).append(row_id)
    for holder, row_ids in by_holder.items():
        # event_id named this ticket's own event, which is about to go.
        moved = update(model).where(col(model.id).in_(row_ids))
        await _run(session, moved, ticket_id=holder, event_id=None)


async def _still_named(session: AsyncSession, keys: set[str]) -> set[str]:
    """Storage keys some remaining row still names (shared content, merge copies)."""
    if not keys:
        return set()
    listed = sorted(keys)
    files = select(Attachment.storage_key).where(col(Attachment.storage_key).in_(listed))
    raws = select(MailMessage.raw_key).where(col(MailMessage.raw_key).in_(listed))
    named = set((await session.exec(files)).all())
    return named | {key for key in (await session.exec(raws)).all() if key}
