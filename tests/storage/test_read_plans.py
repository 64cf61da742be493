"""On SQLite, the read paths that return a few rows out of a workspace's whole history
go in through an index on those rows, never by walking the workspace.

SQLite has no statistics here: left to itself it took the workspace's
`(workspace_id, updated_at)` index for a contact's tickets or an agent's open ones
and read every ticket of the workspace (35-51 ms at 50 000 tickets against 1.5-12
ms), and sorted every ticket or webhook delivery for a page of them. An agent's
tickets (or the unassigned ones) are read in order and only up to a page, since
either may be a few or tens of thousands. Each test runs
the real service call, catches its statements and asks SQLite for their plans.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Awaitable, Callable
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import make_url

from app.context import AppContext
from app.models import Ticket, TicketStatus
from app.services import console_views, contacts, routing, tickets, webhook_admin
from app.services.actors import Actor
from app.services.console_views import InboxQuery
from app.services.tickets import TicketFilter
from tests.conftest import SeededWorkspace


async def plans(
    ctx: AppContext, table: str, call: Callable[[Any], Awaitable[object]]
) -> list[list[str]]:
    """The plan of each statement that reads `table` while `call(session)` runs."""
    seen: list[tuple[str, Any]] = []

    def record(_conn: Any, _cursor: Any, sql: str, params: Any, *_: Any) -> None:
        if f"FROM {table}" in sql and sql.lstrip().upper().startswith("SELECT"):
            seen.append((sql, params))

    event.listen(ctx.engine.sync_engine, "before_cursor_execute", record)
    try:
        async with ctx.sessions() as session:
            await call(session)
    finally:
        event.remove(ctx.engine.sync_engine, "before_cursor_execute", record)
    path = make_url(ctx.settings.database_url).database
    assert path and seen
    db = sqlite3.connect(path)
    try:
        return [[row[3] for row in db.execute(f"EXPLAIN QUERY PLAN {sql}", p)] for sql, p in seen]
    finally:
        db.close()


def starts_with(plan: list[str], index: str) -> bool:
    return plan[0].startswith(f"SEARCH ticket USING INDEX {index} ") or plan[0].startswith(
        f"SEARCH ticket USING COVERING INDEX {index} "
    )


async def test_a_contacts_tickets_come_through_the_contact_index(
    ctx: AppContext, workspace: SeededWorkspace
) -> None:
    me = workspace.team_agent()
    async with ctx.uow() as uow:
        contact = await contacts.do_create_contact(uow, workspace.id, name="Jane")
        await uow.commit()
    assert contact.id is not None
    contact_id = contact.id
    for found in (
        await plans(
            ctx,
            "ticket",
            lambda s: tickets.list_tickets(s, me, TicketFilter(contact_id=contact_id)),
        ),
        await plans(
            ctx,
            "ticket",
            lambda s: console_views.contact_context(s, me, contact_id, exclude_ticket=None),
        ),
    ):
        ticket_plans = [p for p in found if "contact_id=?" in " ".join(p) or "ticket" in p[0]]
        assert any(starts_with(p, "ix_ticket_contact_id") for p in ticket_plans), found
        assert not any("ix_ticket_ws_updated" in " ".join(p) for p in ticket_plans), found


async def test_mine_and_unassigned_are_read_in_order_through_the_assignee_index(
    ctx: AppContext, workspace: SeededWorkspace
) -> None:
    me = workspace.team_agent()
    active = [TicketStatus.new, TicketStatus.open]
    for view in ("mine", "unassigned"):
        (plan,) = await plans(
            ctx,
            "ticket",
            lambda s, v=view: console_views.inbox_rows(s, me, InboxQuery(view=v)),
        )
        assert starts_with(plan, "ix_ticket_ws_assignee_updated"), (view, plan)
        assert not any("TEMP B-TREE" in step for step in plan), plan
    for filters in (
        TicketFilter(assignee_id=me.id, status=active),
        TicketFilter(unassigned=True, status=active),
    ):
        (plan,) = await plans(ctx, "ticket", lambda s, f=filters: tickets.list_tickets(s, me, f))
        assert starts_with(plan, "ix_ticket_ws_assignee_updated"), (filters, plan)
        assert not any("TEMP B-TREE" in step for step in plan), plan


async def test_pages_sorted_by_creation_or_of_a_delivery_log_sort_nothing(
    ctx: AppContext, workspace: SeededWorkspace
) -> None:
    admin = Actor.system(workspace.id)
    for sort in ("created_at", "-created_at", "-updated_at", "number"):
        (plan,) = await plans(
            ctx, "ticket", lambda s, o=sort: tickets.list_tickets(s, admin, TicketFilter(), sort=o)
        )
        assert not any("TEMP B-TREE" in step for step in plan), (sort, plan)

    async with ctx.uow() as uow:
        hook = await webhook_admin.do_create_webhook(
            uow, admin, url="http://127.0.0.1:9/h", events=[], description="", secret=None
        )
        await uow.commit()
    assert hook.id is not None
    found = await plans(
        ctx,
        "webhook_delivery",
        lambda s: webhook_admin.list_deliveries(s, workspace.id, hook.id or 0),
    )
    (plan,) = [p for p in found if "webhook_delivery" in " ".join(p)]
    assert "ix_webhook_delivery_webhook_created" in plan[0], plan
    assert not any("TEMP B-TREE" in step for step in plan), plan


def explain(ctx: AppContext, statement: Any) -> list[str]:
    compiled = statement.compile(dialect=ctx.engine.dialect)
    expanded = compiled.construct_expanded_state()
    values = [expanded.parameters[name] for name in expanded.positiontup or ()]
    path = make_url(ctx.settings.database_url).database
    assert path
    db = sqlite3.connect(path)
    try:
        return [row[3] for row in db.execute(f"EXPLAIN QUERY PLAN {expanded.statement}", values)]
    finally:
        db.close()


async def test_routing_and_the_supervisor_read_active_tickets_not_history(
    ctx: AppContext, workspace: SeededWorkspace
) -> None:
    """Routing runs every second: a team's queue, a visitor's place in it and an
    agent's open chats must come from indexes on (team or assignee, status), and the
    supervisor's counts from (workspace, status), never from a walk through every
    ticket a team, an agent or the workspace ever had."""
    team = workspace.team_ids["Support"]
    agent_id = workspace.agent_ids["agent"]
    queue = explain(ctx, routing.team_queue(workspace.id, team, 100))
    assert queue[0].startswith("SEARCH ticket USING INDEX ix_ticket_team_queue "), queue
    waiting = Ticket(id=5, workspace_id=workspace.id, team_id=team, number=5)
    (position,) = await plans(ctx, "ticket", lambda s: routing.queue_position(s, waiting))
    assert position[0].startswith("SEARCH ticket USING INDEX ix_ticket_team_queue "), position
    (held,) = await plans(
        ctx, "ticket", lambda s: routing.assigned_open_tickets(s, workspace.id, agent_id)
    )
    assert held[0].startswith("SEARCH ticket USING INDEX ix_ticket_assignee_status "), held
    (loads,) = await plans(ctx, "ticket", lambda s: routing.chat_loads(s, [agent_id]))
    assert "ix_ticket_assignee_status" in loads[0], loads
    for plan in await plans(
        ctx, "ticket", lambda s: console_views.supervisor_snapshot(s, Actor.system(workspace.id))
    ):
        if "workspace_id=?" in plan[0]:
            assert "ix_ticket_ws_status" in plan[0], plan
