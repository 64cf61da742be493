"""The widget protocol against the running app over real websockets."""

from __future__ import annotations

import asyncio
import json
import uuid
from typing import Any

import pytest
from prometheus_client import REGISTRY
from sqlmodel import col, func, select
from webchat_client import ORIGIN, Widget
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed
from websockets.typing import Origin

from app.context import AppContext
from app.models import Inbox, Ticket, TicketEvent
from app.services.actors import Actor
from app.services.tickets import do_note, do_reply
from tests.conftest import LiveServer, SeededWorkspace


async def stored(ctx: AppContext, ticket_id: int) -> list[TicketEvent]:
    async with ctx.sessions() as session:
        stmt = (
            select(TicketEvent)
            .where(TicketEvent.ticket_id == ticket_id)
            .order_by(col(TicketEvent.seq))
        )
        return list((await session.exec(stmt)).all())


async def agent_says(ctx: AppContext, ws: SeededWorkspace, ticket: int, body: str) -> int:
    actor = Actor.system(ws.id, "Anna Agent")
    async with ctx.uow() as uow:
        event, _ = await do_reply(uow, actor, ticket, body=body)
        await uow.commit()
    return event.seq


async def closed_with(conn: Any) -> tuple[int | None, str]:
    with pytest.raises(ConnectionClosed) as info:
        async with asyncio.timeout(10):
            while True:
                await conn.recv()
    rcvd = info.value.rcvd
    return (rcvd.code, rcvd.reason) if rcvd else (None, "")


async def test_hello_welcome_new_visitor(live_server: LiveServer, chat_inbox: Inbox) -> None:
    w = await Widget.open(live_server.ws_url, chat_inbox.public_key or "")
    welcome = w.welcome
    assert welcome["token"]
    assert welcome["contact"]["id"] is None
    assert welcome["ticket"] is None and welcome["last_seq"] == 0
    assert welcome["agents_available"] is False
    assert welcome["inbox"]["greeting"] == "Hi!"
    await w.send({"type": "ping"})
    assert (await w.expect("pong"))["type"] == "pong"
    await w.close()


def open_widgets() -> float:
    value = REGISTRY.get_sample_value("helpdesk_websocket_connections", {"route": "/widget/ws"})
    return value or 0.0


async def test_open_widget_connections_are_counted(
    live_server: LiveServer, chat_inbox: Inbox
) -> None:
    """The chat websockets skip the router (app/web/ws_direct) and are still counted."""
    before = open_widgets()
    w = await Widget.open(live_server.ws_url, chat_inbox.public_key or "")
    assert open_widgets() == before + 1
    await w.close()
    for _ in range(500):
        if open_widgets() == before:
            break
        await asyncio.sleep(0.01)
    assert open_widgets() == before


async def test_message_ack_after_commit_and_dedupe(
    live_server: LiveServer, chat_inbox: Inbox, ctx: AppContext
) -> None:
    w = await Widget.open(live_server.ws_url, chat_inbox.public_key or "")
    client_id = str(uuid.uuid4())
    ack = await w.say("Hello there", client_id)
    assert ack["seq"] == 1 and ack["ticket"]
    events = await stored(ctx, ack["ticket"])
    assert [(e.seq, e.body, e.client_id) for e in events] == [(1, "Hello there", client_id)]
    own = await w.expect("event", lambda f: f["seq"] == 1)
    assert own["author"]["type"] == "contact" and own["client_id"] == client_id
    # The ticket sits in the inbox's team as a chat.
    async with ctx.sessions() as session:
        ticket = await session.get(Ticket, ack["ticket"])
        assert ticket is not None
        assert ticket.channel.value == "chat" and ticket.team_id == chat_inbox.team_id
    # A resend (same client_id) answers the same ack and stores nothing.
    again = await w.say("Hello there", client_id)
    assert again == ack
    assert len(await stored(ctx, ack["ticket"])) == 1
    second = await w.say("second")
    assert second["ticket"] == ack["ticket"] and second["seq"] == 2
    await w.close()


