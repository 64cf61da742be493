"""Chaos: hundreds of conversations, tens of thousands of messages, connections on both
sides dropped at random moments and resumed. Every message is delivered exactly once,
in seq order, to both sides, and is in the database.

The server is a real `helpdesk serve` process, so it has one core and this load
generator the other. The suite runs the issue's size: CHAOS_CONVERSATIONS=200 x
CHAOS_MESSAGES=50 visitor messages and as many agent replies (20 000 messages), every
connection living ~2 s on average (CHAOS_LIFETIME); about 190 s on a quiet machine, with
CHAOS_TIMEOUT (600 s) as the limit. Smaller sizes make a quick local run; `pytest -s`
prints progress every 10 s.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from sqlmodel import col, select
from webchat_client import ORIGIN, session_cookie
from webchat_nodes import Node, node_env
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake
from websockets.typing import Origin

from app.context import AppContext
from app.models import ActorType, InboxKind, Role, Ticket, TicketEvent
from app.services import workspaces
from app.services.actors import Actor
from app.services.agent_auth import password_fingerprint
from app.settings import Settings

CONVERSATIONS = int(os.environ.get("CHAOS_CONVERSATIONS", "200"))
MESSAGES = int(os.environ.get("CHAOS_MESSAGES", "50"))
AGENTS = 20
MEAN_LIFETIME = float(os.environ.get("CHAOS_LIFETIME", "2.0"))  # mean seconds a connection lives
SEED = int(os.environ.get("CHAOS_SEED", "424242"))
TIMEOUT = float(os.environ.get("CHAOS_TIMEOUT", "600"))
UNLIMITED = 1_000_000


class ChaosFailure(AssertionError):
    pass


@dataclass
class Drops:
    visitor: int = 0
    agent: int = 0


@dataclass
class VisitorState:
    index: int
    token: str | None = None
    ticket: int | None = None
    last_seq: int = 0
    sent: int = 0
    unacked: dict[str, str] = field(default_factory=dict)
    acked: set[str] = field(default_factory=set)
    seqs: list[int] = field(default_factory=list)
    own: list[str] = field(default_factory=list)
    replies: list[str] = field(default_factory=list)

    @property
    def complete(self) -> bool:
        return len(self.acked) == MESSAGES and len(self.replies) == MESSAGES


@dataclass
class AgentState:
    agent_id: int
    cookie: str
    cursors: dict[int, int] = field(default_factory=dict)
    seqs: dict[int, list[int]] = field(default_factory=dict)
    replied: set[str] = field(default_factory=set)
    unacked: dict[str, tuple[int, str]] = field(default_factory=dict)


async def seed(settings: Settings) -> tuple[str, list[AgentState]]:
    ctx = AppContext(settings)
    try:
        async with ctx.uow() as uow:
            ws = await workspaces.do_create_workspace(uow, "chaos", "Chaos")
            assert ws.id is not None
            system = Actor.system(ws.id)
            team = await workspaces.do_create_team(uow, system, "Support")
            assert team.id is not None
            per_agent = CONVERSATIONS // AGENTS + 2
            agents = [
                await workspaces.do_create_agent(
                    uow,
                    system,
                    email=f"agent{i}@chaos.test",
                    name=f"Agent {i}",
                    password=None,
                    role=Role.agent,
                    team_ids=[team.id],
                    capacity={"chat": per_agent},
                )
                for i in range(AGENTS)
            ]
            inbox = await workspaces.do_create_inbox(
                uow,
                system,
                kind=InboxKind.widget,
                name="Chat",
                team_id=team.id,
                allowed_origins=[ORIGIN],
            )
            await uow.commit()
        states = []
        for agent in agents:
            assert agent.id is not None
            cookie = session_cookie(settings, agent.id, ws.id, password_fingerprint(agent))
            states.append(AgentState(agent.id, cookie))
        return inbox.public_key or "", states
    finally:
        await ctx.engine.dispose()


async def frames_until(
    conn: ClientConnection, deadline: float, stop: asyncio.Event | None = None
) -> Any:
    """Yield frames until the connection's random lifetime ends (then cut it hard)."""
    loop = asyncio.get_running_loop()
    while True:
        remaining = deadline - loop.time()
        if remaining <= 0 or (stop is not None and stop.is_set()):
            conn.transport.abort()  # no close handshake: like a dropped network
            return
        try:
            raw = await asyncio.wait_for(conn.recv(), min(remaining, 0.5))
        except TimeoutError:
            continue
        yield json.loads(raw)


