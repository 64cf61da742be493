"""DELETE /tickets/{id}: a ticket goes for good, with its timeline, files, calls and mail."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import text
from sqlmodel import SQLModel, col, select

from app.context import AppContext
from app.events import workspace_topic
from app.models import (
    Attachment,
    AuditLog,
    Call,
    CallbackRequest,
    Contact,
    IdempotencyRecord,
    InboxKind,
    MailMessage,
    TicketEvent,
)
from app.models.email import MailDirection
from app.services import calls, webhooks, workspaces
from app.services.actors import Actor
from app.services.attachments import storage_path, write_blob
from channels.voice.recorder import CallRecorder
from tests.conftest import SeededWorkspace
from tests.services.webhook_receiver import Receiver

API = "/api/v1"
WORD = "zebraquartz"
BOTH_DATABASES = pytest.mark.parametrize("database_url", ["sqlite", "pg"], indirect=True)


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    server = Receiver()
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


async def create(client: httpx.AsyncClient, ws: SeededWorkspace, **body: Any) -> dict[str, Any]:
    r = await client.post(f"{API}/tickets", headers=ws.auth(), json=body)
    assert r.status_code == 201, r.text
    ticket: dict[str, Any] = r.json()
    return ticket


async def upload(
    client: httpx.AsyncClient, ws: SeededWorkspace, ticket_id: int, name: str, content: bytes
) -> dict[str, Any]:
    r = await client.post(
        f"{API}/tickets/{ticket_id}/attachments",
        headers=ws.auth(),
        files={"file": (name, content, "text/plain")},
    )
    assert r.status_code == 201, r.text
    attachment: dict[str, Any] = r.json()
    return attachment


async def reply_with(
    client: httpx.AsyncClient, ws: SeededWorkspace, ticket_id: int, body: str, ids: list[int]
) -> None:
    r = await client.post(
        f"{API}/tickets/{ticket_id}/replies",
        headers=ws.auth(),
        json={"body": body, "attachment_ids": ids},
    )
    assert r.status_code == 201, r.text


async def rows_of(ctx: AppContext, model: type[SQLModel], ticket_id: int) -> list[Any]:
    async with ctx.sessions() as session:
        column = getattr(model, "ticket_id")  # noqa: B009 (every model passed has one)
        return list((await session.exec(select(model).where(column == ticket_id))).all())


async def deletions(ctx: AppContext) -> list[AuditLog]:
    async with ctx.sessions() as session:
        stmt = select(AuditLog).where(AuditLog.action == "ticket.delete")
        return list((await session.exec(stmt.order_by(col(AuditLog.id)))).all())


def file_of(ctx: AppContext, key: str) -> Path:
    return storage_path(ctx.settings.data_dir, key)


async def start_call(ctx: AppContext, ws: SeededWorkspace, ticket: dict[str, Any]) -> int:
    """The ticket's customer calls from the widget (queued: a call in progress)."""
    async with ctx.uow() as uow:
        inbox = await workspaces.do_create_inbox(
            uow, Actor.system(ws.id), kind=InboxKind.widget, name="Website"
        )
        contact = await uow.session.get(Contact, ticket["contact_id"])
        assert contact is not None
        call = await calls.do_start_call(
            uow, inbox=inbox, contact=contact, owner_node="test", ticket_id=ticket["id"]
        )
        await uow.commit()
    assert call.id is not None
    return call.id


async def end_with_recording(ctx: AppContext, ws: SeededWorkspace, call_id: int) -> Path:
    """Hang up and attach a real recording from the voice recorder (no legs: silence)."""
    key = calls.recording_key(ws.id, call_id)
    recorder = CallRecorder(file_of(ctx, key))
    recorder.start()
    await asyncio.sleep(0.2)
    info = await recorder.stop()
    assert info.error is None and info.bytes > 0
    async with ctx.uow() as uow:
        call = await uow.session.get(Call, call_id)
        assert call is not None
        await calls.do_end(uow, call, hangup_by="agent", reason="done")
        await calls.do_attach_recording(uow, call, info.path, key, info.seconds)
        await uow.commit()
    return info.path


