"""Group commit: mail that arrives while a transaction runs is stored by the next one.

The database's write lock is held from outside (as another process would) so that
deliveries queue behind a first one; what the clients see must not change: 250
only after the commit, duplicates stored once, replies threaded, and a mail that
cannot be stored fails alone.
"""

from __future__ import annotations

import asyncio
import smtplib
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from email.message import EmailMessage
from typing import Any

import pytest
from mailtools import compose, create_email_inbox, events, mails, port, send, tickets
from sqlalchemy import event

from app.context import AppContext
from app.models import Attachment, EventKind
from app.services import workspaces
from app.services.actors import Actor
from app.services.attachments import storage_path
from channels.email.ingest import ingest_queue
from channels.email.smtp_in import SmtpListener
from tests.conftest import SeededWorkspace


@contextmanager
def write_lock(settings: Any) -> Iterator[None]:
    """Hold SQLite's write lock from another connection: every writer queues."""
    lock = sqlite3.connect(settings.database_url.split("///", 1)[1], isolation_level=None)
    lock.execute("BEGIN IMMEDIATE")
    try:
        yield
    finally:
        lock.execute("ROLLBACK")
        lock.close()


async def until(predicate: Any) -> None:
    while not predicate():  # noqa: ASYNC110 (the queue has no change signal)
        await asyncio.sleep(0.01)


