"""IMAP fetching against a real Dovecot started by the test (loopback, ephemeral port)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from email.message import EmailMessage
from typing import Any

import httpx
import pytest
from dovecot import DOVECOT, Dovecot, running_dovecot
from mailtools import create_email_inbox, inbox, mails, send, tickets

from app.context import AppContext
from app.models import InboxKind
from app.services import email_imap, workspaces
from app.services.actors import Actor
from app.settings import Settings
from channels.email.imap_in import ImapPoller, poll_inbox
from tests.conftest import SeededWorkspace

pytestmark = pytest.mark.skipif(
    not DOVECOT.exists(), reason="Dovecot is not installed (apt-get install dovecot-imapd)"
)


@pytest.fixture
def dovecot() -> Iterator[Dovecot]:
    with running_dovecot() as server:
        yield server


def mail(number: int, subject: str | None = None, sender: str = "anna@example.com") -> bytes:
    msg = EmailMessage()
    msg["From"] = f"Customer <{sender}>"
    msg["To"] = "support@demo.localhost"
    msg["Subject"] = subject or f"IMAP question {number}"
    msg["Message-ID"] = f"<imap-{number}@mail.example.com>"
    msg.set_content(f"Body of message {number}.")
    return msg.as_bytes()


async def configure(
    client: httpx.AsyncClient,
    ws: SeededWorkspace,
    inbox_id: int,
    server: Dovecot,
    **extra: Any,
) -> dict[str, Any]:
    body = {
        "host": "127.0.0.1",
        "port": server.port,
        "ssl": False,
        "username": server.user,
        "password": server.password,
        "enabled": False,  # one-shot polls in the test; the live watcher has its own test
        **extra,
    }
    response = await client.put(f"/api/v1/inboxes/{inbox_id}/imap", json=body, headers=ws.auth())
    assert response.status_code == 200, response.text
    data: dict[str, Any] = response.json()
    return data


async def poll(ctx: AppContext, inbox_id: int) -> int:
    return await poll_inbox(ctx, await inbox(ctx, inbox_id), io_timeout=20)


async def test_admin_route_stores_the_password_encrypted(
    ctx: AppContext, workspace: SeededWorkspace, client: httpx.AsyncClient, settings: Settings
) -> None:
    inbox_id = await create_email_inbox(ctx, workspace.id)
    url = f"/api/v1/inboxes/{inbox_id}/imap"
    assert (await client.get(url, headers=workspace.auth())).json()["configured"] is False
    body = {"host": "imap.example.com", "username": "support", "password": "app-pass-123"}
    forbidden = await client.put(url, json=body, headers=workspace.auth("supervisor"))
    assert forbidden.status_code == 403
    bad = await client.put(url, json={**body, "host": "not a host!"}, headers=workspace.auth())
    assert bad.status_code == 422
    response = await client.put(url, json=body, headers=workspace.auth())
    assert response.status_code == 200, response.text
    data = response.json()
    assert data["configured"] and data["enabled"] and data["port"] == 993 and data["ssl"]
    assert "app-pass-123" not in response.text and "password" not in str(data.keys())
    stored = (await inbox(ctx, inbox_id)).imap
    assert stored["password_enc"] != "app-pass-123"
    assert email_imap.decrypt_password(settings.secret, stored["password_enc"]) == "app-pass-123"
    got = await client.get(url, headers=workspace.auth())
    assert got.json()["host"] == "imap.example.com" and "app-pass-123" not in got.text

    async with ctx.uow() as uow:
        widget = await workspaces.do_create_inbox(
            uow, Actor.system(workspace.id), kind=InboxKind.widget, name="Site"
        )
        await uow.commit()
    wrong_kind = await client.put(
        f"/api/v1/inboxes/{widget.id}/imap", json=body, headers=workspace.auth()
    )
    assert wrong_kind.status_code in (400, 422), wrong_kind.text

    removed = await client.delete(url, headers=workspace.auth())
    assert removed.status_code == 200 and removed.json()["configured"] is False
    assert (await inbox(ctx, inbox_id)).imap == {}


async def test_mails_become_tickets_and_a_restart_neither_loses_nor_reimports(
    ctx: AppContext,
    workspace: SeededWorkspace,
    client: httpx.AsyncClient,
    settings: Settings,
    dovecot: Dovecot,
) -> None:
    inbox_id = await create_email_inbox(ctx, workspace.id)
    await configure(client, workspace, inbox_id, dovecot)
    dovecot.append(mail(1))
    dovecot.append(mail(2, sender="bob@example.com"))
    assert await poll(ctx, inbox_id) == 2
    found = await tickets(ctx, workspace.id)
    assert [t.subject for t in found] == ["IMAP question 1", "IMAP question 2"]
    assert all(m.source == "imap" for m in await mails(ctx))
    state = (await inbox(ctx, inbox_id)).imap
    assert state["last_uid"] == 2 and state["uidvalidity"] == dovecot.uidvalidity("INBOX")
    assert await poll(ctx, inbox_id) == 0

    # A message arrives while the app is down; a new process picks it up, only it.
    await asyncio.to_thread(dovecot.append, mail(3))
    restarted = AppContext(settings)
    try:
        assert await poll(restarted, inbox_id) == 1
        # A crash after a message committed but before its mark moved: re-read, not re-stored.
        async with restarted.uow() as uow:
            await email_imap.do_record_poll(uow, inbox_id, last_uid=1)
            await uow.commit()
        assert await poll(restarted, inbox_id) == 2  # fetched again ...
    finally:
        await restarted.engine.dispose()
    assert len(await tickets(ctx, workspace.id)) == 3  # ... but stored once
    assert len(await mails(ctx)) == 3
    assert (await inbox(ctx, inbox_id)).imap["last_uid"] == 3


async def test_uidvalidity_change_rereads_the_folder_without_duplicates(
    ctx: AppContext, workspace: SeededWorkspace, client: httpx.AsyncClient, dovecot: Dovecot
) -> None:
    inbox_id = await create_email_inbox(ctx, workspace.id)
    await configure(client, workspace, inbox_id, dovecot, folder="Support")
    dovecot.append(mail(1), "Support")
    dovecot.append(mail(2), "Support")
    assert await poll(ctx, inbox_id) == 2
    before = (await inbox(ctx, inbox_id)).imap["uidvalidity"]

    await asyncio.to_thread(dovecot.recreate, "Support")
    for number in (1, 2, 3):
        await asyncio.to_thread(dovecot.append, mail(number), "Support")
    after = dovecot.uidvalidity("Support")
    assert after != before
    assert await poll(ctx, inbox_id) == 3  # everything re-read ...
    assert [t.subject for t in await tickets(ctx, workspace.id)] == [
        "IMAP question 1",
        "IMAP question 2",
        "IMAP question 3",
    ]  # ... only the new one stored
    state = (await inbox(ctx, inbox_id)).imap
    assert state["uidvalidity"] == after and state["last_uid"] == 3


async def test_same_mail_via_smtp_and_imap_is_stored_once(
    ctx: AppContext, workspace: SeededWorkspace, client: httpx.AsyncClient, dovecot: Dovecot
) -> None:
    inbox_id = await create_email_inbox(ctx, workspace.id)
    await configure(client, workspace, inbox_id, dovecot)
    smtp_port = ctx.extras["smtp_port"]
    code, _ = await send(smtp_port, mail(1))  # type: ignore[misc]
    assert code == 250
    await asyncio.to_thread(dovecot.append, mail(1))
    assert await poll(ctx, inbox_id) == 1  # fetched, recognised as the same message
    # And the other way round: first IMAP, then the same mail over SMTP.
    await asyncio.to_thread(dovecot.append, mail(2))
    assert await poll(ctx, inbox_id) == 1
    code, reply = await send(smtp_port, mail(2))  # type: ignore[misc]
    assert code == 250 and b"duplicate" in reply
    stored = await mails(ctx)
    assert sorted((m.message_id, m.source) for m in stored) == [
        ("imap-1@mail.example.com", "smtp"),
        ("imap-2@mail.example.com", "imap"),
    ]
    assert len(await tickets(ctx, workspace.id)) == 2


async def _wait_for_tickets(ctx: AppContext, workspace_id: int, count: int) -> None:
    async with asyncio.timeout(60):  # a hang guard, not a timing assertion
        while len(await tickets(ctx, workspace_id)) < count:  # noqa: ASYNC110 (database state; no event)
            await asyncio.sleep(0.05)


@pytest.fixture
def settings_overrides(request: pytest.FixtureRequest) -> dict[str, Any]:
    overrides: dict[str, Any] = getattr(request, "param", {})
    return overrides


# The watcher tests run their own ImapPoller instead of the app's.
@pytest.mark.parametrize("settings_overrides", [{"workers_enabled": False}], indirect=True)
@pytest.mark.parametrize("use_idle", [True, False], ids=["idle", "polling"])
async def test_live_watcher_with_idle_or_polling(
    ctx: AppContext,
    workspace: SeededWorkspace,
    client: httpx.AsyncClient,
    dovecot: Dovecot,
    use_idle: bool,
) -> None:
    poller = ImapPoller(tick_seconds=0.2, use_idle=use_idle)
    await poller.start(ctx)
    try:
        inbox_id = await create_email_inbox(ctx, workspace.id)
        dovecot.append(mail(1))
        # The longest interval: within the test only IDLE (or an explicit wake) fetches.
        await configure(client, workspace, inbox_id, dovecot, enabled=True, poll_seconds=3600)
        await _wait_for_tickets(ctx, workspace.id, 1)
        await poller.wait_passes(inbox_id, 1)
        await asyncio.to_thread(dovecot.append, mail(2))
        if not use_idle:
            poller.wake()  # what the interval would do, sooner
        await _wait_for_tickets(ctx, workspace.id, 2)
        assert (await inbox(ctx, inbox_id)).imap["last_error"] == ""
    finally:
        await poller.stop()
    assert len(await mails(ctx)) == 2
