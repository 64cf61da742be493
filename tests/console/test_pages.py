"""Inbox data, canned responses, merge, uploads, and the admin pages over HTTP."""

from __future__ import annotations

import re

import httpx

from app.context import AppContext
from app.models import Channel, IdentityKind, Priority
from app.services import tickets
from app.services.actors import Actor
from app.services.contacts import IdentityIn, do_resolve_contact
from tests.conftest import PASSWORD, SeededWorkspace
from tests.console.helpers import ORIGIN, sign_in


async def _create(ctx: AppContext, ws: SeededWorkspace, **fields: object) -> tuple[int, int]:
    async with ctx.uow() as uow:
        ticket, _ = await tickets.do_create_ticket(uow, Actor.system(ws.id), **fields)  # type: ignore[arg-type]
        await uow.commit()
    assert ticket.id is not None
    return ticket.id, ticket.number


async def test_inbox_views_filters_and_search(
    client: httpx.AsyncClient, ctx: AppContext, workspace: SeededWorkspace
) -> None:
    support = workspace.team_ids["Support"]
    mine, _ = await _create(
        ctx, workspace, subject="Mine", team_id=support, assignee_id=workspace.agent_ids["agent"]
    )
    loose, _ = await _create(
        ctx,
        workspace,
        subject="Loose chat",
        channel=Channel.chat,
        priority=Priority.urgent,
        tags=["vip"],
    )
    teamed, _ = await _create(ctx, workspace, subject="Team ticket", team_id=support)
    async with ctx.uow() as uow:
        contact, _ = await do_resolve_contact(
            uow, workspace.id, IdentityIn(IdentityKind.email, "c@example.com"), name="C"
        )
        assert contact.id is not None
        ticket = await tickets.get_ticket(uow.session, Actor.system(workspace.id), loose)
        await tickets.do_customer_message(
            uow, ticket, Actor.contact(workspace.id, contact.id, "C"), body="where is my refund"
        )
        await uow.commit()
    await sign_in(client, "agent@acme.test", PASSWORD)

    async def ids(query: str) -> list[int]:
        r = await client.get("/console/api/inbox?" + query)
        assert r.status_code == 200, r.text
        return [row["id"] for row in r.json()["items"]]

    assert await ids("view=mine") == [mine]
    assert set(await ids("view=unassigned")) == {loose, teamed}
    assert set(await ids("view=teams")) == {mine, teamed}
    assert set(await ids("view=all")) == {mine, loose, teamed}
    assert await ids("view=all&channel=chat") == [loose]
    assert await ids("view=all&priority=urgent") == [loose]
    assert await ids("view=all&tag=vip") == [loose]
    assert await ids("view=all&q=refund") == [loose]
    assert set(await ids("view=all&sort=waiting")) == {mine, loose, teamed}
    assert (await ids("view=all&sort=waiting"))[0] == loose  # the only one with a customer waiting
    rows = (await client.get("/console/api/inbox?view=all&ids=" + str(loose))).json()["items"]
    assert rows[0]["last_event"]["preview"] == "where is my refund"
    assert rows[0]["waiting_since"] is not None
    bad = await client.get("/console/api/inbox?view=everything")
    assert bad.status_code == 422


async def test_canned_responses_admin_and_picker(
    client: httpx.AsyncClient, workspace: SeededWorkspace
) -> None:
    await sign_in(client, "admin@acme.test", PASSWORD)
    created = await client.post(
        "/console/admin/canned",
        data={"shortcut": "/Refund", "title": "Refund policy", "body": "Refunds take 5 days."},
        headers=ORIGIN,
    )
    assert created.status_code == 303
    dup = await client.post(
        "/console/admin/canned",
        data={"shortcut": "refund", "title": "Again", "body": "x"},
        headers=ORIGIN,
    )
    assert dup.status_code == 200 and "shortcut /refund exists" in dup.text
    client.cookies.clear()
    await sign_in(client, "agent@acme.test", PASSWORD)
    found = (await client.get("/console/api/canned?q=ref")).json()["items"]
    assert [(c["shortcut"], c["body"]) for c in found] == [("refund", "Refunds take 5 days.")]
    assert (await client.get("/console/api/canned?q=zzz")).json()["items"] == []


