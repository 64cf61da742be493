"""Tenant isolation and role limits, enumerated from the OpenAPI spec.

Every operation with an object id in its path is called by workspace A (admin
token, and a signed-in admin via the console cookie) with workspace B's ids and
must answer 404. The operation table must match the spec exactly, so a new route
fails here until someone says how to call it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from starlette.responses import Response

from app.context import AppContext
from app.models import Agent
from app.models.email import MailDirection, MailMessage
from app.web.sessions import set_session_cookie
from tests.conftest import SeededWorkspace

API = "/api/v1"
ORIGIN = "http://testserver"
METHODS = {"get", "post", "put", "patch", "delete"}
MARKER = "zebra-marker"

# How to call each object operation: a body that is valid, so only the lookup can fail.
BODIES: dict[str, Any] = {
    "GET /tickets/{ticket_id}": None,
    "PATCH /tickets/{ticket_id}": {"priority": "high"},
    "DELETE /tickets/{ticket_id}": None,
    "POST /tickets/{ticket_id}/merge": {"source_ticket_id": "A:ticket_id"},
    "GET /tickets/{ticket_id}/events": None,
    "POST /tickets/{ticket_id}/replies": {"body": "hello"},
    "POST /tickets/{ticket_id}/notes": {"body": "note"},
    "POST /tickets/{ticket_id}/attachments": "FILE",
    "GET /tickets/{ticket_id}/attachments": None,
    "GET /attachments/{attachment_id}": None,
    "GET /contacts/{contact_id}": None,
    "PATCH /contacts/{contact_id}": {"name": "x"},
    "DELETE /contacts/{contact_id}": None,
    "GET /contacts/{contact_id}/identities": None,
    "POST /contacts/{contact_id}/identities": {"kind": "visitor", "value": "v-iso"},
    "POST /contacts/{contact_id}/merge": {"source_contact_id": "A:contact_id"},
    "GET /agents/{agent_id}": None,
    "PATCH /agents/{agent_id}": {"name": "x"},
    "GET /teams/{team_id}": None,
    "PATCH /teams/{team_id}": {"name": "Renamed"},
    "DELETE /teams/{team_id}": None,
    "GET /inboxes/{inbox_id}": None,
    "PATCH /inboxes/{inbox_id}": {"greeting": "x"},
    "DELETE /inboxes/{inbox_id}": None,
    "GET /tokens/{token_id}": None,
    "DELETE /tokens/{token_id}": None,
    "GET /webhooks/{webhook_id}": None,
    "PATCH /webhooks/{webhook_id}": {"description": "x"},
    "DELETE /webhooks/{webhook_id}": None,
    "POST /webhooks/{webhook_id}/test": None,
    "GET /webhooks/{webhook_id}/deliveries": None,
    "GET /inboxes/{inbox_id}/imap": None,
    "PUT /inboxes/{inbox_id}/imap": {
        "host": "imap.example.com",
        "username": "u",
        "password": "p",
    },
    "DELETE /inboxes/{inbox_id}/imap": None,
    "GET /emails/{mail_id}": None,
    "GET /emails/{mail_id}/raw": None,
}


@dataclass
class Objects:
    ids: dict[str, int]


async def _mail(ctx: AppContext, ws: SeededWorkspace, inbox_id: int, ticket_id: int) -> int:
    """A stored email row (the email channel's own tests cover how mail arrives)."""
    async with ctx.uow() as uow:
        mail = MailMessage(
            workspace_id=ws.id,
            inbox_id=inbox_id,
            ticket_id=ticket_id,
            direction=MailDirection.inbound,
            message_id=f"<{MARKER}.{ws.slug}@example.com>",
            subject=MARKER,
        )
        uow.session.add(mail)
        await uow.commit()
        assert mail.id is not None
        return mail.id


async def _objects(
    client: httpx.AsyncClient, ctx: AppContext, ws: SeededWorkspace, billing: bool
) -> Objects:
    auth = ws.auth()
    ticket = await client.post(
        f"{API}/tickets",
        headers=auth,
        json={
            "subject": f"{MARKER} {ws.slug}",
            "contact": {"email": f"{MARKER}@{ws.slug}.example", "name": MARKER},
            "message": MARKER,
            "team_id": ws.team_ids["Billing" if billing else "Support"],
        },
    )
    assert ticket.status_code == 201, ticket.text
    contact = await client.post(f"{API}/contacts", headers=auth, json={"name": f"{MARKER} 2"})
    upload = await client.post(
        f"{API}/tickets/{ticket.json()['id']}/attachments",
        headers=auth,
        files={"file": ("a.txt", b"secret", "text/plain")},
    )
    inbox = await client.post(
        f"{API}/inboxes", headers=auth, json={"kind": "widget", "name": MARKER}
    )
    hook = await client.post(
        f"{API}/webhooks", headers=auth, json={"url": "http://127.0.0.1:9/x", "description": MARKER}
    )
    token = await client.post(f"{API}/tokens", headers=auth, json={"name": MARKER})
    for r in (contact, upload, inbox, hook, token):
        assert r.status_code == 201, r.text
    return Objects(
        ids={
            "ticket_id": ticket.json()["id"],
            "contact_id": contact.json()["id"],
            "attachment_id": upload.json()["id"],
            "inbox_id": inbox.json()["id"],
            "webhook_id": hook.json()["id"],
            "token_id": token.json()["id"],
            "agent_id": ws.agent_ids["agent"],
            "team_id": ws.team_ids["Billing"],
            "mail_id": await _mail(ctx, ws, inbox.json()["id"], ticket.json()["id"]),
        }
    )


async def _cookie(ctx: AppContext, agent_id: int) -> str:
    async with ctx.uow() as uow:
        agent = await uow.session.get(Agent, agent_id)
        assert agent is not None
    response = Response()
    set_session_cookie(response, ctx.settings, agent)
    header = response.headers["set-cookie"]
    return header.split(";", 1)[0]


async def _spec_ops(client: httpx.AsyncClient) -> dict[str, dict[str, Any]]:
    spec = (await client.get(f"{API}/openapi.json")).json()
    return {
        f"{m.upper()} {p}": op
        for p, item in spec["paths"].items()
        for m, op in item.items()
        if m in METHODS
    }


def _fill(template: str, ids: dict[str, int]) -> str:
    return re.sub(r"{(\w+)}", lambda m: str(ids[m.group(1)]), template)


def _body(raw: Any, own: dict[str, int]) -> Any:
    if isinstance(raw, dict):
        return {
            k: own[v[2:]] if isinstance(v, str) and v.startswith("A:") else v
            for k, v in raw.items()
        }
    return raw


async def _call(
    client: httpx.AsyncClient, key: str, ids: dict[str, int], own: dict[str, int], headers: dict
) -> httpx.Response:
    method, path = key.split(" ", 1)
    url = API + _fill(path, ids)
    raw = BODIES.get(key)
    if raw == "FILE":
        return await client.request(
            method, url, headers=headers, files={"file": ("x.txt", b"x", "text/plain")}
        )
    body = _body(raw, own)
    if body is None:
        return await client.request(method, url, headers=headers)
    return await client.request(method, url, headers=headers, json=body)


@pytest.fixture
async def two(
    client: httpx.AsyncClient,
    ctx: AppContext,
    workspace: SeededWorkspace,
    other_workspace: SeededWorkspace,
) -> tuple[Objects, Objects]:
    mine = await _objects(client, ctx, workspace, False)
    return mine, await _objects(client, ctx, other_workspace, True)


@pytest.mark.parametrize("via", ["token", "cookie"])
async def test_workspace_a_gets_404_for_every_object_of_b(
    client: httpx.AsyncClient,
    ctx: AppContext,
    workspace: SeededWorkspace,
    two: tuple[Objects, Objects],
    via: str,
) -> None:
    mine, theirs = two
    ops = await _spec_ops(client)
    object_ops = {k for k in ops if "{" in k}
    assert object_ops == set(BODIES), "add new object routes to BODIES: " + ", ".join(
        sorted(object_ops ^ set(BODIES))
    )
    if via == "token":
        headers = workspace.auth("admin")
    else:
        cookie = await _cookie(ctx, workspace.agent_ids["admin"])
        headers = {"Cookie": cookie, "Origin": ORIGIN}
    # Deletes last, so every other call still finds A's own referenced objects.
    for key in sorted(BODIES, key=lambda k: k.startswith("DELETE")):
        r = await _call(client, key, theirs.ids, mine.ids, headers)
        assert r.status_code == 404, (key, r.status_code, r.text)
        assert r.json()["error"]["code"] == "not_found"
    # B's objects are untouched.
    other = await client.get(f"{API}/tickets/{theirs.ids['ticket_id']}", headers={})
    assert other.status_code == 401


async def test_lists_and_references_never_cross_workspaces(
    client: httpx.AsyncClient,
    workspace: SeededWorkspace,
    other_workspace: SeededWorkspace,
    two: tuple[Objects, Objects],
) -> None:
    mine, theirs = two
    auth = workspace.auth()
    ops = await _spec_ops(client)
    lists = [k.split(" ", 1)[1] for k in ops if k.startswith("GET ") and "{" not in k]
    assert "/search" in lists
    for path in lists:
        params = {"q": MARKER} if path == "/search" else {}
        r = await client.get(API + path, headers=auth, params=params)
        assert r.status_code == 200, (path, r.text)
        assert other_workspace.slug not in r.text, path
        assert "globex" not in r.text.lower(), path
    for params in (
        {"contact_id": theirs.ids["contact_id"]},
        {"team_id": theirs.ids["team_id"]},
        {"assignee_id": other_workspace.agent_ids["agent"]},
    ):
        r = await client.get(f"{API}/tickets", headers=auth, params=params)
        assert r.json()["items"] == [], params
    # Creating or changing A's objects with B's ids as references.
    for key, body in (
        ("POST /tickets", {"team_id": theirs.ids["team_id"]}),
        ("POST /tickets", {"assignee_id": other_workspace.agent_ids["agent"]}),
        ("POST /tickets", {"contact": {"id": theirs.ids["contact_id"]}}),
        ("POST /tickets", {"inbox_id": theirs.ids["inbox_id"]}),
        ("PATCH /tickets/{ticket_id}", {"team_id": theirs.ids["team_id"]}),
        ("POST /tickets/{ticket_id}/merge", {"source_ticket_id": theirs.ids["ticket_id"]}),
        (
            "POST /tickets/{ticket_id}/replies",
            {"body": "x", "attachment_ids": [theirs.ids["attachment_id"]]},
        ),
        ("POST /contacts/{contact_id}/merge", {"source_contact_id": theirs.ids["contact_id"]}),
        ("POST /agents", {"email": "n@acme.test", "team_ids": [theirs.ids["team_id"]]}),
        ("PATCH /agents/{agent_id}", {"team_ids": [theirs.ids["team_id"]]}),
        ("POST /inboxes", {"kind": "widget", "name": "w", "team_id": theirs.ids["team_id"]}),
        ("PATCH /inboxes/{inbox_id}", {"team_id": theirs.ids["team_id"]}),
    ):
        method, path = key.split(" ", 1)
        r = await client.request(method, API + _fill(path, mine.ids), headers=auth, json=body)
        assert r.status_code == 404, (key, body, r.text)


async def test_role_limits_follow_the_spec(
    client: httpx.AsyncClient, workspace: SeededWorkspace, two: tuple[Objects, Objects]
) -> None:
    mine, _ = two
    ops = await _spec_ops(client)
    admin_ops = {k for k, op in ops.items() if op.get("x-required-role") == "admin"}
    # Everything that manages the workspace's plumbing or erases data is admin-only.
    for expected in (
        "POST /agents",
        "POST /tokens",
        "GET /webhooks",
        "DELETE /contacts/{contact_id}",
        "DELETE /tickets/{ticket_id}",
    ):
        assert expected in admin_ops
    for key in sorted(admin_ops):
        method, path = key.split(" ", 1)
        for role in ("agent", "supervisor"):
            headers = workspace.auth(role)
            body = _body(BODIES.get(key), mine.ids) if "{" in key else _create_body(key)
            url = API + _fill(path, mine.ids)
            if body == "FILE":
                r = await client.request(method, url, headers=headers, files={"file": ("a", b"a")})
            elif body is None:
                r = await client.request(method, url, headers=headers)
            else:
                r = await client.request(method, url, headers=headers, json=body)
            assert r.status_code == 403, (key, role, r.text)
            assert r.json()["error"]["code"] == "forbidden"
    for key in sorted(k for k in ops if k.startswith("GET ") and k not in admin_ops):
        path = key.split(" ", 1)[1]
        params = {"q": "x"} if path == "/search" else {}
        r = await client.get(
            API + _fill(path, mine.ids), headers=workspace.auth("agent"), params=params
        )
        # Allowed for agents: anything but a refusal (a stored email may lack its source).
        ok = r.status_code == 200 or (r.status_code == 404 and "no stored source" in r.text)
        assert ok, (key, r.status_code, r.text)


def _create_body(key: str) -> Any:
    return {
        "POST /agents": {"email": "x@acme.test"},
        "POST /teams": {"name": "T"},
        "POST /inboxes": {"kind": "widget", "name": "w"},
        "POST /tokens": {"name": "t"},
        "POST /webhooks": {"url": "http://127.0.0.1:9/"},
    }.get(key)


async def test_signed_in_agent_is_team_scoped_and_needs_origin(
    client: httpx.AsyncClient,
    ctx: AppContext,
    workspace: SeededWorkspace,
    two: tuple[Objects, Objects],
) -> None:
    mine, _ = two
    auth = workspace.auth()
    billing = await client.post(
        f"{API}/tickets",
        headers=auth,
        json={"subject": "billing only", "team_id": workspace.team_ids["Billing"]},
    )
    bid = billing.json()["id"]
    up = await client.post(
        f"{API}/tickets/{bid}/attachments",
        headers=auth,
        files={"file": ("b.txt", b"billing", "text/plain")},
    )
    cookie = await _cookie(ctx, workspace.agent_ids["agent"])
    headers = {"Cookie": cookie, "Origin": ORIGIN}
    ids = {**mine.ids, "ticket_id": bid, "attachment_id": up.json()["id"]}
    ops = await _spec_ops(client)
    for key in (k for k in BODIES if "{ticket_id}" in k or "{attachment_id}" in k):
        r = await _call(client, key, ids, mine.ids, headers)
        # Admin-only routes refuse an agent before any lookup, so 403 says nothing either.
        admin_only = ops[key].get("x-required-role") == "admin"
        assert r.status_code == (403 if admin_only else 404), (key, r.text)
    listing = await client.get(f"{API}/tickets", headers=headers)
    assert bid not in [t["id"] for t in listing.json()["items"]]
    assert mine.ids["ticket_id"] in [t["id"] for t in listing.json()["items"]]
    found = await client.get(f"{API}/search", headers=headers, params={"q": "billing only"})
    assert found.json()["tickets"] == []

    # Writes with the cookie need a same-origin Origin header (CSRF).
    note_url = f"{API}/tickets/{mine.ids['ticket_id']}/notes"
    r = await client.post(note_url, headers={"Cookie": cookie}, json={"body": "x"})
    assert r.status_code == 403
    r = await client.post(
        note_url, headers={"Cookie": cookie, "Origin": "https://evil.example"}, json={"body": "x"}
    )
    assert r.status_code == 403
    r = await client.post(note_url, headers=headers, json={"body": "x"})
    assert r.status_code == 201
    # Self-service: an agent may rename themselves but not promote themselves.
    me = f"{API}/agents/{workspace.agent_ids['agent']}"
    assert (await client.patch(me, headers=headers, json={"name": "Me"})).status_code == 200
    assert (await client.patch(me, headers=headers, json={"role": "admin"})).status_code == 403
    tampered = cookie[:-2] + ("AA" if not cookie.endswith("AA") else "BB")
    r = await client.get(f"{API}/tickets", headers={"Cookie": tampered})
    assert r.status_code == 401
