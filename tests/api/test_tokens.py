"""API tokens: shown once, listed by prefix, revoked at once."""

from __future__ import annotations

import httpx

from tests.conftest import SeededWorkspace

API = "/api/v1"


async def test_create_list_revoke(client: httpx.AsyncClient, workspace: SeededWorkspace):
    r = await client.post(
        f"{API}/tokens", headers=workspace.auth("supervisor"), json={"name": "x", "role": "agent"}
    )
    assert r.status_code == 403
    r = await client.post(
        f"{API}/tokens", headers=workspace.auth(), json={"name": "zapier", "role": "supervisor"}
    )
    assert r.status_code == 201, r.text
    created = r.json()
    plain = created["token"]
    assert plain.startswith("hd_") and plain.startswith(created["prefix"])
    new_auth = {"Authorization": f"Bearer {plain}"}
    assert (await client.get(f"{API}/tickets", headers=new_auth)).status_code == 200

    listing = await client.get(f"{API}/tokens", headers=workspace.auth())
    assert plain not in listing.text
    names = [t["name"] for t in listing.json()["items"]]
    assert names == ["admin", "supervisor", "agent", "zapier"]
    got = await client.get(f"{API}/tokens/{created['id']}", headers=workspace.auth())
    assert got.json()["last_used_at"] is not None and "token" not in got.json()

    r = await client.delete(f"{API}/tokens/{created['id']}", headers=workspace.auth())
    assert r.status_code == 200 and r.json()["revoked_at"] is not None
    assert (await client.get(f"{API}/tickets", headers=new_auth)).status_code == 401
    r = await client.post(
        f"{API}/tokens", headers=workspace.auth(), json={"name": "x", "role": "owner"}
    )
    assert r.status_code == 422


async def test_bad_tokens_are_401(client: httpx.AsyncClient, workspace: SeededWorkspace):
    for value in ("Bearer nope", "Bearer hd_" + "x" * 500, "Basic abc", "Bearer "):
        r = await client.get(f"{API}/agents", headers={"Authorization": value})
        assert r.status_code == 401, value
        assert r.json()["error"]["code"] == "unauthorized"