async def stored_mail(ctx: AppContext, ws: SeededWorkspace, ticket_id: int, raw: bytes) -> str:
    """Two inbound emails of the ticket: one with its raw source in blob storage (the
    key is returned), one (small) with it in its row."""
    key, _ = write_blob(ctx.settings.data_dir, ws.id, raw)
    async with ctx.uow() as uow:
        inbox = await workspaces.do_create_inbox(
            uow, Actor.system(ws.id), kind=InboxKind.email, name="Mail", address="help@acme.test"
        )
        assert inbox.id is not None
        sources: list[tuple[dict[str, Any], str]] = [
            ({"raw_key": key}, f"my {WORD} is broken"),
            (
                {"raw_data": b"From: jane@example.com\r\n\r\nstill broken"},
                f"my {WORD} is still broken",
            ),
        ]
        for n, (source, text) in enumerate(sources, start=1):
            uow.session.add(
                MailMessage(
                    workspace_id=ws.id,
                    inbox_id=inbox.id,
                    ticket_id=ticket_id,
                    direction=MailDirection.inbound,
                    message_id=f"<gdpr-{n}@example.com>",
                    subject=WORD,
                    full_text=text,
                    **source,
                )
            )
        uow.session.add(CallbackRequest(workspace_id=ws.id, ticket_id=ticket_id))
        await uow.commit()
    return key


