"""Call data for the console's call UI: live calls, one call, a ticket's calls.

Signaling itself rides /console/ws (`call.*` frames, channels/voice); these JSON routes
only give the pages what the frames do not carry: ticket numbers and names for a ring,
the supervisor's list of live calls, a ticket's callback requests, and whether the
ticket's contact has the widget open right now (so the agent may call them).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from starlette.responses import JSONResponse, Response

from app.models import Role
from app.services import call_views, workspaces
from app.web.console.base import Visit, console_route

if TYPE_CHECKING:
    from channels.voice.signaling import VoiceChannel

NO_STORE = {"Cache-Control": "no-store"}


def widget_online(visit: Visit, contact_id: int | None) -> bool:
    """Whether a widget of this contact is connected to this node.

    The voice channel knows the widget connections of its own process; with several
    nodes a contact connected elsewhere shows as offline here (the dial itself is
    routed everywhere, and reports `offline` when no widget answers the ring)."""
    if contact_id is None:
        return False
    voice: VoiceChannel | None = getattr(visit.request.app.state, "voice", None)
    if voice is None:
        return False
    ws = visit.actor.workspace_id
    for session, _ in list(voice.sessions.values()):
        visitor = session.visitor
        if (
            session.side == "widget"
            and not session.closed
            and session.workspace_id == ws
            and visitor is not None
            and visitor.contact_id == contact_id
        ):
            return True
    return False


async def _targets(visit: Visit) -> dict[str, Any]:
    ws = visit.actor.workspace_id
    session = visit.uow.session
    return {
        "agents": [
            {"id": a.id, "name": a.name}
            for a in await workspaces.list_agents(session, ws)
            if a.is_active and a.id != visit.actor.agent_id
        ],
        "teams": [{"id": t.id, "name": t.name} for t in await workspaces.list_teams(session, ws)],
    }


@console_route("/console/api/calls/live", role=Role.supervisor)
async def live_calls(visit: Visit) -> Response:
    session = visit.uow.session
    items = await call_views.live_calls(session, visit.actor)
    callbacks = await call_views.pending_callbacks(session, visit.actor)
    return JSONResponse(
        {"items": items, "pending_callbacks": callbacks, "me": visit.actor.agent_id},
        headers=NO_STORE,
    )


@console_route("/console/api/calls/targets")
async def transfer_targets(visit: Visit) -> Response:
    return JSONResponse(await _targets(visit), headers=NO_STORE)


@console_route("/console/api/calls/{call_id:int}")
async def call_data(visit: Visit) -> Response:
    call_id = int(visit.request.path_params["call_id"])
    data = await call_views.call_detail(visit.uow.session, visit.actor, call_id)
    return JSONResponse(data, headers=NO_STORE)


@console_route("/console/api/tickets/{ticket_id:int}/calls")
async def ticket_calls(visit: Visit) -> Response:
    ticket_id = int(visit.request.path_params["ticket_id"])
    data = await call_views.ticket_calls(visit.uow.session, visit.actor, ticket_id)
    data["contact_online"] = widget_online(visit, data["contact_id"])
    return JSONResponse(data, headers=NO_STORE)


routes = [live_calls, transfer_targets, call_data, ticket_calls]
