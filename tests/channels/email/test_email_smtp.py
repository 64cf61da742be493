"""Real SMTP conversations (stdlib smtplib) with the running app, outbound to a real sink."""

from __future__ import annotations

import asyncio
import smtplib
from collections.abc import AsyncIterator
from email.message import EmailMessage
from email.utils import make_msgid
from pathlib import Path
from typing import Any

import httpx
import pytest
from mailtools import (
    Sink,
    create_email_inbox,
    cut_while_storing,
    events,
    inbox,
    mails,
    port,
    send,
    tickets,
)
from sqlalchemy import update
from sqlmodel import col

from app.context import AppContext
from app.models import EventKind, OutboundEmail, OutboxState, TicketStatus
from app.services.actors import Actor
from app.services.tickets import do_update_ticket
from channels.email.smtp_in import SmtpListener
from tests.conftest import SeededWorkspace

FIXTURES = Path(__file__).parent / "fixtures"


@pytest.fixture
async def sink() -> AsyncIterator[Sink]:
    server = Sink()
    await server.start()
    yield server
    await server.stop()


@pytest.fixture
def settings_overrides(sink: Sink) -> dict[str, Any]:
    return {"smtp_relay": f"127.0.0.1:{sink.port}"}


@pytest.fixture
async def inbox_id(ctx: AppContext, workspace: SeededWorkspace) -> int:
    return await create_email_inbox(ctx, workspace.id)


