"""Where an inbound mail's original bytes live: small ones in their row, big ones in a
file; either way the .eml download gives back exactly what arrived, deleting the ticket
removes it, and 250 still comes only after the commit."""

from __future__ import annotations

import re
from email.message import EmailMessage
from email.utils import make_msgid
from pathlib import Path
from typing import Any

import httpx
import pytest
from mailtools import create_email_inbox, cut_while_storing, mails, port, send, tickets
from sqlmodel import col, select

from app.context import AppContext
from app.models import MailMessage
from app.services.attachments import storage_path
from channels.email.smtp_in import SmtpListener
from tests.conftest import SeededWorkspace

API = "/api/v1"
# Small enough that a test mail crosses it with a few KB of text.
INLINE_LIMIT = 4096
BOTH_DATABASES = pytest.mark.parametrize("database_url", ["sqlite", "pg"], indirect=True)


@pytest.fixture
def settings_overrides() -> dict[str, Any]:
    return {"email_inline_raw_bytes": INLINE_LIMIT}


@pytest.fixture
async def inbox_id(ctx: AppContext, workspace: SeededWorkspace) -> int:
    return await create_email_inbox(ctx, workspace.id)


def compose(body: str, **headers: str) -> bytes:
    msg = EmailMessage()
    msg["From"] = "Anna Kunde <anna@example.com>"
    msg["To"] = "support@demo.localhost"
    msg["Subject"] = "Printer"
    msg["Message-ID"] = make_msgid(domain="mail.example.com")
    for name, value in headers.items():
        msg[name.replace("_", "-")] = value
    msg.set_content(body)
    return msg.as_bytes()


def on_the_wire(raw: bytes) -> bytes:
    """What the listener receives from `send`: CRLF line ends (no dot-stuffing needed
    for these bodies)."""
    return re.sub(rb"\r?\n", b"\r\n", raw)


def stored_files(ctx: AppContext) -> list[Path]:
    root = ctx.settings.data_dir / "attachments"
    return sorted(p for p in root.rglob("*") if p.is_file()) if root.exists() else []


async def raw_columns(ctx: AppContext) -> dict[int, tuple[str | None, bytes | None]]:
    async with ctx.sessions() as s:
        stmt = select(MailMessage.id, MailMessage.raw_key, MailMessage.raw_data)
        rows = (await s.exec(stmt.order_by(col(MailMessage.id)))).all()
    return {row_id: (key, data) for row_id, key, data in rows if row_id is not None}


async def download(client: httpx.AsyncClient, ws: SeededWorkspace, mail_id: int | None) -> bytes:
    response = await client.get(f"{API}/emails/{mail_id}/raw", headers=ws.auth("agent"))
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "message/rfc822"
    return response.content


@BOTH_DATABASES
async def test_small_source_in_the_row_big_one_in_a_file_both_download_identical(
    ctx: AppContext, workspace: SeededWorkspace, inbox_id: int, client: httpx.AsyncClient
) -> None:
    small = compose("The printer is jammed.")
    big = compose("Still jammed. " * 600)  # ~8 KB, over the limit
    assert len(on_the_wire(small)) <= INLINE_LIMIT < len(on_the_wire(big))
    for raw in (small, big):
        code, _ = await send(port(ctx), raw)  # type: ignore[misc]
        assert code == 250

    first, second = await mails(ctx)  # loaded as entities: the row's bytes stay behind
    columns = await raw_columns(ctx)
    assert first.id is not None and second.id is not None
    # The small one: bytes in the row, no file created for it at all.
    assert columns[first.id] == (None, on_the_wire(small))
    assert first.size == len(on_the_wire(small))
    # The big one: a file, named by the row, exactly as before.
    key, data = columns[second.id]
    assert key is not None and data is None
    assert stored_files(ctx) == [storage_path(ctx.settings.data_dir, key)]
    assert storage_path(ctx.settings.data_dir, key).read_bytes() == on_the_wire(big)

    assert await download(client, workspace, first.id) == on_the_wire(small)
    assert await download(client, workspace, second.id) == on_the_wire(big)
    detail = await client.get(f"{API}/emails/{first.id}", headers=workspace.auth("agent"))
    assert detail.status_code == 200 and "jammed" in detail.json()["full_text"]


async def test_threshold_zero_keeps_every_source_in_a_file(
    ctx: AppContext, workspace: SeededWorkspace, inbox_id: int, client: httpx.AsyncClient
) -> None:
    ctx.settings.email_inline_raw_bytes = 0
    raw = compose("Tiny.")
    code, _ = await send(port(ctx), raw)  # type: ignore[misc]
    assert code == 250
    [mail] = await mails(ctx)
    assert mail.raw_key is not None and len(stored_files(ctx)) == 1
    assert await download(client, workspace, mail.id) == on_the_wire(raw)


@BOTH_DATABASES
async def test_deleting_the_ticket_removes_both_kinds_of_source(
    ctx: AppContext, workspace: SeededWorkspace, inbox_id: int, client: httpx.AsyncClient
) -> None:
    small = compose("The printer is jammed.")
    first_id = re.search(rb"Message-ID: (<[^>]+>)", small)
    assert first_id is not None
    reply = compose("Any news? " * 800, In_Reply_To=first_id.group(1).decode())
    for raw in (small, reply):
        code, _ = await send(port(ctx), raw)  # type: ignore[misc]
        assert code == 250
    [ticket] = await tickets(ctx, workspace.id)
    stored = await mails(ctx)
    assert [m.ticket_id for m in stored] == [ticket.id, ticket.id]
    assert [m.raw_key is None for m in stored] == [True, False]
    [big_file] = stored_files(ctx)

    r = await client.delete(f"{API}/tickets/{ticket.id}", headers=workspace.auth())
    assert r.status_code == 204, r.text
    assert await raw_columns(ctx) == {}
    assert not big_file.exists() and stored_files(ctx) == []
    for mail in stored:
        gone = await client.get(f"{API}/emails/{mail.id}/raw", headers=workspace.auth("agent"))
        assert gone.status_code == 404


@pytest.mark.parametrize("size", ["inline", "file"])
async def test_no_250_before_commit_for_either_kind_of_source(
    ctx: AppContext,
    workspace: SeededWorkspace,
    inbox_id: int,
    settings: Any,
    client: httpx.AsyncClient,
    size: str,
) -> None:
    """The listener dies while the mail waits for the database: no 250, nothing stored;
    the retry stores it once, with its source."""
    listener = next(s for s in ctx.services if isinstance(s, SmtpListener))
    # Short lines, none starting with a dot: sent below without dot-stuffing.
    raw = on_the_wire(compose("Still jammed!\n" * (2 if size == "inline" else 600)))
    assert (len(raw) <= INLINE_LIMIT) == (size == "inline")
    db_path = settings.database_url.split("///", 1)[1]
    assert await cut_while_storing(ctx, db_path, raw + b".\r\n") == "disconnected"
    code, _ = await send(listener.port, raw)  # type: ignore[misc]
    assert code == 250
    await send(listener.port, raw)  # a duplicate: stored once
    [mail] = await mails(ctx)
    assert (mail.raw_key is None) == (size == "inline")
    assert len(stored_files(ctx)) == (0 if size == "inline" else 1)
    assert await download(client, workspace, mail.id) == raw
