"""Contacts through REST API v1: CRUD, search, identities, merge, delete."""

from __future__ import annotations

import httpx
from sqlmodel import select

from app.context import AppContext
from app.models import AuditLog, Contact, WebhookDelivery
from tests.conftest import SeededWorkspace

API = "/api/v1"


async def _create(client: httpx.AsyncClient, ws: SeededWorkspace, **body: object) -> dict:
    r = await client.post(f"{API}/contacts", headers=ws.auth("agent"), json=body)
    assert r.status_code == 201, r.text
    return r.json()


async def test_create_get_patch_contact(client: httpx.AsyncClient, workspace: SeededWorkspace):
    jane = await _create(
        client,
        workspace,
        name=" Jane Doe ",
        email="Jane@Example.com",
        external_id="crm-7",
        custom_fields={"plan": "gold"},
    )
    assert jane["name"] == "Jane Doe"
    assert jane["email"] == "jane@example.com"
    kinds = {(i["kind"], i["value"]) for i in jane["identities"]}
    assert kinds == {("email", "jane@example.com"), ("external", "crm-7")}

    got = await client.get(f"{API}/contacts/{jane['id']}", headers=workspace.auth("agent"))
    assert got.json() == jane

    r = await client.patch(
        f"{API}/contacts/{jane['id']}",
        headers=workspace.auth("agent"),
        json={"email": "jane@new.example", "phone": "+49 30 1234", "custom_fields": {"plan": "x"}},
    )
    assert r.status_code == 200, r.text
    patched = r.json()
    assert patched["email"] == "jane@new.example"
    assert patched["phone"] == "+49 30 1234"
    assert patched["custom_fields"] == {"plan": "x"}
    # The old address still finds her; the new one became an identity too.
    values = {i["value"] for i in patched["identities"]}
    assert {"jane@example.com", "jane@new.example"} <= values


async def test_duplicate_identity_is_a_conflict(
    client: httpx.AsyncClient, workspace: SeededWorkspace
):
    await _create(client, workspace, email="dup@example.com")
    r = await client.post(
        f"{API}/contacts", headers=workspace.auth(), json={"email": "DUP@example.com"}
    )
    assert r.status_code == 409
    assert r.json()["error"]["code"] == "conflict"


async def test_list_search_and_cursor(client: httpx.AsyncClient, workspace: SeededWorkspace):
    for i in range(5):
        await _create(client, workspace, name=f"Customer {i}", email=f"c{i}@shop.example")
    await _create(client, workspace, name="Other 100%_", email="o@elsewhere.example")
    seen: list[str] = []
    cursor = None
    while True:
        params: dict[str, str | int] = {"limit": 2, "q": "shop.example"}
        if cursor:
            params["cursor"] = cursor
        r = await client.get(f"{API}/contacts", headers=workspace.auth("agent"), params=params)
        assert r.status_code == 200, r.text
        page = r.json()
        assert len(page["items"]) <= 2
        seen += [c["name"] for c in page["items"]]
        cursor = page["next_cursor"]
        if not cursor:
            break
    assert seen == [f"Customer {i}" for i in range(5)]
    # LIKE wildcards in q are literal characters.
    r = await client.get(f"{API}/contacts", headers=workspace.auth(), params={"q": "100%_"})
    assert [c["name"] for c in r.json()["items"]] == ["Other 100%_"]
    r = await client.get(f"{API}/contacts", headers=workspace.auth(), params={"q": "%"})
    assert [c["name"] for c in r.json()["items"]] == ["Other 100%_"]
    bad = await client.get(f"{API}/contacts", headers=workspace.auth(), params={"cursor": "zz"})
    assert bad.status_code == 422


async def test_identities_add_and_list(client: httpx.AsyncClient, workspace: SeededWorkspace):
    c = await _create(client, workspace, name="Vis")
    url = f"{API}/contacts/{c['id']}/identities"
    r = await client.post(
        url, headers=workspace.auth("agent"), json={"kind": "visitor", "value": "v-123"}
    )
    assert r.status_code == 201, r.text
    r = await client.post(
        url, headers=workspace.auth("agent"), json={"kind": "email", "value": "not-an-email"}
    )
    assert r.status_code == 422
    listing = (await client.get(url, headers=workspace.auth("agent"))).json()
    assert [(i["kind"], i["value"]) for i in listing["items"]] == [("visitor", "v-123")]
    assert listing["next_cursor"] is None


