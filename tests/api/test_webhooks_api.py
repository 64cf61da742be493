"""Webhook subscriptions through the API: CRUD, test delivery, delivery log."""

from __future__ import annotations

import json

import httpx

from tests.conftest import SeededWorkspace

API = "/api/v1"


async def test_webhook_crud_test_and_log(client: httpx.AsyncClient, workspace: SeededWorkspace):
    auth = workspace.auth()
    body = {"url": "http://127.0.0.1:9/hooks", "events": ["ticket.created"], "description": "crm"}
    for role in ("agent", "supervisor"):
        r = await client.post(f"{API}/webhooks", headers=workspace.auth(role), json=body)
        assert r.status_code == 403
        r = await client.get(f"{API}/webhooks", headers=workspace.auth(role))
        assert r.status_code == 403
    r = await client.post(f"{API}/webhooks", headers=auth, json=body)
    assert r.status_code == 201, r.text
    hook = r.json()
    assert hook["secret"].startswith("whsec_") and hook["active"] is True
    url = f"{API}/webhooks/{hook['id']}"

    for bad in (
        {"url": "ftp://x.example/"},
        {"url": "http://user:pw@x.example/"},
        {"url": "/relative"},
        {"url": "http://x.example", "events": ["ticket.exploded"]},
        {"url": "http://x.example", "secret": "short"},
    ):
        r = await client.post(f"{API}/webhooks", headers=auth, json=bad)
        assert r.status_code == 422, bad

    r = await client.patch(url, headers=auth, json={"rotate_secret": True, "active": False})
    assert r.status_code == 200, r.text
    assert r.json()["secret"] != hook["secret"] and r.json()["active"] is False

    # Inactive webhooks get no events, but the test delivery still goes out.
    await client.post(f"{API}/tickets", headers=auth, json={"subject": "quiet"})
    r = await client.post(f"{url}/test", headers=auth)
    assert r.status_code == 202, r.text
    ping = r.json()
    assert ping["event"] == "ping" and ping["status"] in ("pending", "delivered", "failed")
    envelope = json.loads(ping["body"])
    assert envelope["event"] == "ping" and envelope["id"] == ping["id"]

    await client.patch(url, headers=auth, json={"active": True})
    for i in range(3):
        await client.post(f"{API}/tickets", headers=auth, json={"subject": f"t{i}"})
    seen: list[str] = []
    cursor = None
    while True:
        params: dict[str, str | int] = {"limit": 2}
        if cursor:
            params["cursor"] = cursor
        r = await client.get(f"{url}/deliveries", headers=auth, params=params)
        assert r.status_code == 200, r.text
        seen += [d["event"] for d in r.json()["items"]]
        cursor = r.json()["next_cursor"]
        if not cursor:
            break
    assert sorted(seen) == ["ping", "ticket.created", "ticket.created", "ticket.created"]
    bad = await client.get(f"{url}/deliveries", headers=auth, params={"cursor": "W10"})
    assert bad.status_code == 422

    listing = await client.get(f"{API}/webhooks", headers=auth)
    assert [h["id"] for h in listing.json()["items"]] == [hook["id"]]
    r = await client.delete(url, headers=auth)
    assert r.status_code == 200
    assert (await client.get(url, headers=auth)).status_code == 404
    assert (await client.get(f"{url}/deliveries", headers=auth)).status_code == 404
