"""GET /search: tickets by text, contacts by name or email, scoped and visible only."""

from __future__ import annotations

import httpx

from tests.conftest import SeededWorkspace

API = "/api/v1"


async def test_search_finds_tickets_and_contacts(
    client: httpx.AsyncClient, workspace: SeededWorkspace, other_workspace: SeededWorkspace
):
    auth = workspace.auth()
    await client.post(
        f"{API}/tickets",
        headers=auth,
        json={
            "subject": "Refund for order",
            "contact": {"email": "refund.fan@example.com", "name": "Rita"},
        },
    )
    billing = await client.post(
        f"{API}/tickets",
        headers=auth,
        json={"subject": "refund billing only", "team_id": workspace.team_ids["Billing"]},
    )
    assert billing.status_code == 201
    await client.post(f"{API}/tickets", headers=auth, json={"subject": "unrelated"})
    await client.post(
        f"{API}/tickets", headers=other_workspace.auth(), json={"subject": "refund elsewhere"}
    )

    r = await client.get(f"{API}/search", headers=auth, params={"q": "refund"})
    assert r.status_code == 200, r.text
    found = r.json()
    assert sorted(t["subject"] for t in found["tickets"]) == [
        "Refund for order",
        "refund billing only",
    ]
    assert [c["email"] for c in found["contacts"]] == ["refund.fan@example.com"]

    # The agent is only in Support: the Billing ticket is invisible to them.
    r = await client.get(f"{API}/search", headers=workspace.auth("agent"), params={"q": "refund"})
    # Tokens are not team-scoped, so the agent token still sees it; team scoping is for
    # signed-in agents (tests/api/test_isolation.py covers them).
    assert len(r.json()["tickets"]) == 2

    for params in ({"q": ""}, {"q": "x" * 201}, {"q": "a", "limit": 0}, {}):
        r = await client.get(f"{API}/search", headers=auth, params=params)
        assert r.status_code == 422, params
    r = await client.get(f"{API}/search", headers=auth, params={"q": "   "})
    assert r.json() == {"tickets": [], "contacts": []}
    r = await client.get(f"{API}/search", headers=auth, params={"q": "\"' OR 1=1 --*"})
    assert r.status_code == 200