async def test_merge_moves_identities_and_tickets(
    client: httpx.AsyncClient, workspace: SeededWorkspace, ctx: AppContext
):
    target = await _create(client, workspace, name="Target", email="t@example.com")
    source = await _create(client, workspace, email="s@example.com", phone="123")
    ticket = (
        await client.post(
            f"{API}/tickets",
            headers=workspace.auth(),
            json={"subject": "from source", "contact": {"id": source["id"]}},
        )
    ).json()
    r = await client.post(
        f"{API}/contacts/{target['id']}/merge",
        headers=workspace.auth("agent"),
        json={"source_contact_id": source["id"]},
    )
    assert r.status_code == 200, r.text
    merged = r.json()
    assert {i["value"] for i in merged["identities"]} == {"t@example.com", "s@example.com"}
    assert merged["phone"] == "123"
    moved = (await client.get(f"{API}/tickets/{ticket['id']}", headers=workspace.auth())).json()
    assert moved["contact_id"] == target["id"]
    gone = (await client.get(f"{API}/contacts/{source['id']}", headers=workspace.auth())).json()
    assert gone["merged_into_id"] == target["id"]
    listing = (await client.get(f"{API}/contacts", headers=workspace.auth())).json()
    assert [c["id"] for c in listing["items"]] == [target["id"]]
    again = await client.post(
        f"{API}/contacts/{target['id']}/merge",
        headers=workspace.auth(),
        json={"source_contact_id": source["id"]},
    )
    assert again.status_code == 409
    itself = await client.post(
        f"{API}/contacts/{target['id']}/merge",
        headers=workspace.auth(),
        json={"source_contact_id": target["id"]},
    )
    assert itself.status_code == 422
    async with ctx.uow() as uow:
        actions = (await uow.session.exec(select(AuditLog.action))).all()
    assert "contact.merge" in actions


async def test_delete_is_admin_only_audited_and_keeps_tickets(
    client: httpx.AsyncClient, workspace: SeededWorkspace, ctx: AppContext
):
    target = await _create(client, workspace, email="del@example.com")
    source = await _create(client, workspace, email="old@example.com")
    await client.post(
        f"{API}/contacts/{target['id']}/merge",
        headers=workspace.auth(),
        json={"source_contact_id": source["id"]},
    )
    ticket = (
        await client.post(
            f"{API}/tickets",
            headers=workspace.auth(),
            json={"subject": "keep me", "contact": {"id": target["id"]}},
        )
    ).json()
    for role in ("agent", "supervisor"):
        r = await client.delete(f"{API}/contacts/{target['id']}", headers=workspace.auth(role))
        assert r.status_code == 403
    r = await client.delete(f"{API}/contacts/{target['id']}", headers=workspace.auth())
    assert r.status_code == 200, r.text
    for cid in (target["id"], source["id"]):
        r = await client.get(f"{API}/contacts/{cid}", headers=workspace.auth())
        assert r.status_code == 404
    kept = (await client.get(f"{API}/tickets/{ticket['id']}", headers=workspace.auth())).json()
    assert kept["contact_id"] is None
    # The address is free again: a new mail from it makes a new contact.
    await _create(client, workspace, email="old@example.com")
    async with ctx.uow() as uow:
        actions = (await uow.session.exec(select(AuditLog.action))).all()
        left = (await uow.session.exec(select(Contact))).all()
    assert "contact.delete" in actions
    assert [c.email for c in left] == ["old@example.com"]


async def test_contact_webhook_events_are_queued(
    client: httpx.AsyncClient, workspace: SeededWorkspace, ctx: AppContext
):
    r = await client.post(
        f"{API}/webhooks",
        headers=workspace.auth(),
        json={"url": "http://127.0.0.1:9/hook", "events": ["contact.created", "contact.updated"]},
    )
    assert r.status_code == 201, r.text
    c = await _create(client, workspace, email="hook@example.com")
    await client.patch(f"{API}/contacts/{c['id']}", headers=workspace.auth(), json={"name": "H"})
    async with ctx.uow() as uow:
        events = (await uow.session.exec(select(WebhookDelivery.event))).all()
    assert sorted(events) == ["contact.created", "contact.updated"]


async def test_bad_input_never_500(client: httpx.AsyncClient, workspace: SeededWorkspace):
    auth = workspace.auth()
    huge = 2**70
    for url in (f"{API}/contacts/{huge}", f"{API}/contacts/-1", f"{API}/contacts/abc"):
        r = await client.get(url, headers=auth)
        assert r.status_code == 422, (url, r.text)
    r = await client.get(f"{API}/contacts/{2**63 - 1}", headers=auth)
    assert r.status_code == 404
    r = await client.post(f"{API}/contacts", headers=auth, json={"name": "a\u0000b"})
    assert r.status_code == 422
    r = await client.post(
        f"{API}/contacts",
        headers={**auth, "Content-Type": "application/json"},
        content=b'{"name": "\\ud800"}',
    )
    assert r.status_code == 422
    r = await client.post(
        f"{API}/contacts", headers=auth, json={"custom_fields": {str(i): i for i in range(51)}}
    )
    assert r.status_code == 422
    deep: object = 1
    for _ in range(30):
        deep = {"a": deep}
    r = await client.post(f"{API}/contacts", headers=auth, json={"custom_fields": deep})
    assert r.status_code == 422
    r = await client.post(f"{API}/contacts/1/merge", headers=auth, json={"source_contact_id": "x"})
    assert r.status_code in (404, 422)
    r = await client.get(f"{API}/contacts", headers=auth, params={"q": "x" * 5000})
    assert r.status_code == 422
    r = await client.get(f"{API}/contacts", headers=auth, params={"limit": 10**30})
    assert r.status_code == 422
