"""Is a chat customer looking at the widget right now? (one row per widget connection)

Answers the email outbox's question "would this agent answer be seen live, or
must it go out by email?". A visitor counts as online while one of their
connections has a fresh heartbeat. A new visitor gets a contact only with their
first message, after the connection opened: rows therefore also match by the
contact's anonymous visitor identity, so the answer is right before the next
heartbeat fills in the contact.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import timedelta

from sqlalchemy import delete, or_, update
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from app.events import UnitOfWork
from app.models import ContactIdentity, IdentityKind, VisitorPresence
from app.models.base import utcnow

# Set from HELPDESK_CHAT_PRESENCE_TTL_SECONDS by the service that heartbeats the rows.
ttl_seconds = 20.0


async def do_connect(
    uow: UnitOfWork,
    *,
    conn_id: str,
    workspace_id: int,
    inbox_id: int,
    visitor_id: str,
    contact_id: int | None,
    node: str,
) -> None:
    uow.session.add(
        VisitorPresence(
            id=conn_id[:64],
            workspace_id=workspace_id,
            inbox_id=inbox_id,
            visitor_id=visitor_id[:64],
            contact_id=contact_id,
            node=node[:64],
            heartbeat_at=utcnow(),
        )
    )


async def do_disconnect(uow: UnitOfWork, conn_id: str) -> None:
    await uow.session.exec(delete(VisitorPresence).where(col(VisitorPresence.id) == conn_id[:64]))


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
    stmt = select(VisitorPresence.id).where(
        VisitorPresence.workspace_id == workspace_id,
        col(VisitorPresence.heartbeat_at) > cutoff,
        or_(
            col(VisitorPresence.contact_id) == contact_id,
            col(VisitorPresence.visitor_id).in_(visitor_ids),
        ),
    )
    return (await session.exec(stmt.limit(1))).first() is not None