@contextmanager
def mail_inserts(ctx: AppContext) -> Iterator[list[str]]:
    seen: list[str] = []

    def record(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        if statement.startswith("INSERT INTO mail_message"):
            seen.append(statement)

    event.listen(ctx.engine.sync_engine, "before_cursor_execute", record)
    try:
        yield seen
    finally:
        event.remove(ctx.engine.sync_engine, "before_cursor_execute", record)


@pytest.fixture(autouse=True)
def sqlite_only(settings: Any) -> None:
    if not settings.is_sqlite:
        pytest.skip("holds the SQLite write lock from outside")


async def test_mails_that_queue_together_commit_together(
    ctx: AppContext, workspace: SeededWorkspace, settings: Any
) -> None:
    await create_email_inbox(ctx, workspace.id)
    queue = ingest_queue(ctx)
    with mail_inserts(ctx) as inserts:
        with write_lock(settings):
            first = asyncio.create_task(send(port(ctx), compose("m0@x", "first")))
            await until(lambda: queue.writing == 1)  # its transaction waits for the lock
            queued = [
                compose("m1@x", "new question"),
                compose("m2@x", "Re: new question", In_Reply_To="<m1@x>"),
                compose("m1@x", "new question"),  # the same mail again
                compose("m3@x", "another question"),
            ]
            rest = []
            for number, raw in enumerate(queued, start=1):
                rest.append(asyncio.create_task(send(port(ctx), raw)))
                await until(lambda n=number: len(queue.pending) == n)
            assert not first.done()  # nobody has been answered before a commit
        replies: list[Any] = [await first, *[await task for task in rest]]
    assert [code for code, _ in replies] == [250] * 5
    assert b"duplicate" in replies[3][1]
    assert len(inserts) == 2  # one multi-row INSERT per transaction
    assert sorted(m.message_id for m in await mails(ctx)) == ["m0@x", "m1@x", "m2@x", "m3@x"]
    found = {t.subject: t for t in await tickets(ctx, workspace.id)}
    assert sorted(found) == ["another question", "first", "new question"]
    timeline = await events(ctx, found["new question"].id or 0)
    assert [e.kind for e in timeline] == [EventKind.email_in, EventKind.email_in]
    assert timeline[1].payload["threaded_by"] == "references"  # a mail of the same batch
    # The batch took ticket numbers for three new tickets at once and gave back the
    # one the reply did not need: numbering stays gap-free.
    await send(port(ctx), compose("m4@x", "later question"))
    numbers = [t.number for t in await tickets(ctx, workspace.id)]
    assert numbers == list(range(numbers[0], numbers[0] + 4))


def conversation(port: int, raw: bytes, rcpt: str, go: threading.Event) -> int:
    with smtplib.SMTP("127.0.0.1", port, timeout=60) as client:
        client.ehlo("client.test")
        client.mail("anna@example.com")
        code, _ = client.rcpt(rcpt)
        assert code == 250
        go.wait(60)
        code, _ = client.data(raw)
        return code


async def test_a_mail_that_cannot_be_stored_fails_alone(
    ctx: AppContext, workspace: SeededWorkspace, settings: Any
) -> None:
    await create_email_inbox(ctx, workspace.id)
    doomed = await create_email_inbox(ctx, workspace.id, address="sales@demo.localhost")
    queue = ingest_queue(ctx)
    go = threading.Event()
    plan = [
        ("m1@x", "support@demo.localhost"),
        ("m2@x", "sales@demo.localhost"),  # its inbox is deleted after RCPT
        ("m3@x", "support@demo.localhost"),
    ]
    tasks = [
        asyncio.create_task(asyncio.to_thread(conversation, port(ctx), compose(mid, mid), rcpt, go))
        for mid, rcpt in plan
    ]
    listener = next(s for s in ctx.services if isinstance(s, SmtpListener))

    def recipients() -> int:
        return sum(len(p.envelope.rcpt_tos) for p in listener.protocols if p.envelope)

    await until(lambda: recipients() == 3)
    async with ctx.uow() as uow:
        await workspaces.do_delete_inbox(uow, Actor.system(workspace.id), doomed)
        await uow.commit()
    with write_lock(settings):
        first = asyncio.create_task(send(port(ctx), compose("m0@x", "first")))
        await until(lambda: queue.writing == 1)
        go.set()
        await until(lambda: len(queue.pending) == 3)
    answered = await first
    assert isinstance(answered, tuple) and answered[0] == 250
    codes = [await task for task in tasks]
    assert codes == [250, 451, 250]
    assert sorted(m.message_id for m in await mails(ctx)) == ["m0@x", "m1@x", "m3@x"]


async def test_recipients_follow_inbox_changes_at_once(
    ctx: AppContext, workspace: SeededWorkspace
) -> None:
    raw = compose("m1@x", "hello")
    refused = await send(port(ctx), raw, rcpt=["sales@demo.localhost"])
    assert isinstance(refused, dict) and refused["rcpt"][0] == 550
    inbox_id = await create_email_inbox(ctx, workspace.id, address="sales@demo.localhost")
    accepted = await send(port(ctx), raw, rcpt=["Sales+anything@demo.localhost"])
    assert isinstance(accepted, tuple) and accepted[0] == 250
    async with ctx.uow() as uow:
        await workspaces.do_update_inbox(
            uow, Actor.system(workspace.id), inbox_id, address="orders@demo.localhost"
        )
        await uow.commit()
    moved = await send(port(ctx), compose("m2@x", "hello"), rcpt=["sales@demo.localhost"])
    assert isinstance(moved, dict) and moved["rcpt"][0] == 550
    accepted = await send(port(ctx), compose("m2@x", "hello"), rcpt=["orders@demo.localhost"])
    assert isinstance(accepted, tuple) and accepted[0] == 250


async def test_attachments_of_a_batch_stay_with_their_mails(
    ctx: AppContext, workspace: SeededWorkspace, settings: Any
) -> None:
    """A batch stores every attachment row in one INSERT; each file must still end
    up on its own mail's event, in the mail's order, with the skipped ones named."""
    await create_email_inbox(ctx, workspace.id)
    queue = ingest_queue(ctx)

    def with_files(message_id: str, names: list[str]) -> bytes:
        msg = EmailMessage()
        msg["From"] = "anna@example.com"
        msg["To"] = "support@demo.localhost"
        msg["Subject"] = message_id
        msg["Message-ID"] = f"<{message_id}>"
        msg.set_content("files\n")
        for name in names:
            content = b"" if name.startswith("empty") else f"{message_id}/{name}".encode()
            msg.add_attachment(content, maintype="application", subtype="pdf", filename=name)
        return msg.as_bytes()

    plan = {
        "a@x": ["a1.pdf", "a2.pdf", "a3.pdf"],
        "b@x": [],
        "c@x": ["c1.pdf", "empty.pdf", "c2.pdf"],
    }
    with write_lock(settings):
        first = asyncio.create_task(send(port(ctx), with_files("first@x", ["f.pdf"])))
        await until(lambda: queue.writing == 1)
        rest = []
        for number, (message_id, names) in enumerate(plan.items(), start=1):
            rest.append(asyncio.create_task(send(port(ctx), with_files(message_id, names))))
            await until(lambda n=number: len(queue.pending) == n)
    for task in [first, *rest]:
        reply = await task
        assert isinstance(reply, tuple) and reply[0] == 250
    by_subject = {t.subject: t for t in await tickets(ctx, workspace.id)}
    async with ctx.uow(read_only=True) as uow:
        for message_id, names in {"first@x": ["f.pdf"], **plan}.items():
            ticket = by_subject[message_id]
            [email_in] = await events(ctx, ticket.id or 0)
            ids = email_in.payload["attachments"]
            files = [await uow.session.get(Attachment, file_id) for file_id in ids]
            kept = [n for n in names if not n.startswith("empty")]
            assert [f.filename for f in files if f is not None] == kept
            for f in files:
                assert f is not None
                assert (f.ticket_id, f.event_id) == (ticket.id, email_in.id)
                path = storage_path(settings.data_dir, f.storage_key)
                assert path.read_bytes() == f"{message_id}/{f.filename}".encode()
            skipped = email_in.payload["skipped_attachments"]
            assert skipped == (["empty.pdf: empty"] if len(kept) < len(names) else [])