async def test_merge_by_number_and_attachments(
    client: httpx.AsyncClient, ctx: AppContext, workspace: SeededWorkspace
) -> None:
    target, _ = await _create(ctx, workspace, subject="Target", message="first")
    source, source_number = await _create(ctx, workspace, subject="Source", message="second")
    await sign_in(client, "agent@acme.test", PASSWORD)
    merged = await client.post(
        f"/console/api/tickets/{target}/merge",
        json={"source_number": source_number},
        headers=ORIGIN,
    )
    assert merged.status_code == 200, merged.text
    page = await client.get(f"/console/tickets/{source}")
    assert page.status_code == 303 and page.headers["location"] == f"/console/tickets/{target}"
    missing = await client.post(
        f"/console/api/tickets/{target}/merge", json={"source_number": 999}, headers=ORIGIN
    )
    assert missing.status_code == 404

    up = await client.post(
        f"/console/api/tickets/{target}/attachments",
        files={"file": ("note.txt", b"hello file", "text/plain")},
        headers=ORIGIN,
    )
    assert up.status_code == 201, up.text
    attachment = up.json()["items"][0]
    got = await client.get(f"/console/attachments/{attachment['id']}")
    assert got.status_code == 200 and got.content == b"hello file"
    assert "sandbox" in got.headers["content-security-policy"]
    reply = await client.post(
        f"/api/v1/tickets/{target}/replies",
        json={"body": "see file", "attachment_ids": [attachment["id"]]},
        headers=ORIGIN,
    )
    assert reply.status_code == 201


async def test_admin_pages_tokens_inboxes_webhooks(
    client: httpx.AsyncClient, workspace: SeededWorkspace
) -> None:
    await sign_in(client, "admin@acme.test", PASSWORD)
    for section in ("agents", "teams", "inboxes", "canned", "tokens", "webhooks"):
        assert (await client.get(f"/console/admin/{section}")).status_code == 200, section
    token_page = await client.post(
        "/console/admin/tokens", data={"name": "CRM", "role": "agent"}, headers=ORIGIN
    )
    assert token_page.status_code == 200
    token = re.search(r'value="(hd_[^"]+)"', token_page.text)
    assert token is not None
    assert "shown only once" in token_page.text
    listed = await client.get("/console/admin/tokens")
    assert token.group(1) not in listed.text  # never shown again
    api = await client.get("/api/v1/tickets", headers={"Authorization": f"Bearer {token.group(1)}"})
    assert api.status_code == 200

    widget = await client.post(
        "/console/admin/inboxes",
        data={
            "kind": "widget",
            "name": "Shop chat",
            "allowed_origins": "https://shop.example.com/",
        },
        headers=ORIGIN,
    )
    assert widget.status_code == 303
    page = await client.get("/console/admin/inboxes")
    assert "https://shop.example.com" in page.text
    assert "/widget.js&#34; data-inbox=&#34;wk_" in page.text or "data-inbox=&#34;wk_" in page.text
    bad = await client.post(
        "/console/admin/inboxes",
        data={"kind": "widget", "name": "Bad", "allowed_origins": "not an origin"},
        headers=ORIGIN,
    )
    assert "is not an origin" in bad.text

    hook = await client.post(
        "/console/admin/webhooks",
        data={"url": "https://hooks.example.com/x", "events": "ticket.created"},
        headers=ORIGIN,
    )
    assert hook.status_code == 200 and "whsec_" in hook.text
    hook_id = re.search(r'action="/console/admin/webhooks/(\d+)"', hook.text)
    assert hook_id is not None
    test = await client.post(
        f"/console/admin/webhooks/{hook_id.group(1)}", data={"test": "1"}, headers=ORIGIN
    )
    assert test.status_code == 303
    log = await client.get("/console/admin/webhooks")
    assert "<td>ping</td>" in log.text

    agent = await client.post(
        "/console/admin/agents",
        data={
            "name": "New Person",
            "email": "new@acme.test",
            "password": "long enough pw",
            "role": "agent",
            "team_ids": str(workspace.team_ids["Billing"]),
        },
        headers=ORIGIN,
    )
    assert agent.status_code == 303
    client.cookies.clear()
    assert (await sign_in(client, "new@acme.test", "long enough pw")).status_code == 303