def fixture(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


def compose(
    subject: str,
    body: str,
    *,
    sender: str = "Anna Kunde <anna@example.com>",
    to: str = "support@demo.localhost",
    **headers: str,
) -> bytes:
    msg = EmailMessage()
    msg["From"] = sender
    msg["To"] = to
    msg["Subject"] = subject
    msg["Message-ID"] = make_msgid(domain="mail.example.com")
    for name, value in headers.items():
        msg[name.replace("_", "-")] = value
    msg.set_content(body)
    return msg.as_bytes()


async def reply_via_api(
    client: httpx.AsyncClient, ws: SeededWorkspace, ticket_id: int, body: str
) -> dict[str, Any]:
    response = await client.post(
        f"/api/v1/tickets/{ticket_id}/replies", json={"body": body}, headers=ws.auth("agent")
    )
    assert response.status_code in (200, 201), response.text
    data: dict[str, Any] = response.json()
    return data


async def test_mail_becomes_ticket_reply_goes_out_and_answer_threads_back(
    ctx: AppContext,
    workspace: SeededWorkspace,
    inbox_id: int,
    sink: Sink,
    client: httpx.AsyncClient,
) -> None:
    code, _ = await send(port(ctx), fixture("plain_new.eml"))  # type: ignore[misc]
    assert code == 250
    [ticket] = await tickets(ctx, workspace.id)
    assert ticket.channel.value == "email" and ticket.inbox_id == inbox_id
    assert ticket.subject == "Router does not start"
    assert sorted(ticket.participants) == ["bob@example.com", "carol@example.org"]
    [first] = await events(ctx, ticket.id or 0)
    assert first.kind is EventKind.email_in
    assert first.body.startswith("Hello,\n\nmy router does not start")
    assert first.payload["message_id"] == "new-1@mail.example.com"

    await reply_via_api(client, workspace, ticket.id or 0, "Please hold reset for 10 seconds.")
    [out] = await sink.wait_for(1)
    msg = out.message
    assert out.rcpt_tos == ["anna@example.com", "bob@example.com", "carol@example.org"]
    assert out.mail_from == "support@demo.localhost"
    assert msg["In-Reply-To"] == "<new-1@mail.example.com>"
    assert "<new-1@mail.example.com>" in msg["References"]
    assert msg["Subject"] == f"Re: Router does not start [#{ticket.number}]"
    assert msg["From"].addresses[0].addr_spec == "support@demo.localhost"
    # An API token answers in the inbox's name (a console agent would use their own).
    assert msg["From"].addresses[0].display_name == "Demo Support"
    reply_to = msg["Reply-To"].addresses[0].addr_spec
    assert reply_to.startswith("support+t") and reply_to.endswith("@demo.localhost")
    body = msg.get_body(preferencelist=("plain",))
    assert body is not None and "Please hold reset" in body.get_content()

    # The customer's client answers the captured message the usual way.
    answer = EmailMessage()
    answer["From"] = "Anna Kunde <anna@example.com>"
    answer["To"] = msg["Reply-To"]
    answer["Subject"] = "Re: " + msg["Subject"]
    answer["Message-ID"] = make_msgid(domain="mail.example.com")
    answer["In-Reply-To"] = msg["Message-ID"]
    answer["References"] = f"{msg['References']} {msg['Message-ID']}"
    answer.set_content("It works now, thanks!\n\nOn Monday Support wrote:\n> Please hold reset")
    code, _ = await send(port(ctx), answer.as_bytes(), rcpt=[reply_to])  # type: ignore[misc]
    assert code == 250
    assert len(await tickets(ctx, workspace.id)) == 1
    timeline = await events(ctx, ticket.id or 0)
    last = timeline[-1]
    assert last.kind is EventKind.email_in and last.body == "It works now, thanks!"
    assert last.payload["threaded_by"] == "token"
    assert last.payload["quoted"].startswith("On Monday Support wrote:")
    out_event = next(e for e in timeline if e.kind is EventKind.email_out)
    assert out_event.payload["delivery"]["state"] == "sent"


async def test_threading_by_references_and_subject_tag(
    ctx: AppContext, workspace: SeededWorkspace, inbox_id: int
) -> None:
    await send(port(ctx), fixture("plain_new.eml"))
    [ticket] = await tickets(ctx, workspace.id)
    # References only (plain address, different subject): threads by Message-ID.
    by_refs = compose(
        "something else",
        "more info",
        In_Reply_To="<nobody@x>",
        References="<new-1@mail.example.com>",
    )
    await send(port(ctx), by_refs)
    # Subject tag from the ticket's contact.
    await send(port(ctx), compose(f"Update [#{ticket.number}]", "tag from anna"))
    # Same tag from a stranger: a new ticket, not someone else's conversation.
    stranger = compose(
        f"Update [#{ticket.number}]", "guessing numbers", sender="mallory@example.net"
    )
    await send(port(ctx), stranger, mail_from="mallory@example.net")
    # A forged plus token is just a new ticket too.
    forged = compose("hi", "forged token", to="support+t1-aaaaaaaaaaaaaaaa@demo.localhost")
    await send(port(ctx), forged, rcpt=["support+t1-aaaaaaaaaaaaaaaa@demo.localhost"])
    all_tickets = await tickets(ctx, workspace.id)
    assert len(all_tickets) == 3
    timeline = [e for e in await events(ctx, ticket.id or 0) if e.kind is EventKind.email_in]
    assert [e.payload["threaded_by"] for e in timeline] == ["new", "references", "subject"]


async def test_unknown_recipient_dedupe_and_malformed(
    ctx: AppContext, workspace: SeededWorkspace, inbox_id: int
) -> None:
    result = await send(port(ctx), fixture("plain_new.eml"), rcpt=["nobody@demo.localhost"])
    assert isinstance(result, dict) and result["rcpt"][0] == 550
    assert await tickets(ctx, workspace.id) == []
    for _ in range(2):
        code, reply = await send(port(ctx), fixture("plain_new.eml"))  # type: ignore[misc]
        assert code == 250
    assert b"duplicate" in reply
    assert len(await mails(ctx)) == 1
    [ticket] = await tickets(ctx, workspace.id)
    assert len(await events(ctx, ticket.id or 0)) == 1

    def malformed() -> list[int]:
        with smtplib.SMTP("127.0.0.1", port(ctx), timeout=30) as c:
            c.ehlo("client.test")
            return [
                c.docmd("FROB", "x")[0],  # unknown command
                c.docmd("RCPT", "TO:<support@demo.localhost>")[0],  # before MAIL
                c.docmd("MAIL", "FROM:<a@b> SIZE=notanumber")[0],  # bad parameter
                c.docmd("DATA")[0],  # no recipients
            ]

    codes = await asyncio.to_thread(malformed)
    assert all(500 <= code < 600 for code in codes), codes


async def test_closed_ticket_reopens_on_reply(
    ctx: AppContext, workspace: SeededWorkspace, inbox_id: int
) -> None:
    await send(port(ctx), fixture("plain_new.eml"))
    [ticket] = await tickets(ctx, workspace.id)
    async with ctx.uow() as uow:
        await do_update_ticket(
            uow, Actor.system(workspace.id), ticket.id or 0, {"status": TicketStatus.closed}
        )
        await uow.commit()
    await send(port(ctx), fixture("reply_quoted.eml").replace(b"<out-1@demo.localhost>", b""))
    [same] = await tickets(ctx, workspace.id)
    assert same.status is TicketStatus.open


async def test_auto_ack_loop_protection_and_throttle(
    ctx: AppContext, workspace: SeededWorkspace, sink: Sink
) -> None:
    await create_email_inbox(ctx, workspace.id, auto_ack=True)
    await send(port(ctx), fixture("plain_new.eml"))
    [ack] = await sink.wait_for(1)
    assert ack.message["Auto-Submitted"] == "auto-replied"
    assert ack.mail_from == "<>"  # null return path (RFC 3834 3.3)
    [ticket] = await tickets(ctx, workspace.id)
    assert f"[#{ticket.number}]" in ack.message["Subject"]
    # A second new ticket from the same sender inside the window: no second ack.
    await send(port(ctx), compose("another topic", "second question"))
    # Automatic mail of every kind: stored, never answered.
    for name in ("auto_replied.eml", "x_autoreply.eml", "list_bulk.eml", "null_sender.eml"):
        code, _ = await send(port(ctx), fixture(name), mail_from="x@example.org")  # type: ignore[misc]
        assert code == 250, name
    code, _ = await send(  # type: ignore[misc]
        port(ctx), compose("Hi", "null envelope", sender="bob@example.com"), mail_from="<>"
    )
    assert code == 250
    async with ctx.sessions() as s:
        from sqlmodel import select

        outbound = (await s.exec(select(OutboundEmail))).all()
    assert len(outbound) == 1
    assert len(await mails(ctx)) == 1 + 1 + 4 + 1 + 1  # 7 inbound, 1 outbound
    await asyncio.sleep(0)
    assert len(sink.messages) == 1


async def test_bounce_marks_outbound_failed_without_new_ticket(
    ctx: AppContext,
    workspace: SeededWorkspace,
    inbox_id: int,
    sink: Sink,
    client: httpx.AsyncClient,
) -> None:
    await send(port(ctx), fixture("plain_new.eml"))
    [ticket] = await tickets(ctx, workspace.id)
    await reply_via_api(client, workspace, ticket.id or 0, "Answer that will bounce")
    [out] = await sink.wait_for(1)
    sent_id = out.message["Message-ID"].strip("<>")
    dsn = fixture("bounce_dsn.eml").replace(b"out-1@demo.localhost", sent_id.encode())
    code, reply = await send(port(ctx), dsn, mail_from="<>")  # type: ignore[misc]
    assert code == 250, reply
    assert len(await tickets(ctx, workspace.id)) == 1
    timeline = await events(ctx, ticket.id or 0)
    out_event = next(e for e in timeline if e.kind is EventKind.email_out)
    delivery = out_event.payload["delivery"]
    assert delivery["state"] == "bounced" and delivery["status"] == "5.1.1"
    async with ctx.sessions() as s:
        from sqlmodel import select

        [row] = (await s.exec(select(OutboundEmail))).all()
    assert row.state is OutboxState.failed and "5.1.1" in row.last_error
    # The bounce itself is kept (raw source) on the ticket, but is no customer message.
    assert [e.kind for e in timeline].count(EventKind.email_in) == 1
    stored = await mails(ctx)
    assert stored[-1].ticket_id == ticket.id and stored[-1].message_id == "bounce-1@mx.example.com"


async def test_relay_failure_retries_and_is_sent_once(
    ctx: AppContext,
    workspace: SeededWorkspace,
    inbox_id: int,
    sink: Sink,
    client: httpx.AsyncClient,
) -> None:
    await send(port(ctx), fixture("plain_new.eml"))
    [ticket] = await tickets(ctx, workspace.id)
    sink.reply = "451 4.3.0 try later"
    await reply_via_api(client, workspace, ticket.id or 0, "retry me")
    row = await _wait_outbound(ctx, lambda r: r.attempts >= 1 and r.state is OutboxState.pending)
    assert "451" in row.last_error
    sink.reply = "250 OK"
    async with ctx.uow() as uow:  # make the retry due now instead of in 30 s
        await uow.session.exec(
            update(OutboundEmail).values(next_attempt_at=row.created_at)  # type: ignore[call-overload]
        )
        await uow.commit()
    worker = next(s for s in ctx.services if s.name == "email-outbox")
    worker.wake()  # type: ignore[attr-defined]
    [delivered] = await sink.wait_for(1)
    row = await _wait_outbound(ctx, lambda r: r.state is OutboxState.sent)
    assert row.attempts == 2
    assert delivered.message["Message-ID"] == f"<{row.message_id}>"


async def _wait_outbound(ctx: AppContext, predicate: Any) -> OutboundEmail:
    from sqlmodel import select

    while True:
        async with ctx.sessions() as s:
            rows = (await s.exec(select(OutboundEmail).order_by(col(OutboundEmail.id)))).all()
        if rows and predicate(rows[-1]):
            return rows[-1]
        await asyncio.sleep(0.02)


async def test_no_250_before_commit_and_nothing_lost(
    ctx: AppContext, workspace: SeededWorkspace, inbox_id: int, settings: Any
) -> None:
    """The listener dies while the message waits for the database: the client must not
    have seen 250, and its retry stores the message exactly once."""
    listener = next(s for s in ctx.services if isinstance(s, SmtpListener))
    raw = fixture("plain_new.eml")
    db_path = settings.database_url.split("///", 1)[1]
    assert (
        await cut_while_storing(ctx, db_path, raw.replace(b"\n", b"\r\n") + b"\r\n.\r\n")
        == "disconnected"
    )
    code, _ = await send(listener.port, raw)  # type: ignore[misc]
    assert code == 250
    for _ in range(3):
        await send(listener.port, raw)
    assert len([m for m in await mails(ctx) if m.message_id == "new-1@mail.example.com"]) == 1
    assert len(await tickets(ctx, workspace.id)) == 1
    assert (await inbox(ctx, inbox_id)).id == inbox_id


async def test_raw_eml_download_is_scoped(
    ctx: AppContext,
    workspace: SeededWorkspace,
    other_workspace: SeededWorkspace,
    inbox_id: int,
    client: httpx.AsyncClient,
) -> None:
    raw = fixture("html_hostile.eml")
    await send(port(ctx), raw, mail_from="mallory@example.net")
    [mail] = await mails(ctx)
    response = await client.get(f"/api/v1/emails/{mail.id}/raw", headers=workspace.auth("agent"))
    assert response.status_code == 200
    assert response.headers["content-type"] == "message/rfc822"
    assert response.content.replace(b"\r\n", b"\n") == raw
    detail = await client.get(f"/api/v1/emails/{mail.id}", headers=workspace.auth("agent"))
    assert detail.status_code == 200
    assert (
        "<script" not in detail.json()["html"] and "cid:shot1@example.net" in detail.json()["html"]
    )
    other = await client.get(f"/api/v1/emails/{mail.id}/raw", headers=other_workspace.auth("admin"))
    assert other.status_code == 404
