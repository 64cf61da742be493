"""The queries behind the agent console: inbox views, ticket context, supervisor station.

Read-only and scoped by the actor's workspace and visibility like every other
query; enrichments (names, waiting time, last event) are fetched per page in a
fixed number of queries, never one per ticket.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, and_, func, or_
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from app.models import (
    ActorType,
    Agent,
    Channel,
    Contact,
    Priority,
    Team,
    Ticket,
    TicketEvent,
    TicketStatus,
)
from app.models.base import utcnow
from app.services.actors import Actor
from app.services.errors import Invalid
from app.services.sql_dialect import without_index
from app.services.tickets import tag_clause, ticket_public, visibility_clause
from app.services.workspaces import team_ids_by_agent

VIEWS = ("mine", "unassigned", "teams", "all")
SORTS = ("updated", "waiting", "sla")
ACTIVE = (TicketStatus.new, TicketStatus.open, TicketStatus.pending)
MAX_ROWS = 200
# "waiting" is computed per ticket, so it orders the most recent candidates only.
WAITING_CANDIDATES = 500
PREVIEW_CHARS = 140


@dataclass
class InboxQuery:
    view: str = "all"
    status: list[TicketStatus] = field(default_factory=lambda: list(ACTIVE))
    channel: Channel | None = None
    priority: Priority | None = None
    tag: str | None = None
    team_id: int | None = None
    q: str | None = None
    sort: str = "updated"
    updated_since: datetime | None = None
    ticket_ids: list[int] | None = None
    limit: int = 100


def check_query(query: InboxQuery) -> InboxQuery:
    if query.view not in VIEWS:
        raise Invalid(f"view must be one of {', '.join(VIEWS)}")
    if query.sort not in SORTS:
        raise Invalid(f"sort must be one of {', '.join(SORTS)}")
    if not 1 <= query.limit <= MAX_ROWS:
        raise Invalid(f"limit must be 1 to {MAX_ROWS}")
    if query.q is not None and len(query.q) > 200:
        raise Invalid("search text is longer than 200 characters")
    if query.tag is not None and len(query.tag) > 64:
        raise Invalid("tag is longer than 64 characters")
    return query


async def inbox_rows(
    session: AsyncSession, actor: Actor, query: InboxQuery
) -> list[dict[str, Any]]:
    check_query(query)
    # A search's matches are few: they must drive, not the workspace's index
    # (`without_index`).
    narrow = bool(query.q and query.q.strip())
    workspace = without_index(session, col(Ticket.workspace_id)) if narrow else Ticket.workspace_id
    # Besides the workspace: also what a search's candidates are drawn from.
    conditions: list[ColumnElement[bool]] = [col(Ticket.merged_into_id).is_(None)]
    clause = visibility_clause(actor)
    if clause is not None:
        conditions.append(clause)
    if query.view == "mine":
        conditions.append(col(Ticket.assignee_id) == actor.id)
    elif query.view == "unassigned":
        conditions.append(col(Ticket.assignee_id).is_(None))
    elif query.view == "teams":
        conditions.append(col(Ticket.team_id).in_(sorted(actor.team_ids)))
    if query.status:
        conditions.append(col(Ticket.status).in_(query.status))
    if query.channel is not None:
        conditions.append(col(Ticket.channel) == query.channel)
    if query.priority is not None:
        conditions.append(col(Ticket.priority) == query.priority)
    if query.team_id is not None:
        conditions.append(col(Ticket.team_id) == query.team_id)
    if query.tag:
        conditions.append(tag_clause(session, query.tag.strip().lower()))
    if query.updated_since is not None:
        conditions.append(col(Ticket.updated_at) >= query.updated_since)
    if query.ticket_ids is not None:
        conditions.append(col(Ticket.id).in_(query.ticket_ids[:MAX_ROWS]))
    stmt = select(Ticket).where(workspace == actor.workspace_id, *conditions)
    if query.q and query.q.strip():
        from app.services.search import matching_tickets

        q = query.q.strip()
        stmt = stmt.where(matching_tickets(session, actor.workspace_id, q, conditions))
    if query.sort == "sla":
        stmt = stmt.order_by(
            col(Ticket.due_at).is_(None), col(Ticket.due_at).asc(), col(Ticket.id).asc()
        )
        stmt = stmt.limit(query.limit)
    elif query.sort == "waiting":
        stmt = stmt.order_by(col(Ticket.updated_at).desc()).limit(WAITING_CANDIDATES)
    else:
        stmt = stmt.order_by(col(Ticket.updated_at).desc(), col(Ticket.id).desc())
        stmt = stmt.limit(query.limit)
    tickets = list((await session.exec(stmt)).all())
    rows = await enrich(session, actor.workspace_id, tickets)
    if query.sort == "waiting":
        far = "9999"
        rows.sort(key=lambda r: (r["waiting_since"] or far, r["id"]))
        rows = rows[: query.limit]
    return rows


async def waiting_since(session: AsyncSession, ticket_ids: Sequence[int]) -> dict[int, datetime]:
    """When the customer started waiting: their first message after the last agent answer."""
    if not ticket_ids:
        return {}
    last_agent = (
        select(
            col(TicketEvent.ticket_id).label("tid"),
            func.max(TicketEvent.created_at).label("at"),
        )
        .where(
            col(TicketEvent.ticket_id).in_(ticket_ids),
            TicketEvent.actor_type == ActorType.agent,
            col(TicketEvent.internal).is_(False),
        )
        .group_by(col(TicketEvent.ticket_id))
        .subquery()
    )
    stmt = (
        select(col(TicketEvent.ticket_id), func.min(TicketEvent.created_at))
        .outerjoin(last_agent, last_agent.c.tid == TicketEvent.ticket_id)
        .where(
            col(TicketEvent.ticket_id).in_(ticket_ids),
            TicketEvent.actor_type == ActorType.contact,
            or_(last_agent.c.at.is_(None), col(TicketEvent.created_at) > last_agent.c.at),
        )
        .group_by(col(TicketEvent.ticket_id))
    )
    out: dict[int, datetime] = {}
    for tid, at in (await session.exec(stmt)).all():
        if at is not None:
            out[int(tid)] = _aware(at)
    return out


def _aware(value: datetime | str) -> datetime:
    # Aggregates bypass the column type, so SQLite hands back naive strings/datetimes.
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    if value.tzinfo is None:
        from datetime import UTC

        value = value.replace(tzinfo=UTC)
    return value


async def enrich(
    session: AsyncSession, workspace_id: int, tickets: Sequence[Ticket]
) -> list[dict[str, Any]]:
    ids = [t.id for t in tickets if t.id is not None]
    contact_ids = sorted({t.contact_id for t in tickets if t.contact_id})
    contacts: dict[int, Contact] = {}
    if contact_ids:
        found = await session.exec(
            select(Contact).where(
                Contact.workspace_id == workspace_id, col(Contact.id).in_(contact_ids)
            )
        )
        contacts = {c.id: c for c in found.all() if c.id is not None}
    names = await agent_names(session, workspace_id)
    teams = await team_names(session, workspace_id)
    waits = await waiting_since(session, ids)
    last: dict[int, TicketEvent] = {}
    if ids:
        stmt = select(TicketEvent).join(
            Ticket,
            and_(
                col(Ticket.id) == TicketEvent.ticket_id,
                col(Ticket.last_seq) == TicketEvent.seq,
            ),
        )
        stmt = stmt.where(col(TicketEvent.ticket_id).in_(ids))
        last = {e.ticket_id: e for e in (await session.exec(stmt)).all()}
    rows = []
    for ticket in tickets:
        assert ticket.id is not None
        contact = contacts.get(ticket.contact_id or 0)
        event = last.get(ticket.id)
        rows.append(
            {
                **ticket_public(ticket),
                "contact_name": (contact.name or contact.email or "") if contact else "",
                "assignee_name": names.get(ticket.assignee_id or 0, ""),
                "team_name": teams.get(ticket.team_id or 0, ""),
                "waiting_since": waits[ticket.id].isoformat() if ticket.id in waits else None,
                "last_event": None
                if event is None
                else {
                    "kind": event.kind.value,
                    "actor_type": event.actor_type.value,
                    "actor_id": event.actor_id,
                    "internal": event.internal,
                    "preview": " ".join(event.body.split())[:PREVIEW_CHARS],
                },
            }
        )
    return rows


async def agent_names(session: AsyncSession, workspace_id: int) -> dict[int, str]:
    rows = await session.exec(
        select(Agent.id, Agent.name).where(Agent.workspace_id == workspace_id)
    )
    return {int(i): n for i, n in rows.all() if i is not None}


async def team_names(session: AsyncSession, workspace_id: int) -> dict[int, str]:
    rows = await session.exec(select(Team.id, Team.name).where(Team.workspace_id == workspace_id))
    return {int(i): n for i, n in rows.all() if i is not None}


# -- supervisor station -----------------------------------------------------------

DUE_SOON = timedelta(hours=1)


async def open_load(session: AsyncSession, workspace_id: int) -> dict[int, dict[str, int]]:
    """Per agent: active tickets by channel (what capacity is measured against)."""
    # Grouped by the assignee as an expression: grouped by the column, SQLite walked
    # (workspace_id, assignee_id, …) for its order through every assigned ticket of
    # the workspace (33 ms at 50 000 tickets); (workspace_id, status) reads only the
    # active ones (1.5 ms).
    assignee = without_index(session, col(Ticket.assignee_id))
    stmt = (
        select(assignee, Ticket.channel, func.count())
        .where(
            Ticket.workspace_id == workspace_id,
            assignee.is_not(None),
            col(Ticket.status).in_([TicketStatus.new, TicketStatus.open]),
        )
        .group_by(assignee, col(Ticket.channel))
    )
    out: dict[int, dict[str, int]] = {}
    for agent_id, channel, count in (await session.exec(stmt)).all():
        if agent_id is not None:
            key = channel.value if hasattr(channel, "value") else str(channel)
            out.setdefault(int(agent_id), {})[key] = int(count)
    return out


async def supervisor_snapshot(
    session: AsyncSession, actor: Actor, presence: dict[int, str] | None = None
) -> dict[str, Any]:
    """Queues per team, agents with state and load, and tickets near or past due."""
    ws = actor.workspace_id
    presence = presence or {}
    now = utcnow()
    waiting_stmt = select(Ticket).where(
        Ticket.workspace_id == ws,
        # Through (workspace_id, status), the active tickets, not every unassigned
        # one the workspace ever had (see `open_load`).
        without_index(session, col(Ticket.assignee_id)).is_(None),
        col(Ticket.status).in_([TicketStatus.new, TicketStatus.open]),
        col(Ticket.merged_into_id).is_(None),
        col(Ticket.channel).in_([Channel.chat, Channel.voice]),
    )
    waiting = list((await session.exec(waiting_stmt.limit(5000))).all())
    teams = await team_names(session, ws)
    queues: dict[int | None, dict[str, Any]] = {
        tid: {"team_id": tid, "name": name, "chats": 0, "calls": 0, "oldest": None}
        for tid, name in sorted(teams.items(), key=lambda kv: kv[1])
    }
    queues[None] = {"team_id": None, "name": "", "chats": 0, "calls": 0, "oldest": None}
    for ticket in waiting:
        queue = queues.get(ticket.team_id) or queues[None]
        queue["calls" if ticket.channel is Channel.voice else "chats"] += 1
        if queue["oldest"] is None or ticket.created_at < queue["oldest"]:
            queue["oldest"] = ticket.created_at
    queue_list = [
        {**q, "oldest": q["oldest"].isoformat() if q["oldest"] else None}
        for q in queues.values()
        if q["team_id"] is not None or q["chats"] or q["calls"]
    ]
    load = await open_load(session, ws)
    memberships = await team_ids_by_agent(session, ws)
    agent_rows = await session.exec(
        select(Agent).where(Agent.workspace_id == ws, col(Agent.is_active).is_(True))
    )
    agents = []
    for agent in sorted(agent_rows.all(), key=lambda a: a.name.lower()):
        assert agent.id is not None
        mine = load.get(agent.id, {})
        agents.append(
            {
                "id": agent.id,
                "name": agent.name,
                "role": agent.role.value,
                "team_ids": sorted(memberships.get(agent.id, [])),
                "state": presence.get(agent.id, "offline"),
                "chats": mine.get("chat", 0),
                "calls": mine.get("voice", 0),
                "open": sum(mine.values()),
                "capacity": agent.capacity,
                "last_seen_at": agent.last_seen_at.isoformat() if agent.last_seen_at else None,
            }
        )
    due_stmt = (
        select(Ticket)
        .where(
            Ticket.workspace_id == ws,
            col(Ticket.due_at).is_not(None),
            col(Ticket.due_at) <= now + DUE_SOON,
            col(Ticket.status).in_(list(ACTIVE)),
            col(Ticket.merged_into_id).is_(None),
        )
        .order_by(col(Ticket.due_at))
        .limit(100)
    )
    due = await enrich(session, ws, list((await session.exec(due_stmt)).all()))
    for row in due:
        row["overdue"] = row["due_at"] is not None and row["due_at"] < now.isoformat()
    return {"queues": queue_list, "agents": agents, "due": due, "now": now.isoformat()}


async def contact_context(
    session: AsyncSession, actor: Actor, contact_id: int, exclude_ticket: int | None
) -> dict[str, Any]:
    """The contact sidebar: identities, custom fields and their other visible tickets."""
    from app.services.contacts import contact_public, get_contact, identities_of

    contact = await get_contact(session, actor.workspace_id, contact_id)
    public = contact_public(contact, await identities_of(session, contact_id))
    stmt = select(Ticket).where(
        without_index(session, col(Ticket.workspace_id)) == actor.workspace_id,
        Ticket.contact_id == contact_id,
    )
    clause = visibility_clause(actor)
    if clause is not None:
        stmt = stmt.where(clause)
    if exclude_ticket is not None:
        stmt = stmt.where(Ticket.id != exclude_ticket)
    stmt = stmt.order_by(col(Ticket.updated_at).desc()).limit(20)
    others = [ticket_public(t) for t in (await session.exec(stmt)).all()]
    return {"contact": public, "other_tickets": others}


async def presence_by_agent(session: AsyncSession, workspace_id: int, ttl: float) -> dict[int, str]:
    """Each agent's best status among their live console connections (else offline)."""
    from app.models import AgentPresence
    from app.services.presence import best_status

    fresh = utcnow() - timedelta(seconds=ttl)
    stmt = select(AgentPresence.agent_id, AgentPresence.status).where(
        AgentPresence.workspace_id == workspace_id, col(AgentPresence.heartbeat_at) > fresh
    )
    found: dict[int, list[str]] = {}
    for agent_id, status in (await session.exec(stmt)).all():
        found.setdefault(int(agent_id), []).append(status)
    return {agent_id: best_status(statuses) for agent_id, statuses in found.items()}


async def mail_view(session: AsyncSession, actor: Actor, mail_id: int) -> dict[str, Any]:
    """A stored mail's sanitized HTML and full text, if the actor may see its ticket."""
    from app.models.email import MailMessage
    from app.services.errors import NotFound
    from app.services.tickets import get_ticket

    mail = await session.get(MailMessage, mail_id)
    if mail is None or mail.workspace_id != actor.workspace_id or mail.ticket_id is None:
        raise NotFound("mail not found")
    await get_ticket(session, actor, mail.ticket_id)
    return {
        "id": mail.id,
        "ticket_id": mail.ticket_id,
        "subject": mail.subject,
        "from": mail.from_address,
        "html": mail.html,
        "full_text": mail.full_text,
    }
