"""Identity verification on the widget, and the agent websocket (auth, streams, writes)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import pytest
from sqlmodel import select
from webchat_client import Agent, Widget
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed
from websockets.typing import Origin

from app.context import AppContext
from app.models import Inbox, TicketEvent
from app.services.visitors import identity_hash
from tests.conftest import LiveServer, SeededWorkspace


def identity(
    inbox: Inbox, external_id: str, expires: int | None = None, **extra: Any
) -> dict[str, Any]:
    expires = expires if expires is not None else int(time.time()) + 3600
    assert inbox.identity_secret
    return {
        "id": external_id,
        "expires": expires,
        "hash": identity_hash(inbox.identity_secret, external_id, expires),
        **extra,
    }


async def test_verified_customer_follows_across_devices(
    live_server: LiveServer, chat_inbox: Inbox
) -> None:
    key = chat_inbox.public_key or ""
    laptop = await Widget.open(
        live_server.ws_url, key, identity=identity(chat_inbox, "cust-42", name="Ada")
    )
    assert laptop.welcome["contact"]["verified"] is True
    ack = await laptop.say("from the laptop")
    phone = await Widget.open(live_server.ws_url, key, identity=identity(chat_inbox, "cust-42"))
    assert phone.welcome["ticket"] == ack["ticket"]
    assert (await phone.expect("event"))["body"] == "from the laptop"
    # The laptop's visitor token alone (signed out on the host page) reads nothing.
    anonymous = await Widget.open(live_server.ws_url, key, token=laptop.welcome["token"])
    assert anonymous.welcome["ticket"] is None
    assert anonymous.welcome["contact"]["verified"] is False
    await anonymous.send({"type": "ping"})
    await anonymous.expect("pong")
    assert anonymous.events() == []
    for w in (laptop, phone, anonymous):
        await w.close()


@pytest.mark.parametrize("case", ["bad_hash", "other_id", "expired", "far_future", "not_int"])
async def test_bad_identity_stays_anonymous(
    live_server: LiveServer, chat_inbox: Inbox, case: str
) -> None:
    key = chat_inbox.public_key or ""
    owner = await Widget.open(live_server.ws_url, key, identity=identity(chat_inbox, "cust-7"))
    await owner.say("only for cust-7")
    good = identity(chat_inbox, "cust-7")
    forged: dict[str, Any] = {
        "bad_hash": {**good, "hash": "0" * 64},
        "other_id": {**identity(chat_inbox, "cust-8"), "id": "cust-7"},
        "expired": identity(chat_inbox, "cust-7", expires=int(time.time()) - 10),
        "far_future": identity(chat_inbox, "cust-7", expires=int(time.time()) + 400 * 86400),
        "not_int": {**good, "expires": str(good["expires"])},
    }[case]
    intruder = await Widget.open(live_server.ws_url, key, identity=forged)
    err = await intruder.expect("error")
    assert err["code"] == ("identity_expired" if case == "expired" else "identity_invalid")
    assert intruder.welcome["ticket"] is None and intruder.welcome["contact"]["verified"] is False
    # The identify frame after welcome behaves the same.
    await intruder.send({"type": "identify", **forged})
    assert (await intruder.expect("error"))["code"] == err["code"]
    await intruder.send({"type": "ping"})
    await intruder.expect("pong")
    assert intruder.events() == []
    await owner.close()
    await intruder.close()


async def test_identify_moves_anonymous_chat_to_customer(
    live_server: LiveServer, chat_inbox: Inbox
) -> None:
    key = chat_inbox.public_key or ""
    w = await Widget.open(live_server.ws_url, key)
    ack = await w.say("before sign-in")
    await w.send({"type": "identify", **identity(chat_inbox, "cust-99")})
    welcome = await w.expect("welcome")
    assert welcome["contact"]["verified"] is True and welcome["ticket"] == ack["ticket"]
    replay = await w.expect("event", lambda f: f["ticket"] == ack["ticket"])
    assert replay["body"] == "before sign-in"
    other = await Widget.open(live_server.ws_url, key, identity=identity(chat_inbox, "cust-99"))
    assert other.welcome["ticket"] == ack["ticket"]
    await w.close()
    await other.close()


async def test_agent_reply_reaches_visitor_live_and_notes_do_not(
    live_server: LiveServer,
    chat_inbox: Inbox,
    workspace: SeededWorkspace,
    cookie_for: Callable[[int], Any],
    ctx: AppContext,
) -> None:
    key = chat_inbox.public_key or ""
    agent = await Agent.open(
        live_server.ws_url, cookie=await cookie_for(workspace.agent_ids["agent"])
    )
    assert agent.welcome["presence"] == "available"
    await agent.send({"type": "subscribe", "stream": "team", "team": workspace.team_ids["Support"]})
    await agent.expect("subscribed")
    visitor = await Widget.open(live_server.ws_url, key)
    assert visitor.welcome["agents_available"] is True
    ack = await visitor.say("need help")
    ticket = ack["ticket"]
    seen = await agent.expect("event", lambda f: f["kind"] == "message")
    assert (seen["ticket"], seen["body"]) == (ticket, "need help")
    # Typing both ways, never stored.
    await visitor.send({"type": "typing", "typing": True})
    typing = await agent.expect("typing")
    assert typing["ticket"] == ticket and typing["author"]["type"] == "contact"
    await agent.send({"type": "typing", "ticket": ticket, "typing": True})
    assert (await visitor.expect("typing"))["author"]["name"] == "Agent acme"
    await agent.send({"type": "note", "client_id": "n1", "ticket": ticket, "body": "internal!"})
    note_ack = await agent.expect("ack", lambda f: f["client_id"] == "n1")
    reply_ack = await agent.reply(ticket, "hello from Anna", "r1")
    assert reply_ack["seq"] > note_ack["seq"]
    again = await agent.reply(ticket, "hello from Anna", "r1")
    assert again == reply_ack
    got = await visitor.expect("event", lambda f: f["author"]["type"] == "agent")
    assert got["body"] == "hello from Anna" and got["seq"] == reply_ack["seq"]
    await agent.send({"type": "read", "ticket": ticket, "seq": ack["seq"]})
    assert (await visitor.expect("read"))["seq"] == ack["seq"]
    assert all(e["body"] != "internal!" for e in visitor.events())
    note = await agent.expect("event", lambda f: f["kind"] == "note")
    assert note["internal"] is True
    async with ctx.sessions() as session:
        stmt = select(TicketEvent).where(TicketEvent.client_id == "r1")
        assert len((await session.exec(stmt)).all()) == 1
    await visitor.close()
    await agent.close()


async def test_agent_ticket_stream_resumes_after_cursor(
    live_server: LiveServer, chat_inbox: Inbox, workspace: SeededWorkspace
) -> None:
    visitor = await Widget.open(live_server.ws_url, chat_inbox.public_key or "")
    ticket = (await visitor.say("m1"))["ticket"]
    await visitor.say("m2")
    agent = await Agent.open(live_server.ws_url, bearer=workspace.tokens["agent"])
    await agent.send({"type": "subscribe", "stream": "ticket", "ticket": ticket, "after_seq": 1})
    await agent.expect("subscribed")
    first = await agent.expect("event")
    assert (first["seq"], first["body"]) == (2, "m2")
    await visitor.say("m3")
    assert (await agent.expect("event"))["body"] == "m3"
    await agent.send({"type": "subscribe", "stream": "ticket", "ticket": 999_999})
    assert (await agent.expect("error"))["code"] == "not_found"
    await agent.close()
    await visitor.close()


async def test_agent_socket_auth_and_origin(
    live_server: LiveServer, workspace: SeededWorkspace, cookie_for: Callable[[int], Any]
) -> None:
    cookie = await cookie_for(workspace.agent_ids["agent"])

    async def refused(**kwargs: Any) -> tuple[int | None, str]:
        conn = await connect(f"{live_server.ws_url}/console/ws", **kwargs)
        with pytest.raises(ConnectionClosed) as info:
            async with asyncio.timeout(10):
                while True:
                    await conn.recv()
        rcvd = info.value.rcvd
        return (rcvd.code, rcvd.reason) if rcvd else (None, "")

    assert await refused() == (1008, "not signed in")
    assert await refused(additional_headers={"Authorization": "Bearer hd_wrong"}) == (
        1008,
        "not signed in",
    )
    assert await refused(
        additional_headers={"Cookie": cookie}, origin=Origin("http://evil.example")
    ) == (1008, "origin not allowed")
    ok = await Agent.open(live_server.ws_url, cookie=cookie, origin="http://testserver")
    assert ok.welcome["agent"]["id"] == workspace.agent_ids["agent"]
    await ok.send({"type": "presence", "status": "away"})
    me = ok.welcome["agent"]["id"]
    await ok.expect("presence", lambda f: f["agent"] == me and f["status"] == "away")
    await ok.close()
    token_client = await Agent.open(live_server.ws_url, bearer=workspace.tokens["admin"])
    await token_client.send({"type": "presence", "status": "available"})
    assert (await token_client.expect("error"))["code"] == "forbidden"
    await token_client.close()


async def test_agent_burst_of_writes_is_acked_in_order_and_bad_ones_alone(
    live_server: LiveServer, chat_inbox: Inbox, workspace: SeededWorkspace, ctx: AppContext
) -> None:
    """An agent need not wait for each ack: writes sent back to back are stored in the
    order sent (they may share a transaction); one that fails gets its own error."""
    visitor = await Widget.open(live_server.ws_url, chat_inbox.public_key or "")
    ticket = (await visitor.say("hello"))["ticket"]
    agent = await Agent.open(live_server.ws_url, bearer=workspace.tokens["agent"])
    frames: list[dict[str, Any]] = [
        {"type": "reply", "client_id": f"r{i}", "ticket": ticket, "body": f"answer {i}"}
        for i in range(6)
    ]
    frames.insert(3, {"type": "reply", "client_id": "bad", "ticket": 999_999, "body": "lost"})
    frames.append({"type": "note", "client_id": "n0", "ticket": ticket, "body": "internal"})
    for frame in frames:
        await agent.send(frame)
    acks = [await agent.expect("ack", lambda f, c=f["client_id"]: f["client_id"] == c)
            for f in frames if f["client_id"] != "bad"]  # fmt: skip
    error = await agent.expect("error", lambda f: f.get("client_id") == "bad")
    assert error["code"] == "not_found"
    seqs = [a["seq"] for a in acks]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)
    async with ctx.sessions() as session:
        stmt = select(TicketEvent.body).where(TicketEvent.ticket_id == ticket)
        bodies = list((await session.exec(stmt.order_by(TicketEvent.seq))).all())  # type: ignore[arg-type]
    # (The first answer also opened the ticket: a status event without a body.)
    assert [b for b in bodies if b] == ["hello", *(f"answer {i}" for i in range(6)), "internal"]
    # Resending the burst stores nothing new and answers the same acks.
    for frame in frames:
        await agent.send(frame)
    again = [await agent.expect("ack", lambda f, c=f["client_id"]: f["client_id"] == c)
             for f in frames if f["client_id"] != "bad"]  # fmt: skip
    assert again == acks
    await agent.close()
    await visitor.close()