@BOTH_DATABASES
async def test_deleting_a_ticket_erases_its_rows_files_and_search_entries(
    client: httpx.AsyncClient, ctx: AppContext, workspace: SeededWorkspace, receiver: Receiver
) -> None:
    auth = workspace.auth()
    hook = await client.post(
        f"{API}/webhooks",
        headers=auth,
        json={"url": receiver.url + "/hook", "events": ["ticket.deleted"]},
    )
    assert hook.status_code == 201, hook.text
    bus = await ctx.bus.subscribe([workspace_topic(workspace.id)])
    create_body = {
        "subject": f"Broken {WORD}",
        "contact": {"email": "jane@example.com", "name": "Jane"},
        "message": f"My {WORD} arrived broken.",
        "team_id": workspace.team_ids["Support"],
    }
    first = await client.post(
        f"{API}/tickets", headers={**auth, "Idempotency-Key": "gdpr-1"}, json=create_body
    )
    assert first.status_code == 201
    ticket = first.json()
    tid = ticket["id"]
    other = await create(client, workspace, subject="Another customer")

    # One file of its own, one with the same bytes as another ticket's (stored once).
    own = await upload(client, workspace, tid, "photo.txt", b"only this ticket has it")
    shared = await upload(client, workspace, tid, "invoice.txt", b"the same invoice")
    theirs = await upload(client, workspace, other["id"], "invoice.txt", b"the same invoice")
    await reply_with(client, workspace, tid, "Thanks, see the files", [own["id"], shared["id"]])
    raw_key = await stored_mail(ctx, workspace, tid, b"From: jane@example.com\r\n\r\nbroken")

    call_id = await start_call(ctx, workspace, ticket)
    refused = await client.delete(f"{API}/tickets/{tid}", headers=auth)
    assert refused.status_code == 409
    assert refused.json()["error"]["message"].startswith(
        f"ticket #{ticket['number']} has a call in progress"
    )
    recording = await end_with_recording(ctx, workspace, call_id)

    async with ctx.sessions() as session:
        keys = {
            a.id: a.storage_key
            for a in (await session.exec(select(Attachment).where(Attachment.ticket_id == tid)))
        }
    own_file, shared_file = file_of(ctx, keys[own["id"]]), file_of(ctx, keys[shared["id"]])
    assert own_file.exists() and shared_file.exists() and recording.exists()
    assert file_of(ctx, raw_key).exists()
    events_before = len(await rows_of(ctx, TicketEvent, tid))

    r = await client.delete(f"{API}/tickets/{tid}", headers=auth)
    assert r.status_code == 204, r.text
    assert r.content == b""

    # Gone from the API...
    for url in (f"/tickets/{tid}", f"/tickets/{tid}/events", f"/attachments/{own['id']}"):
        gone = await client.get(API + url, headers=auth)
        assert gone.status_code == 404, url
    assert (await client.delete(f"{API}/tickets/{tid}", headers=auth)).status_code == 404
    # ...from the database...
    for model in (TicketEvent, Attachment, Call, CallbackRequest, MailMessage):
        assert await rows_of(ctx, model, tid) == [], model
    # ...from storage, except the bytes another ticket still uses...
    assert not own_file.exists() and not recording.exists()
    assert not file_of(ctx, raw_key).exists()
    assert shared_file.exists()
    kept = await client.get(f"{API}/attachments/{theirs['id']}", headers=auth)
    assert kept.status_code == 200 and kept.content == b"the same invoice"
    # ...and from the search index.
    found = await client.get(f"{API}/search", headers=auth, params={"q": WORD})
    assert found.json()["tickets"] == []
    listed = await client.get(f"{API}/tickets", headers=auth, params={"q": WORD})
    assert listed.json()["items"] == []
    if ctx.settings.database_url.startswith("sqlite"):
        # FTS5 keeps its own index (PostgreSQL indexes the live rows themselves).
        async with ctx.sessions() as session:
            for fts in ("fts_ticket", "fts_ticket_event"):
                hits = await session.exec(  # type: ignore[call-overload]
                    text(f"SELECT rowid FROM {fts} WHERE {fts} MATCH :q").bindparams(q=WORD)
                )
                assert hits.all() == [], fts
    # A retried create is a new request now, not an answer naming a deleted ticket.
    again = await client.post(
        f"{API}/tickets", headers={**auth, "Idempotency-Key": "gdpr-1"}, json=create_body
    )
    assert again.status_code == 201 and again.json()["id"] != tid
    async with ctx.sessions() as session:
        records = (await session.exec(select(IdempotencyRecord))).all()
    assert [rec.response["id"] for rec in records] == [again.json()["id"]]
    assert (await client.get(f"{API}/tickets/{other['id']}", headers=auth)).status_code == 200

    # Who deleted what is in the audit log (without the ticket's content).
    [audit] = await deletions(ctx)
    assert (audit.target_type, audit.target_id, audit.actor_type) == ("ticket", tid, "api")
    assert audit.details["number"] == ticket["number"]
    assert audit.details["counts"] == {
        "calls": 1,
        "callbacks": 1,
        "outbound_emails": 0,
        "mails": 2,
        "attachments": 3,  # two uploads and the recording
        "kept_for_merged_tickets": 0,
        "events": events_before,
        "files": 3,  # the own upload, the recording and the raw email kept as a file
    }
    assert WORD not in str(audit.details)

    # Open consoles hear about it; integrations get a signed `ticket.deleted`.
    async with asyncio.timeout(10):
        while (message := await bus.get())["type"] != "ticket.deleted":
            pass
    await bus.close()
    assert message["ticket"] == {
        "id": tid,
        "number": ticket["number"],
        "team_id": workspace.team_ids["Support"],
    }
    await receiver.wait_for(lambda rc: len(rc.on("/hook")) == 1)
    [delivery] = receiver.on("/hook")
    assert delivery.event == "ticket.deleted"
    assert webhooks.verify(
        hook.json()["secret"], delivery.headers["helpdesk-signature"], delivery.body
    )
    data = delivery.json()["data"]
    assert (data["id"], data["number"]) == (tid, ticket["number"]) and data["deleted_at"]


