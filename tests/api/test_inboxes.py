"""Inboxes: admins write; the identity secret is shown to admins only."""

from __future__ import annotations

import httpx

from tests.conftest import SeededWorkspace

API = "/api/v1"


async def test_widget_and_email_inboxes(client: httpx.AsyncClient, workspace: SeededWorkspace):
    widget = {
        "kind": "widget",
        "name": "Website",
        "allowed_origins": ["https://Shop.Example.com/", "http://localhost:3000"],
        "greeting": "Hi!",
        "theme": {"color": "#3454d1"},
        "team_id": workspace.team_ids["Support"],
    }
    r = await client.post(f"{API}/inboxes", headers=workspace.auth("supervisor"), json=widget)
    assert r.status_code == 403
    r = await client.post(f"{API}/inboxes", headers=workspace.auth(), json=widget)
    assert r.status_code == 201, r.text
    w = r.json()
    assert w["public_key"].startswith("wk_")
    assert w["allowed_origins"] == ["https://shop.example.com", "http://localhost:3000"]
    assert w["identity_secret"]

    r = await client.post(
        f"{API}/inboxes",
        headers=workspace.auth(),
        json={"kind": "email", "name": "Mail", "address": "Support@Acme.test"},
    )
    assert r.status_code == 201, r.text
    e = r.json()
    assert e["address"] == "support@acme.test" and e["public_key"] is None
    dup = await client.post(
        f"{API}/inboxes",
        headers=workspace.auth(),
        json={"kind": "email", "name": "Mail 2", "address": "support@acme.test"},
    )
    assert dup.status_code == 409
    no_addr = await client.post(
        f"{API}/inboxes", headers=workspace.auth(), json={"kind": "email", "name": "x"}
    )
    assert no_addr.status_code == 422
    bad_origin = await client.post(
        f"{API}/inboxes",
        headers=workspace.auth(),
        json={**widget, "allowed_origins": ["javascript:alert(1)"]},
    )
    assert bad_origin.status_code == 422

    agent_view = (await client.get(f"{API}/inboxes", headers=workspace.auth("agent"))).json()
    assert [i["kind"] for i in agent_view["items"]] == ["widget", "email"]
    assert all(i["identity_secret"] is None for i in agent_view["items"])
    assert agent_view["items"][0]["public_key"] == w["public_key"]
    admin_view = (await client.get(f"{API}/inboxes/{w['id']}", headers=workspace.auth())).json()
    assert admin_view["identity_secret"] == w["identity_secret"]

    r = await client.patch(
        f"{API}/inboxes/{w['id']}",
        headers=workspace.auth(),
        json={"greeting": "Hello", "rotate_identity_secret": True, "team_id": None},
    )
    assert r.status_code == 200, r.text
    assert r.json()["greeting"] == "Hello" and r.json()["team_id"] is None
    assert r.json()["identity_secret"] != w["identity_secret"]
    r = await client.patch(
        f"{API}/inboxes/{w['id']}", headers=workspace.auth(), json={"address": "a@b.example"}
    )
    assert r.status_code == 422
    r = await client.delete(f"{API}/inboxes/{e['id']}", headers=workspace.auth("agent"))
    assert r.status_code == 403
    r = await client.delete(f"{API}/inboxes/{e['id']}", headers=workspace.auth())
    assert r.status_code == 200
    assert (
        await client.get(f"{API}/inboxes/{e['id']}", headers=workspace.auth())
    ).status_code == 404