async def run_visitor(
    v: VisitorState, node: Node, key: str, rng: random.Random, drops: Drops
) -> None:
    loop = asyncio.get_running_loop()

    async def send_next(conn: ClientConnection) -> None:
        if v.sent < MESSAGES and not v.unacked:
            client_id = f"v{v.index}-{v.sent}"
            v.unacked[client_id] = f"visitor {v.index} message {v.sent}"
            v.sent += 1
            await conn.send(
                json.dumps(
                    {"type": "message", "client_id": client_id, "body": v.unacked[client_id]}
                )
            )

    while not v.complete:
        try:
            conn = await connect(
                f"{node.ws_url}/widget/ws?inbox={key}", origin=Origin(ORIGIN), open_timeout=30
            )
        except (OSError, InvalidHandshake, TimeoutError):
            await asyncio.sleep(rng.uniform(0.05, 0.3))
            continue
        try:
            hello = {"type": "hello", "token": v.token, "after_seq": v.last_seq, "ticket": v.ticket}
            await conn.send(json.dumps(hello))
            deadline = loop.time() + rng.expovariate(1 / MEAN_LIFETIME)
            async for frame in frames_until(conn, deadline):
                kind = frame["type"]
                if os.environ.get("CHAOS_DEBUG"):
                    print(round(loop.time(), 3), "V", v.index, kind, frame.get("seq"))
                if kind == "welcome":
                    v.token = frame["token"]
                    for client_id, body in v.unacked.items():  # resend, same client_id
                        await conn.send(
                            json.dumps({"type": "message", "client_id": client_id, "body": body})
                        )
                    await send_next(conn)
                elif kind == "event":
                    if v.ticket is None:
                        v.ticket = frame["ticket"]
                    if frame["ticket"] != v.ticket:
                        raise ChaosFailure(f"visitor {v.index}: event of ticket {frame['ticket']}")
                    if frame["seq"] <= v.last_seq:
                        raise ChaosFailure(
                            f"visitor {v.index}: seq {frame['seq']} after {v.last_seq} (dup/order)"
                        )
                    v.last_seq = frame["seq"]
                    v.seqs.append(frame["seq"])
                    if frame["author"]["type"] == "contact":
                        v.own.append(frame["client_id"])
                    else:
                        v.replies.append(frame["body"])
                elif kind == "ack":
                    v.ticket = frame["ticket"]
                    if v.unacked.pop(frame["client_id"], None) is not None:
                        v.acked.add(frame["client_id"])
                    await send_next(conn)
                elif kind == "error":
                    raise ChaosFailure(f"visitor {v.index}: {frame}")
                if v.complete:
                    await conn.close()
                    return
            drops.visitor += 1
        except ConnectionClosed:
            drops.visitor += 1
        await asyncio.sleep(rng.uniform(0.0, 0.2))


async def run_agent(
    a: AgentState,
    node: Node,
    rng: random.Random,
    drops: Drops,
    stop: asyncio.Event,
    final: dict[int, int] | None = None,
) -> None:
    """Answer every visitor message; with `final`, stay until every cursor reaches it."""
    loop = asyncio.get_running_loop()
    while not stop.is_set():
        try:
            conn = await connect(
                f"{node.ws_url}/console/ws",
                additional_headers={"Cookie": a.cookie},
                open_timeout=30,
            )
        except (OSError, InvalidHandshake, TimeoutError):
            await asyncio.sleep(rng.uniform(0.05, 0.3))
            continue
        try:
            await conn.send(json.dumps({"type": "hello", "presence": "available"}))
            lifetime = 3600.0 if final is not None else rng.expovariate(1 / MEAN_LIFETIME)
            async for frame in frames_until(conn, loop.time() + lifetime, stop):
                kind = frame["type"]
                if os.environ.get("CHAOS_DEBUG"):
                    print(round(loop.time(), 3), "A", a.agent_id, kind, frame.get("seq"))
                if kind == "welcome":
                    cursors = {str(t): s for t, s in a.cursors.items()}
                    await conn.send(
                        json.dumps({"type": "subscribe", "stream": "assigned", "cursors": cursors})
                    )
                    for client_id, (ticket, body) in a.unacked.items():
                        await conn.send(
                            json.dumps(
                                {
                                    "type": "reply",
                                    "client_id": client_id,
                                    "ticket": ticket,
                                    "body": body,
                                }
                            )
                        )
                elif kind == "event":
                    ticket, seq = frame["ticket"], frame["seq"]
                    last = a.cursors.get(ticket, 0)
                    if seq != last + 1:  # agents see every event: no gaps, no repeats
                        raise ChaosFailure(
                            f"agent {a.agent_id}: ticket {ticket} seq {seq} after {last}"
                        )
                    a.cursors[ticket] = seq
                    a.seqs.setdefault(ticket, []).append(seq)
                    author = frame["author"]
                    if author["type"] == "contact" and frame["kind"] == "message":
                        source = frame["client_id"]
                        if source not in a.replied:
                            a.replied.add(source)
                            client_id = "r-" + source
                            a.unacked[client_id] = (ticket, "re: " + frame["body"])
                            await conn.send(
                                json.dumps(
                                    {
                                        "type": "reply",
                                        "client_id": client_id,
                                        "ticket": ticket,
                                        "body": "re: " + frame["body"],
                                    }
                                )
                            )
                elif kind == "ack":
                    a.unacked.pop(frame["client_id"], None)
                elif kind == "error":
                    raise ChaosFailure(f"agent {a.agent_id}: {frame}")
                if final is not None and all(a.cursors.get(t, 0) >= s for t, s in final.items()):
                    await conn.close()
                    return
            if final is None:
                drops.agent += 1
        except ConnectionClosed:
            drops.agent += 1
        await asyncio.sleep(rng.uniform(0.0, 0.2))


