"""Full-text search over ticket subjects and timeline bodies.

Placeholder LIKE implementation; replaced by SQLite FTS5 / PostgreSQL tsvector.
"""

from __future__ import annotations

from sqlalchemy import func, or_
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from app.models import Ticket, TicketEvent


def _like(q: str) -> str:
    escaped = q.lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


async def matching_ticket_ids(
    session: AsyncSession, workspace_id: int, q: str, *, limit: int = 1000
) -> list[int]:
    like = _like(q.strip())
    in_events = select(TicketEvent.ticket_id).where(
        TicketEvent.workspace_id == workspace_id,
        func.lower(TicketEvent.body).like(like, escape="\\"),
    )
    stmt = (
        select(Ticket.id)
        .where(
            Ticket.workspace_id == workspace_id,
            or_(
                func.lower(Ticket.subject).like(like, escape="\\"),
                col(Ticket.id).in_(in_events),
            ),
        )
        .limit(limit)
    )
    return [i for i in (await session.exec(stmt)).all() if i is not None]