async def test_replay_after_cursor_skips_notes(
    live_server: LiveServer, chat_inbox: Inbox, ctx: AppContext, workspace: SeededWorkspace
) -> None:
    w = await Widget.open(live_server.ws_url, chat_inbox.public_key or "")
    first = await w.say("one")
    ticket = first["ticket"]
    await w.say("two")
    token = w.welcome["token"]
    await w.close()
    await agent_says(ctx, workspace, ticket, "reply three")
    async with ctx.uow() as uow:
        await do_note(uow, Actor.system(workspace.id), ticket, body="secret note")
        await uow.commit()
    await agent_says(ctx, workspace, ticket, "reply five")

    w2 = await Widget.open(
        live_server.ws_url, chat_inbox.public_key or "", token=token, after_seq=2, ticket=ticket
    )
    assert w2.welcome["ticket"] == ticket and w2.welcome["contact"]["id"] is not None
    last_seq = w2.welcome["last_seq"]
    replayed = [await w2.expect("event") for _ in range(2)]
    in_db = {e.body: e.seq for e in await stored(ctx, ticket)}
    assert [(e["seq"], e["body"]) for e in replayed] == [
        (in_db["reply three"], "reply three"),
        (in_db["reply five"], "reply five"),
    ]
    assert all(e["author"]["type"] in ("agent", "system") for e in replayed)
    assert last_seq == max(in_db.values()) > in_db["secret note"] > 2
    # Live events continue after the replay, exactly once.
    seq = await agent_says(ctx, workspace, ticket, "live six")
    live = await w2.expect("event")
    assert (live["seq"], live["body"]) == (seq, "live six")
    await w2.send({"type": "ping"})
    await w2.expect("pong")
    bodies = [e["body"] for e in w2.events()]
    assert "secret note" not in bodies and len(bodies) == len(set(bodies))
    await w2.close()


async def test_full_replay_without_cursor_and_second_tab(
    live_server: LiveServer, chat_inbox: Inbox
) -> None:
    w = await Widget.open(live_server.ws_url, chat_inbox.public_key or "")
    await w.say("first")
    token = w.welcome["token"]
    tab = await Widget.open(live_server.ws_url, chat_inbox.public_key or "", token=token)
    assert tab.welcome["ticket"] is not None
    assert (await tab.expect("event"))["body"] == "first"
    ack = await w.say("from tab one")
    seen = await tab.expect("event", lambda f: f["seq"] == ack["seq"])
    assert seen["body"] == "from tab one"
    await w.close()
    await tab.close()


async def test_second_tab_before_first_message_follows(
    live_server: LiveServer, chat_inbox: Inbox
) -> None:
    w = await Widget.open(live_server.ws_url, chat_inbox.public_key or "")
    tab = await Widget.open(
        live_server.ws_url, chat_inbox.public_key or "", token=w.welcome["token"]
    )
    assert tab.welcome["contact"]["id"] is None
    ack = await w.say("hi from tab one")
    event = await tab.expect("event")
    assert (event["ticket"], event["seq"], event["body"]) == (ack["ticket"], 1, "hi from tab one")
    state = await tab.expect("state")
    assert state["state"] == "waiting"
    await w.close()
    await tab.close()


@pytest.mark.parametrize("origin", ["http://evil.example", "null", ""])
async def test_origin_rejected_before_accept(
    live_server: LiveServer, chat_inbox: Inbox, origin: str
) -> None:
    conn = await connect(
        f"{live_server.ws_url}/widget/ws?inbox={chat_inbox.public_key}",
        origin=Origin(origin) if origin else None,
    )
    assert await closed_with(conn) == (1008, "origin not allowed")


async def test_unknown_inbox_and_missing_hello(live_server: LiveServer, chat_inbox: Inbox) -> None:
    conn = await connect(f"{live_server.ws_url}/widget/ws?inbox=wk_nope", origin=Origin(ORIGIN))
    assert await closed_with(conn) == (1008, "unknown inbox")
    conn = await connect(
        f"{live_server.ws_url}/widget/ws?inbox={chat_inbox.public_key}", origin=Origin(ORIGIN)
    )
    await conn.send(json.dumps({"type": "message", "client_id": "x", "body": "no hello"}))
    assert await closed_with(conn) == (1008, "hello expected")


async def test_bad_frames_get_error_frames(live_server: LiveServer, chat_inbox: Inbox) -> None:
    w = await Widget.open(live_server.ws_url, chat_inbox.public_key or "")
    await w.conn.send("not json")
    assert (await w.expect("error"))["code"] == "bad_frame"
    await w.send({"type": "teleport"})
    assert (await w.expect("error"))["code"] == "bad_frame"
    await w.send({"type": "message", "client_id": "", "body": "x"})
    assert (await w.expect("error"))["code"] == "bad_frame"
    await w.conn.send(b"\x00binary")
    assert (await w.expect("error"))["code"] == "bad_frame"
    await w.send({"type": "message", "client_id": "c-empty", "body": "   "})
    err = await w.expect("error")
    assert (err["code"], err["client_id"]) == ("invalid", "c-empty")
    await w.send({"type": "ping"})
    await w.expect("pong")
    await w.close()


