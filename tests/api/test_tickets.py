"""Tickets through REST API v1, as an integrator would use them."""

from __future__ import annotations

import httpx

from tests.conftest import SeededWorkspace


async def test_create_ticket_for_a_contact_with_first_message(
    client: httpx.AsyncClient, workspace: SeededWorkspace
) -> None:
    r = await client.post(
        "/api/v1/tickets",
        headers=workspace.auth(),
        json={
            "subject": "Order #1234 never arrived",
            "contact": {"email": "Jane@Example.com", "name": "Jane Doe"},
            "message": "Hi, my parcel is late.",
            "priority": "high",
            "tags": ["Shipping"],
            "team_id": workspace.team_ids["Support"],
        },
    )
    assert r.status_code == 201, r.text
    ticket = r.json()
    assert ticket["number"] == 1
    assert ticket["status"] == "new"
    assert ticket["priority"] == "high"
    assert ticket["tags"] == ["shipping"]
    assert ticket["last_seq"] == 1

    events = (
        await client.get(f"/api/v1/tickets/{ticket['id']}/events", headers=workspace.auth())
    ).json()
    assert [e["seq"] for e in events["items"]] == [1]
    first = events["items"][0]
    assert first["body"] == "Hi, my parcel is late."
    assert first["author"] == {"type": "contact", "id": ticket["contact_id"], "name": "Jane Doe"}


async def test_idempotency_key_returns_the_first_ticket(
    client: httpx.AsyncClient, workspace: SeededWorkspace
) -> None:
    headers = {**workspace.auth(), "Idempotency-Key": "create-42"}
    body = {"subject": "Same request twice"}
    first = await client.post("/api/v1/tickets", headers=headers, json=body)
    again = await client.post("/api/v1/tickets", headers=headers, json=body)
    assert first.status_code == again.status_code == 201
    assert first.json()["id"] == again.json()["id"]
    listing = (await client.get("/api/v1/tickets", headers=workspace.auth())).json()
    assert len(listing["items"]) == 1
    other = await client.post("/api/v1/tickets", headers=headers, json={"subject": "different"})
    assert other.status_code == 409
    assert other.json()["error"]["code"] == "conflict"


async def test_patch_records_changes_on_the_timeline(
    client: httpx.AsyncClient, workspace: SeededWorkspace
) -> None:
    auth = workspace.auth()
    ticket = (await client.post("/api/v1/tickets", headers=auth, json={"subject": "x"})).json()
    r = await client.patch(
        f"/api/v1/tickets/{ticket['id']}",
        headers=auth,
        json={"status": "pending", "assignee_id": workspace.agent_ids["agent"], "tags": ["vip"]},
    )
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "pending"
    events = (await client.get(f"/api/v1/tickets/{ticket['id']}/events", headers=auth)).json()
    kinds = [e["kind"] for e in events["items"]]
    assert kinds == ["status", "assignment", "update"]
    assert [e["seq"] for e in events["items"]] == [1, 2, 3]
    assert events["items"][0]["payload"]["changes"]["status"] == {"from": "new", "to": "pending"}


async def test_reply_dedupes_on_client_id_and_notes_are_internal(
    client: httpx.AsyncClient, workspace: SeededWorkspace
) -> None:
    auth = workspace.auth()
    ticket = (await client.post("/api/v1/tickets", headers=auth, json={"subject": "x"})).json()
    url = f"/api/v1/tickets/{ticket['id']}"
    one = await client.post(
        f"{url}/replies", headers=auth, json={"body": "On it", "client_id": "c1"}
    )
    two = await client.post(
        f"{url}/replies", headers=auth, json={"body": "On it", "client_id": "c1"}
    )
    assert one.status_code == 201 and two.status_code == 200
    assert one.json()["seq"] == two.json()["seq"]
    note = await client.post(f"{url}/notes", headers=auth, json={"body": "customer is VIP"})
    assert note.status_code == 201 and note.json()["internal"] is True


async def test_list_pages_with_a_cursor(
    client: httpx.AsyncClient, workspace: SeededWorkspace
) -> None:
    auth = workspace.auth()
    for i in range(5):
        await client.post("/api/v1/tickets", headers=auth, json={"subject": f"t{i}"})
    seen: list[int] = []
    cursor = None
    while True:
        params: dict[str, str | int] = {"limit": 2, "sort": "number"}
        if cursor:
            params["cursor"] = cursor
        page = (await client.get("/api/v1/tickets", headers=auth, params=params)).json()
        seen += [t["number"] for t in page["items"]]
        cursor = page["next_cursor"]
        if not cursor:
            break
    assert seen == [1, 2, 3, 4, 5]


async def test_priority_sorts_by_urgency_across_pages(
    client: httpx.AsyncClient, workspace: SeededWorkspace
) -> None:
    """Not alphabetically (the names are stored as text): low < normal < high < urgent,
    newest first among equals, and a cursor continues in the same order."""
    auth = workspace.auth()
    made = []
    for priority in ["high", "low", "urgent", "normal", "high", "low", "urgent"]:
        r = await client.post(
            "/api/v1/tickets", headers=auth, json={"subject": priority, "priority": priority}
        )
        made.append((priority, r.json()["id"]))
    rank = {"low": 0, "normal": 1, "high": 2, "urgent": 3}
    for sort, descending in (("priority", False), ("-priority", True)):
        seen: list[tuple[str, int]] = []
        cursor = None
        while True:
            params: dict[str, str | int] = {"limit": 2, "sort": sort}
            if cursor:
                params["cursor"] = cursor
            page = (await client.get("/api/v1/tickets", headers=auth, params=params)).json()
            seen += [(t["priority"], t["id"]) for t in page["items"]]
            cursor = page["next_cursor"]
            if not cursor:
                break
        expected = sorted(made, key=lambda m: (rank[m[0]], m[1]), reverse=descending)
        assert seen == expected, sort


async def test_errors_have_one_shape(client: httpx.AsyncClient, workspace: SeededWorkspace) -> None:
    unauth = await client.get("/api/v1/tickets")
    assert unauth.status_code == 401
    assert unauth.json()["error"]["code"] == "unauthorized"
    missing = await client.get("/api/v1/tickets/999", headers=workspace.auth())
    assert missing.status_code == 404
    bad = await client.post(
        "/api/v1/tickets", headers=workspace.auth(), json={"subject": 5, "x": 1}
    )
    assert bad.status_code == 422
    assert bad.json()["error"]["code"] == "invalid"
    wrong_type = await client.post(
        "/api/v1/tickets", headers={**workspace.auth(), "Content-Type": "text/plain"}, content="hi"
    )
    assert wrong_type.status_code == 415
    huge = await client.post(
        "/api/v1/tickets", headers=workspace.auth(), json={"subject": "x" * 2_000_000}
    )
    assert huge.status_code == 413
    bad_cursor = await client.get(
        "/api/v1/tickets", headers=workspace.auth(), params={"cursor": "!!"}
    )
    assert bad_cursor.status_code == 422


async def test_filter_by_tag(client: httpx.AsyncClient, workspace: SeededWorkspace) -> None:
    auth = workspace.auth()
    await client.post("/api/v1/tickets", headers=auth, json={"subject": "a", "tags": ["vip"]})
    await client.post("/api/v1/tickets", headers=auth, json={"subject": "b", "tags": ["other"]})
    page = (await client.get("/api/v1/tickets", headers=auth, params={"tag": "VIP"})).json()
    assert [t["subject"] for t in page["items"]] == ["a"]
