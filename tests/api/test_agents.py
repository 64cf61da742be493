"""Agents and teams: everyone reads, admins write, nobody sees a password hash."""

from __future__ import annotations

import httpx

from tests.conftest import SeededWorkspace

API = "/api/v1"


async def test_everyone_lists_agents_without_secrets(
    client: httpx.AsyncClient, workspace: SeededWorkspace
):
    for role in ("agent", "supervisor", "admin"):
        r = await client.get(f"{API}/agents", headers=workspace.auth(role))
        assert r.status_code == 200, r.text
        assert "password" not in r.text and "argon2" not in r.text
        emails = [a["email"] for a in r.json()["items"]]
        assert emails == ["admin@acme.test", "supervisor@acme.test", "agent@acme.test"]
    one = await client.get(
        f"{API}/agents/{workspace.agent_ids['agent']}", headers=workspace.auth("agent")
    )
    assert one.json()["team_ids"] == [workspace.team_ids["Support"]]
    assert "password_hash" not in one.json()


async def test_admin_creates_updates_and_deactivates_an_agent(
    client: httpx.AsyncClient, workspace: SeededWorkspace
):
    body = {
        "email": "New@Acme.test",
        "name": "Newbie",
        "password": "long enough pw",
        "team_ids": [workspace.team_ids["Billing"]],
        "languages": ["de", "en"],
        "time_zone": "Europe/Berlin",
        "capacity": {"chat": 5},
    }
    for role in ("agent", "supervisor"):
        r = await client.post(f"{API}/agents", headers=workspace.auth(role), json=body)
        assert r.status_code == 403
    r = await client.post(f"{API}/agents", headers=workspace.auth(), json=body)
    assert r.status_code == 201, r.text
    agent = r.json()
    assert agent["email"] == "new@acme.test"
    assert agent["capacity"] == {"chat": 5, "voice": 1, "email": 50}
    assert agent["team_ids"] == [workspace.team_ids["Billing"]]
    dup = await client.post(f"{API}/agents", headers=workspace.auth(), json=body)
    assert dup.status_code == 409
    bad_tz = await client.post(
        f"{API}/agents", headers=workspace.auth(), json={**body, "time_zone": "../../etc/passwd"}
    )
    assert bad_tz.status_code == 422

    url = f"{API}/agents/{agent['id']}"
    r = await client.patch(url, headers=workspace.auth("supervisor"), json={"role": "admin"})
    assert r.status_code == 403
    r = await client.patch(
        url, headers=workspace.auth(), json={"role": "supervisor", "is_active": False}
    )
    assert r.status_code == 200, r.text
    assert r.json()["is_active"] is False and r.json()["role"] == "supervisor"
    # A deactivated agent cannot take tickets.
    r = await client.post(
        f"{API}/tickets", headers=workspace.auth(), json={"assignee_id": agent["id"]}
    )
    assert r.status_code == 422


async def test_the_last_admin_cannot_be_removed(
    client: httpx.AsyncClient, workspace: SeededWorkspace
):
    url = f"{API}/agents/{workspace.agent_ids['admin']}"
    for change in ({"is_active": False}, {"role": "agent"}):
        r = await client.patch(url, headers=workspace.auth(), json=change)
        assert r.status_code == 409, r.text


async def test_teams_crud(client: httpx.AsyncClient, workspace: SeededWorkspace):
    r = await client.post(f"{API}/teams", headers=workspace.auth("supervisor"), json={"name": "X"})
    assert r.status_code == 403
    r = await client.post(f"{API}/teams", headers=workspace.auth(), json={"name": "Voice"})
    assert r.status_code == 201, r.text
    team = r.json()
    assert team["agent_ids"] == []
    dup = await client.post(f"{API}/teams", headers=workspace.auth(), json={"name": "Voice"})
    assert dup.status_code == 409
    rename = await client.patch(
        f"{API}/teams/{team['id']}", headers=workspace.auth(), json={"name": "Support"}
    )
    assert rename.status_code == 409
    support = await client.get(
        f"{API}/teams/{workspace.team_ids['Support']}", headers=workspace.auth("agent")
    )
    assert sorted(support.json()["agent_ids"]) == sorted(workspace.agent_ids.values())
    listing = await client.get(f"{API}/teams", headers=workspace.auth("agent"))
    assert [t["name"] for t in listing.json()["items"]] == ["Support", "Billing", "Voice"]
    r = await client.delete(f"{API}/teams/{team['id']}", headers=workspace.auth())
    assert r.status_code == 200
    r = await client.get(f"{API}/teams/{team['id']}", headers=workspace.auth())
    assert r.status_code == 404


async def test_agent_edits_own_profile_only(client: httpx.AsyncClient, workspace: SeededWorkspace):
    me = f"{API}/agents/{workspace.agent_ids['agent']}"
    # A token is not an agent: self-service applies to signed-in agents (see isolation tests).
    r = await client.patch(me, headers=workspace.auth("agent"), json={"name": "Me"})
    assert r.status_code == 403
    r = await client.patch(me, headers=workspace.auth(), json={"name": "Renamed"})
    assert r.status_code == 200 and r.json()["name"] == "Renamed"
