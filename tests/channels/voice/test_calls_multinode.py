"""Two app processes sharing a database and a bus: signaling reaches the media's owner.

The customer's widget is connected to node A, so A owns the call's media. The agent's
console is on node B: the ring crosses the bus to B, the agent's accept crosses back to
A, A answers the agent's leg and B hands the answer to the console. With
HELPDESK_TEST_REDIS_URL set the nodes talk through Redis, else through one memory bus.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from typing import Any

import pytest
from call_clients import ORIGIN, Console, Widget, session_cookie
from conftest import AGENT_HZ, CUSTOMER_HZ, is_hold
from voice_peers import TonePeer

from app.bus import EventBus
from app.bus.memory import MemoryBus
from app.context import AppContext
from app.main import create_app
from app.models import Agent, Call, InboxKind
from app.services import workspaces
from app.services.actors import Actor
from app.services.agent_auth import password_fingerprint
from app.settings import Settings
from tests.conftest import REDIS_URL, LiveServer, seed_workspace


@pytest.fixture(params=["memory", "redis"])
async def nodes(
    request: pytest.FixtureRequest, settings: Settings
) -> AsyncIterator[list[LiveServer]]:
    if request.param == "redis" and not REDIS_URL:
        pytest.skip("HELPDESK_TEST_REDIS_URL is not set")
    shared = MemoryBus()
    async with AsyncExitStack() as stack:
        servers = []
        for _ in range(2):
            bus: EventBus = shared
            if request.param == "redis":
                from app.bus.redis import RedisBus

                assert REDIS_URL
                bus = RedisBus(REDIS_URL)
            app = create_app(settings, AppContext(settings, bus=bus))
            await stack.enter_async_context(app.router.lifespan_context(app))
            server = LiveServer(app)
            await server.start()
            stack.push_async_callback(server.stop)
            servers.append(server)
        yield servers


async def test_agent_on_another_node_answers_a_call_owned_by_the_first(
    nodes: list[LiveServer], settings: Settings
) -> None:
    node_a, node_b = nodes
    ctx: AppContext = node_a.app.state.ctx
    seeded = await seed_workspace(ctx, "acme")
    async with ctx.uow() as uow:
        inbox = await workspaces.do_create_inbox(
            uow,
            Actor.system(seeded.id),
            kind=InboxKind.widget,
            name="Web",
            team_id=seeded.team_ids["Support"],
            allowed_origins=[ORIGIN],
        )
        agent_row = await uow.session.get(Agent, seeded.agent_ids["agent"])
        assert agent_row is not None
        cookie = session_cookie(
            settings, seeded.agent_ids["agent"], seeded.id, password_fingerprint(agent_row)
        )
        await uow.commit()
    peers: list[TonePeer] = []
    clients: list[Any] = []
    try:
        assert inbox.public_key
        widget = await Widget.open(node_a.ws_url, inbox.public_key)
        console = await Console.open(node_b.ws_url, cookie)
        clients += [widget, console]
        customer, agent = TonePeer(CUSTOMER_HZ), TonePeer(AGENT_HZ)
        peers += [customer, agent]
        await widget.send({"type": "call.start", "sdp": await customer.offer()})
        answer = await widget.wait("call.answer")
        call = int(answer["call"])
        await customer.accept(answer["sdp"])
        await customer.wait_for(is_hold)

        await console.state("offered", call)
        await console.send({"type": "call.accept", "call": call, "sdp": await agent.offer()})
        answer = await console.wait("call.answer", lambda f: f["call"] == call)
        await agent.accept(answer["sdp"])
        await customer.wait_for_tone(AGENT_HZ)
        await agent.wait_for_tone(CUSTOMER_HZ)
        assert customer.states == ["connecting", "connected"]

        voice_a, voice_b = node_a.app.state.voice, node_b.app.state.voice
        assert call in voice_a.controller.live and call not in voice_b.controller.live
        async with ctx.sessions() as session:
            row = await session.get(Call, call)
        assert row is not None and row.owner_node == voice_a.node

        # Hang up from node B: routed to A, which ends the call and tells both sides.
        await console.send({"type": "call.hangup", "call": call})
        await widget.state("ended", call)
        await console.state("ended", call)
        assert call not in voice_a.controller.live
    finally:
        for peer in peers:
            await peer.close()
        for client in clients:
            await client.close()
