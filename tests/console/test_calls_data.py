"""The console's call data routes: live calls for supervisors, one call, a ticket's calls
and callback requests — scoped by role, team and workspace — and the call strings."""

from __future__ import annotations

import httpx

from app.context import AppContext
from app.models import Call, InboxKind
from app.services import acd, calls, workspaces
from app.services.actors import Actor
from app.web.console.i18n import catalog
from app.web.console.i18n_calls import DE_CALLS, EN_CALLS
from tests.conftest import PASSWORD, SeededWorkspace
from tests.console.helpers import sign_in


async def _call(ctx: AppContext, ws: SeededWorkspace, team: str, visitor: str) -> Call:
    """A queued call from a widget visitor, as the voice channel records it."""
    async with ctx.uow() as uow:
        inbox = await workspaces.do_create_inbox(
            uow,
            Actor.system(ws.id),
            kind=InboxKind.widget,
            name=f"{team} line",
            team_id=ws.team_ids[team],
            allowed_origins=["https://shop.example"],
        )
        contact = await calls.do_visitor_contact(uow, ws.id, visitor, None, f"Caller {visitor}")
        call = await calls.do_start_call(uow, inbox=inbox, contact=contact, owner_node="elsewhere")
        await uow.commit()
    return call


async def test_supervisors_see_live_calls_and_agents_do_not(
    client: httpx.AsyncClient, ctx: AppContext, workspace: SeededWorkspace
) -> None:
    support = await _call(ctx, workspace, "Support", "v-support")
    billing = await _call(ctx, workspace, "Billing", "v-billing")

    await sign_in(client, "supervisor@acme.test", PASSWORD)
    r = await client.get("/console/api/calls/live")
    assert r.status_code == 200
    items = r.json()["items"]
    assert [c["id"] for c in items] == [support.id, billing.id]
    first = items[0]
    assert first["state"] == "queued" and first["direction"] == "inbound"
    assert first["contact_name"] == "Caller v-support" and first["team_name"] == "Support"
    assert first["ticket_number"] >= 1 and first["ticket_id"] == support.ticket_id
    assert (await client.get(f"/console/api/calls/{billing.id}")).status_code == 200

    client.cookies.clear()
    await sign_in(client, "agent@acme.test", PASSWORD)
    assert (await client.get("/console/api/calls/live")).status_code == 403
    # An agent of Support sees its team's call but not Billing's.
    assert (await client.get(f"/console/api/calls/{support.id}")).status_code == 200
    missing = await client.get(f"/console/api/calls/{billing.id}")
    assert missing.status_code == 404
    assert (await client.get(f"/console/api/tickets/{billing.ticket_id}/calls")).status_code == 404


async def test_a_tickets_calls_show_its_live_call_and_callback_requests(
    client: httpx.AsyncClient,
    ctx: AppContext,
    workspace: SeededWorkspace,
    other_workspace: SeededWorkspace,
) -> None:
    call = await _call(ctx, workspace, "Support", "v-1")
    async with ctx.uow() as uow:
        row = await uow.session.get(Call, call.id)
        assert row is not None
        await acd.do_request_callback(uow, row)
        await uow.commit()
    await sign_in(client, "agent@acme.test", PASSWORD)
    r = await client.get(f"/console/api/tickets/{call.ticket_id}/calls")
    assert r.status_code == 200
    data = r.json()
    assert data["live"] is None  # the caller chose a callback: the call is over
    assert data["contact_online"] is False  # no widget of theirs is connected
    [callback] = data["callbacks"]
    assert callback["state"] == "pending" and callback["open"] is True
    assert callback["attempts"] == 0

    fresh = await _call(ctx, workspace, "Support", "v-2")
    live = (await client.get(f"/console/api/tickets/{fresh.ticket_id}/calls")).json()["live"]
    assert live["id"] == fresh.id and live["state"] == "queued"

    # Another workspace's supervisor sees neither the call nor its ticket.
    client.cookies.clear()
    await sign_in(client, "supervisor@globex.test", PASSWORD)
    assert (await client.get(f"/console/api/calls/{fresh.id}")).status_code == 404
    assert (await client.get("/console/api/calls/live")).json()["items"] == []
    r = await client.get(f"/console/api/tickets/{fresh.ticket_id}/calls")
    assert r.status_code == 404


async def test_transfer_targets_leave_out_the_agent_themselves(
    client: httpx.AsyncClient, workspace: SeededWorkspace
) -> None:
    await sign_in(client, "agent@acme.test", PASSWORD)
    data = (await client.get("/console/api/calls/targets")).json()
    assert {a["name"] for a in data["agents"]} == {"Admin acme", "Supervisor acme"}
    assert {t["name"] for t in data["teams"]} == {"Support", "Billing"}


def test_call_strings_exist_in_english_and_german() -> None:
    assert set(EN_CALLS) == set(DE_CALLS)
    german = catalog("de")
    assert german["call.accept"] == "Annehmen"
    assert german["callev.answered"].format(agent="Anna") == "angenommen von Anna"
    assert catalog("en")["call.accept"] == "Accept"
