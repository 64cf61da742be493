"""Two real app processes on one PostgreSQL database and Redis pub/sub.

A visitor on node A chats with an agent on node B; the visitor then reconnects to
node B and the agent to node A, and both resume exactly where they were.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import pytest
from sqlmodel import col, select
from webchat_client import ORIGIN, Client, session_cookie
from webchat_nodes import Node, node_env
from websockets.asyncio.client import connect
from websockets.typing import Origin

from app.bus import MemoryBus
from app.context import AppContext
from app.models import InboxKind, Role, TicketEvent, Workspace
from app.services import workspaces
from app.services.actors import Actor
from app.services.agent_auth import password_fingerprint
from app.settings import Settings
from tests.conftest import (
    REDIS_URL,
    create_pg_database,
    drop_pg_database,
    make_settings,
    requires_pg,
    requires_redis,
)

pytestmark = [requires_pg, requires_redis, pytest.mark.pg, pytest.mark.redis]


async def seed(settings: Settings) -> tuple[str, int, str]:
    ctx = AppContext(settings, bus=MemoryBus())
    try:
        async with ctx.uow() as uow:
            # A random workspace id keeps Redis topics apart from other runs sharing the server.
            ws = Workspace(id=random.randint(10_000, 2_000_000_000), slug="two", name="Two")
            uow.session.add(ws)
            await uow.session.flush()
            assert ws.id is not None
            system = Actor.system(ws.id)
            team = await workspaces.do_create_team(uow, system, "Support")
            assert team.id is not None
            agent = await workspaces.do_create_agent(
                uow,
                system,
                email="anna@two.test",
                name="Anna",
                password=None,
                role=Role.agent,
                team_ids=[team.id],
            )
            inbox = await workspaces.do_create_inbox(
                uow,
                system,
                kind=InboxKind.widget,
                name="Chat",
                team_id=team.id,
                allowed_origins=[ORIGIN],
            )
            await uow.commit()
        assert agent.id is not None
        cookie = session_cookie(settings, agent.id, ws.id, password_fingerprint(agent))
        return inbox.public_key or "", agent.id, cookie
    finally:
        await ctx.engine.dispose()


async def widget(node: Node, key: str, **hello: Any) -> Client:
    conn = await connect(f"{node.ws_url}/widget/ws?inbox={key}", origin=Origin(ORIGIN))
    client = Client(conn)
    await client.send({"type": "hello", "token": None, "after_seq": None, **hello})
    await client.expect("welcome")
    return client


async def agent(node: Node, cookie: str, cursors: dict[int, int] | None = None) -> Client:
    conn = await connect(f"{node.ws_url}/console/ws", additional_headers={"Cookie": cookie})
    client = Client(conn)
    await client.send({"type": "hello", "presence": "available"})
    await client.expect("welcome")
    await client.send(
        {
            "type": "subscribe",
            "stream": "assigned",
            "cursors": {str(k): v for k, v in (cursors or {}).items()},
        }
    )
    await client.expect("subscribed")
    return client


async def test_two_nodes_visitor_and_agent_resume_across_nodes(tmp_path: Path) -> None:
    url, name = await create_pg_database()
    try:
        settings = make_settings(tmp_path, url, redis_url=REDIS_URL)
        key, _agent_id, cookie = await seed(settings)
        env = node_env(settings, redis_url=REDIS_URL, chat_route_interval_seconds=0.2)
        a = await Node.start(env, tmp_path / "a.log")
        b = await Node.start(env, tmp_path / "b.log")
        try:
            await run_conversation(a, b, key, cookie, settings)
        finally:
            await a.stop()
            await b.stop()
    finally:
        await drop_pg_database(name)


async def run_conversation(a: Node, b: Node, key: str, cookie: str, settings: Settings) -> None:
    anna = await agent(b, cookie)
    visitor = await widget(a, key)
    token = visitor.frames[0]["token"]
    ticket = 0
    for i in range(10):
        await visitor.send({"type": "message", "client_id": f"v{i}", "body": f"visitor {i}"})
        ack = await visitor.expect("ack", lambda f, i=i: f["client_id"] == f"v{i}")
        ticket = ack["ticket"]
        seen = await anna.expect("event", lambda f, i=i: f.get("client_id") == f"v{i}")
        assert seen["ticket"] == ticket
        await anna.send(
            {"type": "reply", "client_id": f"r{i}", "ticket": ticket, "body": f"re {i}"}
        )
        await anna.expect("ack", lambda f, i=i: f["client_id"] == f"r{i}")
        got = await visitor.expect("event", lambda f, i=i: f["body"] == f"re {i}")
        assert got["author"]["type"] == "agent"
    visitor_seqs = [f["seq"] for f in visitor.frames if f["type"] == "event"]
    cursor = visitor_seqs[-1]
    await visitor.close()
    # While the visitor is away, the agent (node B) keeps writing.
    for i in range(10, 13):
        await anna.send(
            {"type": "reply", "client_id": f"r{i}", "ticket": ticket, "body": f"re {i}"}
        )
        await anna.expect("ack", lambda f, i=i: f["client_id"] == f"r{i}")
    # The visitor comes back on node B and resumes after its cursor.
    back = await widget(b, key, token=token, after_seq=cursor, ticket=ticket)
    replay = [await back.expect("event") for _ in range(3)]
    assert [f["body"] for f in replay] == ["re 10", "re 11", "re 12"]
    await back.send({"type": "message", "client_id": "v-late", "body": "late"})
    await back.expect("ack", lambda f: f["client_id"] == "v-late")
    agent_seqs = [f["seq"] for f in anna.frames if f["type"] == "event" and f["ticket"] == ticket]
    await anna.expect("event", lambda f: f.get("client_id") == "v-late")
    agent_seqs = [f["seq"] for f in anna.frames if f["type"] == "event" and f["ticket"] == ticket]
    await anna.close()
    # The agent moves to node A and resumes from its cursor; the visitor on B writes on.
    anna2 = await agent(a, cookie, {ticket: agent_seqs[-1]})
    await back.send({"type": "message", "client_id": "v-after", "body": "after"})
    await back.expect("ack", lambda f: f["client_id"] == "v-after")
    last = await anna2.expect("event", lambda f: f.get("client_id") == "v-after")
    agent_seqs += [f["seq"] for f in anna2.frames if f["type"] == "event" and f["ticket"] == ticket]
    all_visitor = visitor_seqs + [f["seq"] for f in back.frames if f["type"] == "event"]
    await back.expect("event", lambda f: f["seq"] == last["seq"])
    all_visitor = visitor_seqs + [f["seq"] for f in back.frames if f["type"] == "event"]
    ctx = AppContext(settings, bus=MemoryBus())
    try:
        async with ctx.sessions() as session:
            stored = (
                await session.exec(
                    select(TicketEvent)
                    .where(TicketEvent.ticket_id == ticket)
                    .order_by(col(TicketEvent.seq))
                )
            ).all()
    finally:
        await ctx.engine.dispose()
    # Both sides saw every event once and in order; agents see all, visitors the public ones.
    assert agent_seqs == [e.seq for e in stored]
    assert all_visitor == [e.seq for e in stored if not e.internal and e.kind.value == "message"]
    assert len([e for e in stored if e.kind.value == "message"]) == 10 + 13 + 2
    await anna2.close()
    await back.close()
