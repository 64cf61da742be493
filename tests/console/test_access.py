"""Origin checks on cookie writes, role limits, and tickets outside the agent's reach."""

from __future__ import annotations

import httpx

from app.context import AppContext
from app.models import Channel
from app.services import tickets
from app.services.actors import Actor
from tests.conftest import PASSWORD, SeededWorkspace
from tests.console.helpers import ORIGIN, sign_in


async def _ticket(ctx: AppContext, ws: int, team_id: int | None, subject: str) -> int:
    async with ctx.uow() as uow:
        ticket, _ = await tickets.do_create_ticket(
            uow, Actor.system(ws), subject=subject, team_id=team_id, channel=Channel.api
        )
        await uow.commit()
    assert ticket.id is not None
    return ticket.id


async def test_cookie_writes_to_the_api_need_our_origin(
    client: httpx.AsyncClient, ctx: AppContext, workspace: SeededWorkspace
) -> None:
    ticket_id = await _ticket(ctx, workspace.id, workspace.team_ids["Support"], "Hello")
    await sign_in(client, "agent@acme.test", PASSWORD)
    url = f"/api/v1/tickets/{ticket_id}/notes"
    missing = await client.post(url, json={"body": "no origin"})
    assert missing.status_code == 403
    evil = await client.post(url, json={"body": "x"}, headers={"Origin": "http://evil.example"})
    assert evil.status_code == 403
    assert evil.json()["error"]["code"] == "forbidden"
    ok = await client.post(url, json={"body": "from our page"}, headers=ORIGIN)
    assert ok.status_code == 201
    # Reads need no Origin; bearer tokens are not affected (no ambient credentials).
    assert (await client.get(f"/api/v1/tickets/{ticket_id}")).status_code == 200
    client.cookies.clear()
    token = await client.post(url, json={"body": "token"}, headers=workspace.auth("agent"))
    assert token.status_code == 201


async def test_console_writes_need_our_origin(
    client: httpx.AsyncClient, ctx: AppContext, workspace: SeededWorkspace
) -> None:
    await sign_in(client, "admin@acme.test", PASSWORD)
    evil = await client.post(
        "/console/admin/teams", data={"name": "Evil"}, headers={"Origin": "http://evil.example"}
    )
    assert evil.status_code == 403
    assert "did not come from this site" in evil.text
    # The request's own host (a dev server on another port) counts as our origin too.
    ok = await client.post("/console/admin/teams", data={"name": "Sales"}, headers=ORIGIN)
    assert ok.status_code == 303
    page = await client.get("/console/admin/teams")
    assert "Sales" in page.text and "Evil" not in page.text


async def test_agent_cannot_reach_admin_or_supervisor_pages(
    client: httpx.AsyncClient, workspace: SeededWorkspace
) -> None:
    await sign_in(client, "agent@acme.test", PASSWORD)
    for path in (
        "/console/admin",
        "/console/admin/agents",
        "/console/admin/tokens",
        "/console/admin/webhooks",
        "/console/supervisor",
        "/console/api/supervisor",
    ):
        response = await client.get(path)
        assert response.status_code == 403, path
    posted = await client.post("/console/admin/teams", data={"name": "Mine"}, headers=ORIGIN)
    assert posted.status_code == 403
    inbox = await client.get("/console")
    assert "/console/admin" not in inbox.text


async def test_supervisor_reaches_station_not_admin(
    client: httpx.AsyncClient, workspace: SeededWorkspace
) -> None:
    await sign_in(client, "supervisor@acme.test", PASSWORD)
    assert (await client.get("/console/supervisor")).status_code == 200
    assert (await client.get("/console/api/supervisor")).status_code == 200
    assert (await client.get("/console/admin/agents")).status_code == 403


async def test_agent_cannot_open_another_teams_or_workspaces_ticket(
    client: httpx.AsyncClient,
    ctx: AppContext,
    workspace: SeededWorkspace,
    other_workspace: SeededWorkspace,
) -> None:
    mine = await _ticket(ctx, workspace.id, workspace.team_ids["Support"], "Support question")
    billing = await _ticket(ctx, workspace.id, workspace.team_ids["Billing"], "Billing zq-hidden")
    foreign = await _ticket(ctx, other_workspace.id, None, "Globex zq-hidden")
    await sign_in(client, "agent@acme.test", PASSWORD)
    page = await client.get(f"/console/tickets/{mine}")
    assert page.status_code == 200
    assert "Support question" in page.text
    for other in (billing, foreign):
        response = await client.get(f"/console/tickets/{other}")
        assert response.status_code == 404
        assert "zq-hidden" not in response.text
        assert (await client.get(f"/api/v1/tickets/{other}/events")).status_code == 404
        assert (await client.get(f"/console/api/inbox?ids={other}")).json()["items"] == []
    # The supervisor of the same workspace sees every team, never another workspace.
    client.cookies.clear()
    await sign_in(client, "supervisor@acme.test", PASSWORD)
    assert (await client.get(f"/console/tickets/{billing}")).status_code == 200
    assert (await client.get(f"/console/tickets/{foreign}")).status_code == 404
