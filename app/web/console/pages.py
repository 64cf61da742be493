"""Console pages: the inbox, the ticket view and the supervisor station (HTML shells).

The pages render what is needed for the first paint; the JavaScript modules then
keep them live through /console/ws (or polling) and act through the REST API.
"""

from __future__ import annotations

from typing import Any

from starlette.responses import RedirectResponse, Response

from app.models import Channel, Priority, Role, TicketStatus
from app.services import console_views, tickets, workspaces
from app.services.errors import NotFound
from app.web.console.base import Visit, console_route


async def _people(visit: Visit) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    ws = visit.actor.workspace_id
    agents = [
        {"id": a.id, "name": a.name, "role": a.role.value}
        for a in await workspaces.list_agents(visit.uow.session, ws)
        if a.is_active
    ]
    teams = [
        {"id": t.id, "name": t.name} for t in await workspaces.list_teams(visit.uow.session, ws)
    ]
    return agents, teams


def _choices() -> dict[str, Any]:
    return {
        "statuses": [s.value for s in TicketStatus],
        "priorities": [p.value for p in Priority],
        "channels": [c.value for c in Channel],
    }


@console_route("/console")
async def inbox(visit: Visit) -> Response:
    agents, teams = await _people(visit)
    views = ["mine", "unassigned", "teams", "all"]
    if not visit.actor.team_ids:
        views.remove("teams")
    return visit.render(
        "console/inbox.html",
        views=views,
        teams=teams,
        boot={"page": "inbox", "agents": agents, "teams": teams, **_choices()},
        **_choices(),
    )


@console_route("/console/tickets/{ticket_id:int}")
async def ticket_page(visit: Visit) -> Response:
    ticket_id = int(visit.request.path_params["ticket_id"])
    # Another team's or workspace's ticket answers 404, exactly like a missing one.
    ticket = await tickets.get_ticket(visit.uow.session, visit.actor, ticket_id)
    if ticket.merged_into_id is not None and visit.request.query_params.get("stay") != "1":
        try:
            await tickets.get_ticket(visit.uow.session, visit.actor, ticket.merged_into_id)
            return RedirectResponse(f"/console/tickets/{ticket.merged_into_id}", status_code=303)
        except NotFound:
            pass
    agents, teams = await _people(visit)
    row = (await console_views.enrich(visit.uow.session, visit.actor.workspace_id, [ticket]))[0]
    contact = None
    if ticket.contact_id is not None:
        contact = await console_views.contact_context(
            visit.uow.session, visit.actor, ticket.contact_id, ticket.id
        )
    return visit.render(
        "console/ticket.html",
        ticket=row,
        contact=contact,
        agents=agents,
        teams=teams,
        boot={
            "page": "ticket",
            "ticket": row,
            "agents": agents,
            "teams": teams,
            **_choices(),
        },
        **_choices(),
    )


@console_route("/console/supervisor", role=Role.supervisor)
async def supervisor(visit: Visit) -> Response:
    agents, teams = await _people(visit)
    return visit.render(
        "console/supervisor.html",
        boot={"page": "supervisor", "agents": agents, "teams": teams},
    )


routes = [inbox, ticket_page, supervisor]