async def test_limits_length_frame_size_and_rate(
    live_server: LiveServer, chat_inbox: Inbox, ctx: AppContext
) -> None:
    w = await Widget.open(live_server.ws_url, chat_inbox.public_key or "")
    await w.send({"type": "message", "client_id": "long", "body": "x" * 5001})
    err = await w.expect("error")
    assert (err["code"], err["client_id"]) == ("too_long", "long")
    await w.send({"type": "message", "client_id": "big", "body": "y" * 40_000})
    assert (await w.expect("error"))["code"] == "too_large"
    ok = await w.say("x" * 5000)
    # Rate: a burst of 20 per visitor, then rate_limited with retry_after; nothing acked is lost.
    acked: list[str] = []
    limited: list[dict[str, Any]] = []
    ids = [f"burst-{i}" for i in range(30)]
    for cid in ids:
        await w.send({"type": "message", "client_id": cid, "body": cid})
    while len(acked) + len(limited) < len(ids):
        frame = await w.recv()
        if frame["type"] == "ack":
            acked.append(frame["client_id"])
        elif frame["type"] == "error":
            assert frame["code"] == "rate_limited" and frame["retry_after"] > 0
            limited.append(frame)
    assert limited and len(acked) >= 18
    bodies = {e.body for e in await stored(ctx, ok["ticket"])}
    assert set(acked) <= bodies
    assert not {f["client_id"] for f in limited} & bodies
    # Past the hard transport limit the connection is closed with 1009.
    await w.conn.send("z" * 70_000)
    assert (await closed_with(w.conn))[0] == 1009


async def test_visitor_never_reads_another_visitors_ticket(
    live_server: LiveServer, chat_inbox: Inbox, ctx: AppContext
) -> None:
    a = await Widget.open(live_server.ws_url, chat_inbox.public_key or "")
    ack = await a.say("private of a", "client-a-1")
    b = await Widget.open(live_server.ws_url, chat_inbox.public_key or "")
    # Reusing a's client_id does not hand b a's ack.
    await b.send({"type": "message", "client_id": "client-a-1", "body": "steal"})
    err = await b.expect("error")
    assert err["code"] == "conflict"
    assert b.welcome["ticket"] is None
    forged = await Widget.open(
        live_server.ws_url, chat_inbox.public_key or "", token=a.welcome["token"] + "x"
    )
    assert forged.welcome["ticket"] is None and forged.welcome["token"] != a.welcome["token"]
    async with ctx.sessions() as session:
        count = (
            await session.exec(select(func.count()).where(TicketEvent.ticket_id == ack["ticket"]))
        ).one()
    assert count == 1
    for w in (a, b, forged):
        await w.close()


async def test_deleted_conversation_leaves_the_widget_and_the_next_message_starts_anew(
    live_server: LiveServer, chat_inbox: Inbox, ctx: AppContext, workspace: SeededWorkspace
) -> None:
    from app.models import ActorType, Role
    from app.services import ticket_deletion

    w = await Widget.open(live_server.ws_url, chat_inbox.public_key or "")
    first = await w.say("please forget me")
    ticket = first["ticket"]
    await w.expect("event", lambda f: f["seq"] == 1)
    admin = Actor(workspace_id=workspace.id, type=ActorType.api, role=Role.admin)
    async with ctx.uow() as uow:
        await ticket_deletion.do_delete_ticket(uow, admin, ctx.settings.data_dir, ticket)
        await uow.commit()
    gone = await w.expect("state", lambda f: f["state"] == "deleted")
    assert gone["ticket"] == ticket and gone["agent"] is None
    again = await w.say("one more thing")
    assert again["seq"] == 1  # a new conversation (on SQLite possibly under the same id)
    assert [e.body for e in await stored(ctx, again["ticket"])] == ["one more thing"]
    await w.expect("event", lambda f: f["ticket"] == again["ticket"] and f["seq"] == 1)
    await w.close()


async def test_a_database_that_fails_answers_unavailable_and_keeps_the_connection(
    live_server: LiveServer, chat_inbox: Inbox, ctx: AppContext
) -> None:
    w = await Widget.open(live_server.ws_url, chat_inbox.public_key or "")
    first = await w.say("stored before the failure")
    # A real failure of the database: the timeline table is gone for a moment.
    async with ctx.engine.begin() as conn:
        await conn.exec_driver_sql("ALTER TABLE ticket_event RENAME TO ticket_event_away")
    client_id = str(uuid.uuid4())
    try:
        await w.send({"type": "message", "client_id": client_id, "body": "during the failure"})
        error = await w.expect("error", lambda f: f.get("client_id") == client_id)
        assert error["code"] == "unavailable"
        await w.send({"type": "ping"})
        await w.expect("pong")  # the connection stays open
    finally:
        async with ctx.engine.begin() as conn:
            await conn.exec_driver_sql("ALTER TABLE ticket_event_away RENAME TO ticket_event")
    # The widget resends what was not acknowledged: stored once, after what was.
    again = await w.say("during the failure", client_id)
    assert again["ticket"] == first["ticket"] and again["seq"] == first["seq"] + 1
    events = await stored(ctx, first["ticket"])
    assert [e.body for e in events] == ["stored before the failure", "during the failure"]
    await w.close()
