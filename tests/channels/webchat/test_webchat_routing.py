"""Chat routing: capacity, least busy, presence from console sockets, requeue on agent loss."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from webchat_client import Agent, Widget

from app.context import AppContext
from app.models import Inbox, Ticket, TicketStatus
from app.services import workspaces
from app.services.actors import Actor
from app.services.tickets import do_update_ticket
from tests.conftest import LiveServer, SeededWorkspace


@pytest.fixture
def settings_overrides() -> dict[str, Any]:
    return {
        "chat_route_interval_seconds": 0.05,
        "chat_heartbeat_seconds": 0.5,
        "chat_requeue_grace_seconds": 0.5,
    }


async def set_capacity(ctx: AppContext, ws: SeededWorkspace, role: str, chats: int) -> None:
    async with ctx.uow() as uow:
        await workspaces.do_update_agent(
            uow, Actor.system(ws.id), ws.agent_ids[role], capacity={"chat": chats}
        )
        await uow.commit()


async def assignee(ctx: AppContext, ticket_id: int) -> int | None:
    async with ctx.sessions() as session:
        ticket = await session.get(Ticket, ticket_id)
        assert ticket is not None
        return ticket.assignee_id


async def start_chat(live_server: LiveServer, inbox: Inbox, text: str) -> tuple[Widget, int]:
    w = await Widget.open(live_server.ws_url, inbox.public_key or "")
    ack = await w.say(text)
    return w, ack["ticket"]


def assigned_to(name: str) -> Callable[[dict[str, Any]], bool]:
    return lambda f: f["state"] == "assigned" and f["agent"]["name"] == name


async def test_capacity_least_busy_and_queue_order(
    live_server: LiveServer,
    chat_inbox: Inbox,
    workspace: SeededWorkspace,
    ctx: AppContext,
    cookie_for: Callable[[int], Any],
) -> None:
    await set_capacity(ctx, workspace, "agent", 1)
    await set_capacity(ctx, workspace, "supervisor", 2)
    anna = await Agent.open(
        live_server.ws_url, cookie=await cookie_for(workspace.agent_ids["agent"])
    )
    sam = await Agent.open(
        live_server.ws_url, cookie=await cookie_for(workspace.agent_ids["supervisor"])
    )
    loads: dict[int, int] = {}
    visitors: list[tuple[Widget, int]] = []
    for i in range(3):
        w, ticket = await start_chat(live_server, chat_inbox, f"chat {i}")
        state = await w.expect("state", lambda f: f["state"] == "assigned")
        who = await assignee(ctx, ticket)
        assert who is not None and state["agent"]["name"]
        loads[who] = loads.get(who, 0) + 1
        visitors.append((w, ticket))
        if i == 1:
            # Least busy: the second chat goes to whoever did not get the first.
            assert len(loads) == 2
    assert loads == {workspace.agent_ids["agent"]: 1, workspace.agent_ids["supervisor"]: 2}
    # Everyone is full: the next two wait, in arrival order.
    w4, t4 = await start_chat(live_server, chat_inbox, "chat 4")
    w5, t5 = await start_chat(live_server, chat_inbox, "chat 5")
    assert (await w4.expect("state"))["state"] == "waiting"
    assert (await w5.expect("state"))["state"] == "waiting"
    assert await assignee(ctx, t4) is None and await assignee(ctx, t5) is None
    # Anna resolves her chat: capacity frees, the oldest waiting chat (4) is hers.
    owners = {t: await assignee(ctx, t) for _, t in visitors}
    anna_ticket = min(t for t, who in owners.items() if who == workspace.agent_ids["agent"])
    async with ctx.uow() as uow:
        await do_update_ticket(
            uow, Actor.system(workspace.id), anna_ticket, {"status": TicketStatus.resolved}
        )
        await uow.commit()
    await w4.expect("state", assigned_to("Agent acme"))
    assert await assignee(ctx, t4) == workspace.agent_ids["agent"]
    assert await assignee(ctx, t5) is None
    for w, _ in [*visitors, (w4, t4), (w5, t5)]:
        await w.close()
    await anna.close()
    await sam.close()


async def test_presence_away_and_requeue_on_agent_loss(
    live_server: LiveServer,
    chat_inbox: Inbox,
    workspace: SeededWorkspace,
    ctx: AppContext,
    cookie_for: Callable[[int], Any],
) -> None:
    anna = await Agent.open(
        live_server.ws_url, cookie=await cookie_for(workspace.agent_ids["agent"]), presence="away"
    )
    w, ticket = await start_chat(live_server, chat_inbox, "anyone?")
    assert w.welcome["agents_available"] is False
    assert (await w.expect("state"))["state"] == "waiting"
    await anna.send({"type": "presence", "status": "available"})
    await w.expect("state", assigned_to("Agent acme"))
    assert await assignee(ctx, ticket) == workspace.agent_ids["agent"]
    # Anna's tab closes. Within the grace period nothing moves; after it the chat
    # returns to the queue and goes to Sam, who is available.
    await anna.close()
    sam = await Agent.open(
        live_server.ws_url, cookie=await cookie_for(workspace.agent_ids["supervisor"])
    )
    await sam.send({"type": "subscribe", "stream": "assigned"})
    await sam.expect("subscribed")
    await w.expect("state", assigned_to("Supervisor acme"))
    assert await assignee(ctx, ticket) == workspace.agent_ids["supervisor"]
    # Sam's assigned stream delivers the whole conversation from its start.
    first = await sam.expect("event", lambda f: f["ticket"] == ticket and f["kind"] == "message")
    assert first["body"] == "anyone?" and first["seq"] == 1
    # ...and the ticket row's update that came with the assignment (same commit).
    row = await sam.expect("ticket", lambda f: f["ticket"]["id"] == ticket)
    assert row["action"] == "updated"
    assert row["ticket"]["assignee_id"] == workspace.agent_ids["supervisor"]
    await w.close()
    await sam.close()


async def test_reconnect_within_grace_keeps_chats(
    live_server: LiveServer,
    chat_inbox: Inbox,
    workspace: SeededWorkspace,
    ctx: AppContext,
    cookie_for: Callable[[int], Any],
    settings: Any,
) -> None:
    cookie = await cookie_for(workspace.agent_ids["agent"])
    anna = await Agent.open(live_server.ws_url, cookie=cookie)
    w, ticket = await start_chat(live_server, chat_inbox, "hello")
    await w.expect("state", assigned_to("Agent acme"))
    second = await Agent.open(live_server.ws_url, cookie=cookie)
    await anna.close()  # another console tab stays open: still available
    hub = live_server.app.state.webchat
    for _ in range(3):
        await hub.tick()
    assert await assignee(ctx, ticket) == workspace.agent_ids["agent"]
    await second.close()
    await w.close()