async def report_progress(visitors: list[VisitorState], drops: Drops) -> None:
    """Every 10 s (shown with `pytest -s`, and in the log of a run that times out)."""
    loop = asyncio.get_running_loop()
    start = loop.time()
    while True:
        await asyncio.sleep(10)
        acked = sum(len(v.acked) for v in visitors)
        replies = sum(len(v.replies) for v in visitors)
        print(
            f"chaos {loop.time() - start:.0f}s: {acked} visitor messages acked, "
            f"{replies} replies seen, drops {drops.visitor}/{drops.agent}",
            flush=True,
        )


@pytest.mark.timeout(TIMEOUT + 120)
async def test_chaos_exactly_once_both_sides(settings: Settings, tmp_path: Path) -> None:
    key, agents = await seed(settings)
    env = node_env(
        settings,
        chat_rate_burst=UNLIMITED,
        chat_rate_per_second=UNLIMITED,
        chat_agent_rate_burst=UNLIMITED,
        chat_agent_rate_per_second=UNLIMITED,
        chat_route_interval_seconds=0.2,
    )
    node = await Node.start(env, Path(os.environ.get("CHAOS_LOG", tmp_path / "node.log")))
    rng = random.Random(SEED)
    drops = Drops()
    stop = asyncio.Event()
    visitors = [VisitorState(i) for i in range(CONVERSATIONS)]
    try:
        agent_tasks = [
            asyncio.create_task(run_agent(a, node, random.Random(rng.random()), drops, stop))
            for a in agents
        ]
        async with asyncio.timeout(TIMEOUT):
            progress = asyncio.create_task(report_progress(visitors, drops))
            try:
                await asyncio.gather(
                    *(
                        run_visitor(v, node, key, random.Random(rng.random()), drops)
                        for v in visitors
                    )
                )
            finally:
                progress.cancel()
            stop.set()
            await asyncio.gather(*agent_tasks)
            # One last clean connection per agent: it must catch up to the database exactly.
            ctx = AppContext(settings)
            try:
                async with ctx.sessions() as session:
                    rows = (
                        await session.exec(select(Ticket.id, Ticket.assignee_id, Ticket.last_seq))
                    ).all()
            finally:
                await ctx.engine.dispose()
            finals = {a.agent_id: {t: s for t, who, s in rows if who == a.agent_id} for a in agents}
            done = asyncio.Event()
            await asyncio.gather(
                *(run_agent(a, node, rng, drops, done, finals[a.agent_id]) for a in agents)
            )
    finally:
        stop.set()
        await node.stop()

    ctx = AppContext(settings)
    try:
        async with ctx.sessions() as session:
            events = (
                await session.exec(
                    select(TicketEvent).order_by(col(TicketEvent.ticket_id), col(TicketEvent.seq))
                )
            ).all()
            tickets = {t.id: t for t in (await session.exec(select(Ticket))).all()}
    finally:
        await ctx.engine.dispose()
    by_ticket: dict[int, list[TicketEvent]] = {}
    for event in events:
        by_ticket.setdefault(event.ticket_id, []).append(event)
    assert len(tickets) == CONVERSATIONS
    total = 0
    for v in visitors:
        assert v.ticket is not None
        stored = by_ticket[v.ticket]
        mine = [e for e in stored if e.actor_type is ActorType.contact]
        theirs = [
            e for e in stored if e.actor_type is ActorType.agent and e.kind.value == "message"
        ]
        expected = [f"v{v.index}-{k}" for k in range(MESSAGES)]
        # In the database: each visitor message once, in the order sent; each reply once.
        assert [e.client_id for e in mine] == expected
        assert sorted(e.client_id or "" for e in theirs) == sorted("r-" + c for c in expected)
        # To the visitor: every visible event once, in seq order, across all reconnects.
        visible = [e.seq for e in stored if not e.internal and e.kind.value == "message"]
        assert v.seqs == visible
        assert v.own == expected
        total += len(mine) + len(theirs)
        # To the agent: every event of the ticket once, in order.
        owner = next(a for a in agents if a.agent_id == tickets[v.ticket].assignee_id)
        assert owner.seqs[v.ticket] == [e.seq for e in stored]
    assert total >= 2 * CONVERSATIONS * MESSAGES
    # The chaos really happened on both sides.
    assert drops.visitor >= CONVERSATIONS and drops.agent >= AGENTS
