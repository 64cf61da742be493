"""Sign-in, sign-out, password change, cookie flags, workspace choice, rate limiting."""

from __future__ import annotations

import re
from typing import Any

import httpx

from app.context import AppContext
from app.services import workspaces
from app.services.actors import Actor
from tests.conftest import PASSWORD, SeededWorkspace
from tests.console.helpers import ORIGIN, sign_in


async def test_login_page_has_labelled_fields(client: httpx.AsyncClient) -> None:
    page = await client.get("/console/login")
    assert page.status_code == 200
    assert '<label for="email">Email</label>' in page.text
    assert '<label for="password">Password</label>' in page.text
    assert ">Sign in</button>" in page.text
    assert "script-src 'self'" in page.headers["content-security-policy"]


async def test_login_page_in_german(client: httpx.AsyncClient) -> None:
    page = await client.get("/console/login", headers={"Accept-Language": "de-DE,de;q=0.9"})
    assert '<label for="email">E-Mail</label>' in page.text
    assert '<label for="password">Passwort</label>' in page.text
    assert ">Anmelden</button>" in page.text


async def test_unauthenticated_console_redirects_to_login(client: httpx.AsyncClient) -> None:
    response = await client.get("/console/tickets/1")
    assert response.status_code == 303
    assert response.headers["location"] == "/console/login?next=%2Fconsole%2Ftickets%2F1"
    api = await client.get("/console/api/inbox")
    assert api.status_code == 401


async def test_sign_in_sets_a_safe_cookie_and_opens_the_inbox(
    client: httpx.AsyncClient, workspace: SeededWorkspace
) -> None:
    response = await sign_in(client, "agent@acme.test", PASSWORD)
    assert response.status_code == 303
    assert response.headers["location"] == "/console"
    cookie = response.headers["set-cookie"]
    assert "hd_session=" in cookie
    assert "HttpOnly" in cookie
    assert "SameSite=lax" in cookie
    assert "Secure" not in cookie  # served over http here
    inbox = await client.get("/console")
    assert inbox.status_code == 200
    assert "Agent acme" in inbox.text
    # The REST API accepts the same cookie.
    assert (await client.get("/api/v1/tickets")).status_code == 200


async def test_wrong_password_is_refused_with_a_clear_message(
    client: httpx.AsyncClient, workspace: SeededWorkspace
) -> None:
    response = await sign_in(client, "agent@acme.test", "wrong password")
    assert response.status_code == 401
    assert "Email or password is wrong." in response.text
    assert "hd_session" not in response.headers.get("set-cookie", "")


async def test_login_rate_limit_per_ip_and_email(
    client: httpx.AsyncClient, workspace: SeededWorkspace
) -> None:
    for _ in range(5):
        assert (await sign_in(client, "agent@acme.test", "nope")).status_code == 401
    blocked = await sign_in(client, "agent@acme.test", PASSWORD)
    assert blocked.status_code == 429
    assert "Too many failed sign-in attempts" in blocked.text
    assert int(blocked.headers["retry-after"]) > 0
    # Another email from the same address is not locked out by these failures.
    assert (await sign_in(client, "admin@acme.test", PASSWORD)).status_code == 303


async def test_login_from_another_origin_is_refused(
    client: httpx.AsyncClient, workspace: SeededWorkspace
) -> None:
    response = await client.post(
        "/console/login",
        data={"email": "agent@acme.test", "password": PASSWORD},
        headers={"Origin": "http://evil.example"},
    )
    assert response.status_code == 403
    assert "hd_session" not in response.headers.get("set-cookie", "")


async def test_sign_out_clears_the_cookie(
    client: httpx.AsyncClient, workspace: SeededWorkspace
) -> None:
    await sign_in(client, "agent@acme.test", PASSWORD)
    response = await client.post("/console/logout", headers=ORIGIN)
    assert response.status_code == 303
    assert (await client.get("/console")).status_code == 303


async def test_password_change_signs_out_other_sessions(
    app: Any, client: httpx.AsyncClient, workspace: SeededWorkspace
) -> None:
    await sign_in(client, "agent@acme.test", PASSWORD)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as other:
        await sign_in(other, "agent@acme.test", PASSWORD)
        assert (await other.get("/console")).status_code == 200
        wrong = await client.post(
            "/console/password",
            data={"current": "bad", "new": "new password 123", "confirm": "new password 123"},
            headers=ORIGIN,
        )
        assert wrong.status_code == 422
        assert "The current password is wrong." in wrong.text
        changed = await client.post(
            "/console/password",
            data={"current": PASSWORD, "new": "new password 123", "confirm": "new password 123"},
            headers=ORIGIN,
        )
        assert changed.status_code == 303
        assert (await client.get("/console")).status_code == 200  # this session got a new cookie
        assert (await other.get("/console")).status_code == 303  # the other one is out
    client.cookies.clear()
    assert (await sign_in(client, "agent@acme.test", "new password 123")).status_code == 303


async def test_language_preference_switches_the_ui(
    client: httpx.AsyncClient, workspace: SeededWorkspace
) -> None:
    await sign_in(client, "agent@acme.test", PASSWORD)
    saved = await client.post(
        "/console/profile", data={"name": "Agent Acme", "locale": "de"}, headers=ORIGIN
    )
    assert saved.status_code == 303
    page = await client.get("/console")
    assert 'lang="de"' in page.text
    assert "Posteingang" in page.text
    assert "Abmelden" in page.text


async def test_email_in_two_workspaces_lets_the_agent_choose(
    client: httpx.AsyncClient,
    ctx: AppContext,
    workspace: SeededWorkspace,
    other_workspace: SeededWorkspace,
) -> None:
    async with ctx.uow() as uow:
        await workspaces.do_create_agent(
            uow,
            Actor.system(other_workspace.id),
            email="agent@acme.test",
            name="Agent In Globex",
            password=PASSWORD,
        )
        await uow.commit()
    page = await sign_in(client, "agent@acme.test", PASSWORD)
    assert page.status_code == 200
    assert "Choose a workspace" in page.text
    assert "Acme" in page.text and "Globex" in page.text
    choice = re.search(r'name="choice" value="([^"]+)"', page.text)
    assert choice is not None
    ids = re.findall(r'name="agent_id" value="(\d+)"[^>]*> (\w+)', page.text)
    globex_agent = next(int(i) for i, name in ids if name == "Globex")
    # A forged agent id (not in the signed list) is refused.
    forged = await client.post(
        "/console/login/workspace",
        data={"choice": choice.group(1), "agent_id": str(workspace.agent_ids["admin"])},
        headers=ORIGIN,
    )
    assert forged.status_code == 400
    chosen = await client.post(
        "/console/login/workspace",
        data={"choice": choice.group(1), "agent_id": str(globex_agent)},
        headers=ORIGIN,
    )
    assert chosen.status_code == 303
    inbox = await client.get("/console")
    assert "Agent In Globex" in inbox.text
