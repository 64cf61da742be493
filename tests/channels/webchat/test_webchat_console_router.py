"""Agent consoles are offered only the workspace messages they may want
(channels/webchat/console_router.py): a console following its assigned tickets is
not even asked about other tickets' traffic, while consoles following the
workspace, a team or a ticket still hear everything they heard before."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from webchat_client import Agent, Widget

from app.models import Inbox
from channels.webchat.console_router import ConsoleRouter
from tests.conftest import LiveServer, SeededWorkspace


def router_of(live_server: LiveServer, workspace_id: int) -> ConsoleRouter | None:
    routers: dict[int, ConsoleRouter] = live_server.app.state.webchat.consoles.routers
    return routers.get(workspace_id)


async def test_consoles_hear_what_they_follow_and_are_not_asked_about_the_rest(
    live_server: LiveServer,
    chat_inbox: Inbox,
    workspace: SeededWorkspace,
    cookie_for: Callable[[int], Any],
) -> None:
    url = live_server.ws_url
    # Away: routing gives it nothing, so it holds no ticket.
    cookie = await cookie_for(workspace.agent_ids["agent"])
    mine = await Agent.open(url, cookie=cookie, presence="away")
    await mine.send({"type": "subscribe", "stream": "assigned"})
    await mine.expect("subscribed")
    everything = await Agent.open(url, bearer=workspace.tokens["supervisor"], presence="away")
    await everything.send({"type": "subscribe", "stream": "workspace"})
    await everything.expect("subscribed")

    router = router_of(live_server, workspace.id)
    assert router is not None and len(router.consoles) == 2
    asked: list[Any] = []
    [assigned_only] = router.assigning
    original = assigned_only._wanted

    def counting(message: dict[str, Any]) -> bool:
        asked.append(message)
        return original(message)

    assigned_only.sub.accept = counting

    visitor = await Widget.open(url, chat_inbox.public_key or "")
    ticket = (await visitor.say("hello?"))["ticket"]
    seen = await everything.expect("event", lambda f: f["ticket"] == ticket)
    assert seen["body"] == "hello?"
    # A third console follows just that ticket and hears the next line.
    one = await Agent.open(url, bearer=workspace.tokens["admin"], presence="away")
    await one.send({"type": "subscribe", "stream": "ticket", "ticket": ticket, "after_seq": 1})
    await one.expect("subscribed")
    assert router.by_ticket[ticket] == {c for c in router.consoles if c.follows(ticket)}
    await visitor.say("anyone?")
    assert (await one.expect("event", lambda f: f["body"] == "anyone?"))["ticket"] == ticket
    await everything.expect("event", lambda f: f["body"] == "anyone?")
    await visitor.send({"type": "typing", "typing": True})
    await everything.expect("typing")
    # The console that follows only its own tickets was never offered any of it.
    assert asked == []

    for client in (mine, everything, one, visitor):
        await client.close()
    await _until(lambda: router_of(live_server, workspace.id) is None)


async def _until(condition: Callable[[], bool], seconds: float = 5.0) -> None:
    async with asyncio.timeout(seconds):
        while not condition():  # noqa: ASYNC110 - state of another task, no event to wait on
            await asyncio.sleep(0.02)
