"""Is a chat customer looking at the widget right now?

Answers the email outbox's question "would this agent answer be seen live, or
must it go out by email?". Two sources: `local`, the widget connections of this
process (exact, updated on connect and close), and `visitor_presence` rows, the
connections of every process, written in batches by each process's heartbeat
(so connection churn costs one transaction per interval, not one per connect).
A visitor counts as online while one of their connections is local or has a
fresh row. A new visitor gets a contact only with their first message, after the
connection opened: both sources therefore also match by the contact's anonymous
visitor identity.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import timedelta

from sqlalchemy import delete, or_, update
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from app.events import UnitOfWork
from app.models import ContactIdentity, IdentityKind, VisitorPresence
from app.models.base import utcnow
from app.services.chat import ChatVisitor

# Set from HELPDESK_CHAT_PRESENCE_TTL_SECONDS by the service that heartbeats the rows.
ttl_seconds = 20.0
# This process's open widget connections: conn id -> the visitor (kept current by
# the websocket code: the contact appears with the first message).
local: dict[str, ChatVisitor] = {}


def presence_row(conn_id: str, visitor: ChatVisitor, node: str) -> VisitorPresence:
    return VisitorPresence(
        id=conn_id[:64],
        workspace_id=visitor.workspace_id,
        inbox_id=visitor.inbox_id,
        visitor_id=visitor.visitor_id[:64],
        contact_id=visitor.contact_id,
        node=node[:64],
        heartbeat_at=utcnow(),
    )


async def do_sync_node(
    uow: UnitOfWork,
    node: str,
    *,
    opened: Mapping[str, ChatVisitor],
    closed: Iterable[str],
    contacts: Mapping[str, int | None],
) -> None:
    """One heartbeat of a node: add new connections, drop closed ones, refresh the rest."""
    gone = [c[:64] for c in closed]
    if gone:
        await uow.session.exec(delete(VisitorPresence).where(col(VisitorPresence.id).in_(gone)))
    for conn_id, visitor in opened.items():
        uow.session.add(presence_row(conn_id, visitor, node))
    await uow.session.flush()
    await do_heartbeat(uow, node, contacts)


async def do_heartbeat(uow: UnitOfWork, node: str, contacts: Mapping[str, int | None]) -> None:
    """Refresh this node's rows; `contacts` (conn id -> contact) fills in new contacts."""
    now = utcnow()
    await uow.session.exec(
        update(VisitorPresence).where(col(VisitorPresence.node) == node).values(heartbeat_at=now)
    )
    for conn_id, contact_id in contacts.items():
        if contact_id is not None:
            await uow.session.exec(
                update(VisitorPresence)
                .where(
                    col(VisitorPresence.id) == conn_id[:64],
                    col(VisitorPresence.contact_id).is_(None),
                )
                .values(contact_id=contact_id)
            )


async def do_sweep_stale(uow: UnitOfWork, ttl: float) -> None:
    cutoff = utcnow() - timedelta(seconds=ttl)
    await uow.session.exec(
        delete(VisitorPresence).where(col(VisitorPresence.heartbeat_at) <= cutoff)
    )


async def do_drop_node(uow: UnitOfWork, node: str) -> None:
    await uow.session.exec(delete(VisitorPresence).where(col(VisitorPresence.node) == node))


async def contact_online(
    session: AsyncSession, workspace_id: int, contact_id: int, ttl: float | None = None
) -> bool:
    """Whether the contact has a live widget connection (any inbox of the workspace)."""
    cutoff = utcnow() - timedelta(seconds=ttl_seconds if ttl is None else ttl)
    visitor_ids = select(ContactIdentity.value).where(
        ContactIdentity.workspace_id == workspace_id,
        ContactIdentity.contact_id == contact_id,
        ContactIdentity.kind == IdentityKind.visitor,
    )
    mine = [v for v in local.values() if v.workspace_id == workspace_id]
    if any(v.contact_id == contact_id for v in mine):
        return True
    if mine:
        anonymous = set((await session.exec(visitor_ids)).all())
        if any(v.visitor_id in anonymous for v in mine):
            return True
    stmt = select(VisitorPresence.id).where(
        VisitorPresence.workspace_id == workspace_id,
        col(VisitorPresence.heartbeat_at) > cutoff,
        or_(
            col(VisitorPresence.contact_id) == contact_id,
            col(VisitorPresence.visitor_id).in_(visitor_ids),
        ),
    )
    return (await session.exec(stmt.limit(1))).first() is not None