async def test_only_admins_of_the_workspace_delete(
    client: httpx.AsyncClient, workspace: SeededWorkspace, other_workspace: SeededWorkspace
) -> None:
    ticket = await create(client, workspace, subject="Keep me")
    url = f"{API}/tickets/{ticket['id']}"
    for role in ("agent", "supervisor"):
        r = await client.delete(url, headers=workspace.auth(role))
        assert r.status_code == 403, role
        assert r.json()["error"]["code"] == "forbidden"
    r = await client.delete(url, headers=other_workspace.auth("admin"))
    assert r.status_code == 404 and r.json()["error"]["code"] == "not_found"
    missing = await client.delete(f"{API}/tickets/{ticket['id'] + 1000}", headers=workspace.auth())
    assert missing.status_code == 404
    assert (await client.get(url, headers=workspace.auth())).status_code == 200


@BOTH_DATABASES
async def test_deleting_one_side_of_a_merge_leaves_the_other_whole(
    client: httpx.AsyncClient, ctx: AppContext, workspace: SeededWorkspace
) -> None:
    auth = workspace.auth()
    # The source's file is shown by the copy of its reply on the target after the merge.
    source = await create(client, workspace, subject="Source", message="first")
    target = await create(client, workspace, subject="Target", message="second")
    sent = await upload(client, workspace, source["id"], "label.txt", b"shipping label")
    await reply_with(client, workspace, source["id"], "Here is the label", [sent["id"]])
    merged = await client.post(
        f"{API}/tickets/{target['id']}/merge", headers=auth, json={"source_ticket_id": source["id"]}
    )
    assert merged.status_code == 200, merged.text

    assert (await client.delete(f"{API}/tickets/{source['id']}", headers=auth)).status_code == 204
    events = (await client.get(f"{API}/tickets/{target['id']}/events", headers=auth)).json()
    copy = next(e for e in events["items"] if e["body"] == "Here is the label")
    assert copy["payload"]["attachments"] == [sent["id"]]
    label = await client.get(f"{API}/attachments/{sent['id']}", headers=auth)
    assert label.status_code == 200 and label.content == b"shipping label"
    listed = (await client.get(f"{API}/tickets/{target['id']}/attachments", headers=auth)).json()
    assert [a["id"] for a in listed["items"]] == [sent["id"]]
    [audit] = await deletions(ctx)
    assert audit.details["counts"]["kept_for_merged_tickets"] == 1
    assert audit.details["counts"]["files"] == 0

    # Deleting the target now takes the moved file with it.
    async with ctx.sessions() as session:
        row = await session.get(Attachment, sent["id"])
        assert row is not None
    label_file = file_of(ctx, row.storage_key)
    assert (await client.delete(f"{API}/tickets/{target['id']}", headers=auth)).status_code == 204
    assert not label_file.exists()

    # A merge target's deletion turns its sources back into plain tickets.
    source2 = await create(client, workspace, subject="Source 2", message="third")
    target2 = await create(client, workspace, subject="Target 2")
    await client.post(
        f"{API}/tickets/{target2['id']}/merge",
        headers=auth,
        json={"source_ticket_id": source2["id"]},
    )
    assert (await client.delete(f"{API}/tickets/{target2['id']}", headers=auth)).status_code == 204
    left = await client.get(f"{API}/tickets/{source2['id']}", headers=auth)
    assert left.status_code == 200
    assert left.json()["merged_into_id"] is None and left.json()["status"] == "closed"
    timeline = (await client.get(f"{API}/tickets/{source2['id']}/events", headers=auth)).json()
    assert [e["kind"] for e in timeline["items"]] == ["message", "merged", "status"]
    reopened = await client.patch(
        f"{API}/tickets/{source2['id']}", headers=auth, json={"status": "open"}
    )
    assert reopened.status_code == 200, reopened.text
    assert [a.target_id for a in await deletions(ctx)] == [
        source["id"],
        target["id"],
        target2["id"],
    ]
