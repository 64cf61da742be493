"""Helpers for email integration tests: a real aiosmtpd sink and a blocking smtplib client."""

from __future__ import annotations

import asyncio
import re
import smtplib
import sqlite3
from dataclasses import dataclass, field
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from typing import Any

from aiosmtpd.smtp import SMTP, Envelope, Session
from sqlmodel import col, select

from app.context import AppContext
from app.models import Inbox, InboxKind, MailMessage, Ticket, TicketEvent
from tests.conftest import make_inbox


@dataclass
class Captured:
    mail_from: str
    rcpt_tos: list[str]
    raw: bytes

    @property
    def message(self) -> EmailMessage:
        msg = BytesParser(policy=policy.default).parsebytes(self.raw)
        assert isinstance(msg, EmailMessage)
        return msg


@dataclass
class Sink:
    """A bare aiosmtpd server on an ephemeral port that records what it receives."""

    server: asyncio.AbstractServer | None = None
    port: int = 0
    messages: list[Captured] = field(default_factory=list)
    arrived: asyncio.Event = field(default_factory=asyncio.Event)
    reply: str = "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        if self.reply.startswith("250"):
            raw = envelope.original_content or b""
            assert isinstance(raw, bytes)
            self.messages.append(Captured(envelope.mail_from or "", list(envelope.rcpt_tos), raw))
            self.arrived.set()
        return self.reply

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self.server = await loop.create_server(lambda: SMTP(self), "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()

    async def wait_for(self, count: int) -> list[Captured]:
        while len(self.messages) < count:
            self.arrived.clear()
            await self.arrived.wait()
        return self.messages


def smtp_send(
    port: int, raw: bytes, mail_from: str, rcpt: list[str]
) -> tuple[int, bytes] | dict[str, Any]:
    """Send with the stdlib client (run it in a thread); returns the DATA reply.

    Fixture files use LF; on the wire every MTA sends CRLF, so convert like one."""
    raw = re.sub(rb"\r?\n", b"\r\n", raw)
    with smtplib.SMTP("127.0.0.1", port, timeout=30) as client:
        client.ehlo("client.test")
        code, msg = client.mail(mail_from)
        assert code == 250, (code, msg)
        for address in rcpt:
            code, msg = client.rcpt(address)
            if code != 250:
                return {"rcpt": (code, msg)}
        return client.data(raw)


def port(ctx: AppContext) -> int:
    value = ctx.extras["smtp_port"]
    assert isinstance(value, int)
    return value


async def send(
    port: int, raw: bytes, mail_from: str = "anna@example.com", rcpt: list[str] | None = None
) -> tuple[int, bytes] | dict[str, Any]:
    return await asyncio.to_thread(
        smtp_send, port, raw, mail_from, rcpt or ["support@demo.localhost"]
    )


def compose(message_id: str, subject: str, body: str | None = None, **headers: str) -> bytes:
    """A plain mail from Anna to the demo support address; headers given as
    Header_Name="value"."""
    msg = EmailMessage()
    msg["From"] = "Anna Kunde <anna@example.com>"
    msg["To"] = "support@demo.localhost"
    msg["Subject"] = subject
    msg["Message-ID"] = f"<{message_id}>"
    for name, value in headers.items():
        msg[name.replace("_", "-")] = value
    msg.set_content(body if body is not None else f"{subject}\n")
    return msg.as_bytes()


async def create_email_inbox(
    ctx: AppContext, workspace_id: int, address: str = "support@demo.localhost", **fields: Any
) -> int:
    inbox = await make_inbox(
        ctx, workspace_id, InboxKind.email, name="Demo Support", address=address, **fields
    )
    assert inbox.id is not None
    return inbox.id


async def tickets(ctx: AppContext, workspace_id: int) -> list[Ticket]:
    async with ctx.sessions() as s:
        stmt = select(Ticket).where(Ticket.workspace_id == workspace_id).order_by(col(Ticket.id))
        return list((await s.exec(stmt)).all())


async def events(ctx: AppContext, ticket_id: int) -> list[TicketEvent]:
    async with ctx.sessions() as s:
        stmt = (
            select(TicketEvent)
            .where(TicketEvent.ticket_id == ticket_id)
            .order_by(col(TicketEvent.seq))
        )
        return list((await s.exec(stmt)).all())


async def mails(ctx: AppContext) -> list[MailMessage]:
    async with ctx.sessions() as s:
        return list((await s.exec(select(MailMessage).order_by(col(MailMessage.id)))).all())


async def inbox(ctx: AppContext, inbox_id: int) -> Inbox:
    async with ctx.sessions() as s:
        found = await s.get(Inbox, inbox_id)
        assert found is not None
        return found


async def cut_while_storing(ctx: AppContext, db_path: str, data: bytes) -> str:
    """A "crash" between DATA and the commit: a client sends `data` (the DATA payload
    with its terminating dot line) while another connection holds SQLite's write lock,
    and the app's SMTP listener is stopped while the mail waits for the database.
    Returns what the client saw ("disconnected", or the reply it got); the listener
    is started again and the lock released before returning."""
    from channels.email.smtp_in import SmtpListener

    listener = next(s for s in ctx.services if isinstance(s, SmtpListener))
    lock = sqlite3.connect(db_path, isolation_level=None, check_same_thread=False)

    def conversation() -> str:
        with smtplib.SMTP("127.0.0.1", listener.port, timeout=60) as c:
            c.ehlo("client.test")
            c.mail("anna@example.com")
            c.rcpt("support@demo.localhost")
            lock.execute("BEGIN IMMEDIATE")  # the database is now busy for everyone else
            code, _ = c.docmd("DATA")
            assert code == 354
            c.send(data)
            try:
                code, msg = c.getreply()
            except smtplib.SMTPServerDisconnected:
                return "disconnected"
            return f"{code} {msg!r}"

    task = asyncio.create_task(asyncio.to_thread(conversation))
    # aiosmtpd exposes no "DATA received" signal; poll its session state.
    while not any(p.envelope and p.envelope.original_content for p in listener.protocols):  # noqa: ASYNC110
        await asyncio.sleep(0.01)
    await listener.stop()  # every open session is cut
    outcome = await task
    lock.execute("ROLLBACK")
    lock.close()
    await listener.start(ctx)  # the app comes back; the sender's MTA retries
    return outcome
