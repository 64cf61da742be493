"""An id the API handed out names that row for good: a deleted row's id never comes back.

SQLite gives a new row the largest id in the table plus one, so without AUTOINCREMENT
the id of a deleted newest row went to the next insert, and an integration that stored
"ticket 41" would later read someone else's ticket (another workspace's, even) under it.
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.conftest import SeededWorkspace

API = "/api/v1"
BOTH_DATABASES = pytest.mark.parametrize("database_url", ["sqlite", "pg"], indirect=True)


async def post(client: httpx.AsyncClient, ws: SeededWorkspace, path: str, **body: Any) -> Any:
    r = await client.post(f"{API}{path}", headers=ws.auth(), json=body)
    assert r.status_code == 201, r.text
    return r.json()


async def ticket_with_file(
    client: httpx.AsyncClient, ws: SeededWorkspace, subject: str
) -> tuple[int, list[int], int]:
    """A ticket with a first message and an attachment: (ticket, its event ids, attachment)."""
    ticket = await post(
        client, ws, "/tickets", subject=subject, contact={"email": "jane@example.com"}, message="Hi"
    )
    r = await client.post(
        f"{API}/tickets/{ticket['id']}/attachments",
        headers=ws.auth(),
        files={"file": ("note.txt", subject.encode(), "text/plain")},
    )
    assert r.status_code == 201, r.text
    attachment_id = r.json()["id"]
    r = await client.get(f"{API}/tickets/{ticket['id']}/events", headers=ws.auth())
    assert r.status_code == 200, r.text
    event_ids = [event["id"] for event in r.json()["items"]]
    assert event_ids
    return ticket["id"], event_ids, attachment_id


@BOTH_DATABASES
async def test_a_deleted_tickets_ids_are_never_handed_out_again(
    client: httpx.AsyncClient, workspace: SeededWorkspace, other_workspace: SeededWorkspace
) -> None:
    await ticket_with_file(client, workspace, "older")
    gone, gone_events, gone_file = await ticket_with_file(client, workspace, "newest")

    r = await client.delete(f"{API}/tickets/{gone}", headers=workspace.auth())
    assert r.status_code == 204, r.text

    # The next ticket of any workspace, its timeline and its files all get new ids...
    theirs, their_events, their_file = await ticket_with_file(client, other_workspace, "next")
    ours, our_events, our_file = await ticket_with_file(client, workspace, "after")
    assert gone < theirs < ours
    assert max(gone_events) < min(their_events) <= max(their_events) < min(our_events)
    assert gone_file < their_file < our_file
    # ...so what an integration stored under the old ids stays gone.
    for path in (f"/tickets/{gone}", f"/tickets/{gone}/events", f"/attachments/{gone_file}"):
        r = await client.get(f"{API}{path}", headers=workspace.auth())
        assert r.status_code == 404, (path, r.text)


RESOURCES = {
    "contacts": lambda n: {"name": f"Contact {n}", "email": f"c{n}@example.com"},
    "teams": lambda n: {"name": f"Team {n}"},
    "inboxes": lambda n: {"kind": "email", "name": f"Mail {n}", "address": f"m{n}@acme.test"},
    "webhooks": lambda n: {"url": f"http://127.0.0.1:9/hook/{n}", "events": ["ticket.created"]},
}


@BOTH_DATABASES
@pytest.mark.parametrize("resource", sorted(RESOURCES))
async def test_a_deleted_rows_id_is_never_handed_out_again(
    client: httpx.AsyncClient, workspace: SeededWorkspace, resource: str
) -> None:
    body = RESOURCES[resource]
    await post(client, workspace, f"/{resource}", **body(1))
    gone = (await post(client, workspace, f"/{resource}", **body(2)))["id"]
    r = await client.delete(f"{API}/{resource}/{gone}", headers=workspace.auth())
    assert r.status_code == 200, r.text

    after = (await post(client, workspace, f"/{resource}", **body(3)))["id"]

    assert after > gone
    r = await client.get(f"{API}/{resource}/{gone}", headers=workspace.auth())
    assert r.status_code == 404, r.text
