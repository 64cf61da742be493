"""A chat customer who left the widget gets the agent's answer by email, and can answer back."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import httpx
import pytest
from mailtools import Sink, create_email_inbox, events, send, tickets
from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession

from app.context import AppContext
from app.models import Agent, Channel, EventKind, Inbox, OutboundEmail, VisitorPresence
from app.services import visitor_presence
from app.services.agent_auth import password_fingerprint
from app.settings import Settings
from tests.conftest import LiveServer, SeededWorkspace, make_widget_inbox

sys.path.insert(0, str(Path(__file__).parents[1] / "webchat"))
from webchat_client import ORIGIN, Widget, session_cookie
from webchat_client import Agent as Console


@pytest.fixture
async def sink() -> AsyncIterator[Sink]:
    server = Sink()
    await server.start()
    yield server
    await server.stop()


@pytest.fixture
def settings_overrides(sink: Sink) -> dict[str, Any]:
    return {"smtp_relay": f"127.0.0.1:{sink.port}", "chat_heartbeat_seconds": 0.2}


async def outbound_rows(ctx: AppContext) -> list[OutboundEmail]:
    async with ctx.sessions() as s:
        return list((await s.exec(select(OutboundEmail))).all())


async def presence_rows(ctx: AppContext) -> list[VisitorPresence]:
    async with ctx.sessions() as s:
        return list((await s.exec(select(VisitorPresence))).all())


async def reply(client: httpx.AsyncClient, ws: SeededWorkspace, ticket_id: int, body: str) -> None:
    response = await client.post(
        f"/api/v1/tickets/{ticket_id}/replies", json={"body": body}, headers=ws.auth("agent")
    )
    assert response.status_code in (200, 201), response.text


async def setup_inboxes(ctx: AppContext, ws: SeededWorkspace, *, email: bool = True) -> Inbox:
    """Two email inboxes (the chat's team decides which answers) and a widget inbox."""
    support = ws.team_ids["Support"]
    if email:
        await create_email_inbox(
            ctx, ws.id, "billing@demo.localhost", team_id=ws.team_ids["Billing"]
        )
        await create_email_inbox(ctx, ws.id, "support@demo.localhost", team_id=support)
    chat = await make_widget_inbox(ctx, ws.id, support, [ORIGIN])
    assert chat.public_key is not None
    return chat


async def console(ctx: AppContext, settings: Settings, ws: SeededWorkspace, url: str) -> Console:
    """The support agent signed in to the console and available (so chats are live chats)."""
    async with ctx.sessions() as session:
        agent = await session.get(Agent, ws.agent_ids["agent"])
        assert agent is not None
        cookie = session_cookie(settings, agent.id or 0, ws.id, password_fingerprint(agent))
    return await Console.open(url, cookie=cookie, origin="http://testserver")


async def other_process_sees(session: AsyncSession, workspace_id: int, contact_id: int) -> bool:
    saved = dict(visitor_presence.local)
    visitor_presence.local.clear()
    try:
        return await visitor_presence.contact_online(session, workspace_id, contact_id)
    finally:
        visitor_presence.local.update(saved)


async def connections(ctx: AppContext, count: int) -> None:
    """Wait until the widget connections are recorded (right after the welcome frame)."""
    async with asyncio.timeout(30):  # hang guard
        while len(await presence_rows(ctx)) != count:  # noqa: ASYNC110 (database state; no event)
            await asyncio.sleep(0.02)


async def test_offline_message_is_answered_by_email_and_the_answer_threads_back(
    ctx: AppContext,
    workspace: SeededWorkspace,
    live_server: LiveServer,
    client: httpx.AsyncClient,
    sink: Sink,
) -> None:
    chat = await setup_inboxes(ctx, workspace)
    assert chat.public_key is not None
    # Nobody is available: the widget takes an offline message with an address.
    widget = await Widget.open(live_server.ws_url, chat.public_key)
    ack = await widget.say("Anyone there? Please mail me.", email="vera@example.com", name="Vera")
    ticket_id = ack["ticket"]
    await widget.close()
    [ticket] = await tickets(ctx, workspace.id)
    assert ticket.channel is Channel.email and ticket.inbox_id == chat.id

    await reply(client, workspace, ticket_id, "Found it: restart the router, then log in again.")
    [row] = await outbound_rows(ctx)
    assert row.to_address == "vera@example.com" and row.ticket_id == ticket_id
    [sent] = await sink.wait_for(1)
    msg = sent.message
    assert sent.rcpt_tos == ["vera@example.com"]
    # From the email inbox of the widget's team, not the other one.
    assert msg["From"].addresses[0].addr_spec == "support@demo.localhost"
    reply_to = msg["Reply-To"].addresses[0].addr_spec
    assert reply_to.startswith("support+")
    body = msg.get_body(("plain",))
    assert body is not None and "restart the router" in body.get_content()

    # Vera answers from her mail client: it lands in the same ticket.
    answer = EmailMessage()
    answer["From"] = "Vera <vera@example.com>"
    answer["To"] = msg["Reply-To"]
    answer["Subject"] = "Re: " + str(msg["Subject"])
    answer["Message-ID"] = "<vera-answer-1@example.com>"
    answer["In-Reply-To"] = msg["Message-ID"]
    answer["References"] = msg["Message-ID"]
    answer.set_content("That worked, thank you!")
    code, _ = await send(  # type: ignore[misc]
        ctx.extras["smtp_port"], answer.as_bytes(), "vera@example.com", [reply_to]
    )
    assert code == 250
    assert [t.id for t in await tickets(ctx, workspace.id)] == [ticket_id]
    last = (await events(ctx, ticket_id))[-1]
    assert last.kind is EventKind.email_in and last.body.startswith("That worked")


async def test_live_chat_answer_is_mailed_only_after_the_customer_left(
    ctx: AppContext,
    settings: Settings,
    workspace: SeededWorkspace,
    live_server: LiveServer,
    client: httpx.AsyncClient,
    sink: Sink,
) -> None:
    chat = await setup_inboxes(ctx, workspace)
    assert chat.public_key is not None
    agent = await console(ctx, settings, workspace, live_server.ws_url)
    widget = await Widget.open(live_server.ws_url, chat.public_key)
    ack = await widget.say("Quick question", email="otto@example.com", name="Otto")
    ticket_id = ack["ticket"]
    [ticket] = await tickets(ctx, workspace.id)
    assert ticket.channel is Channel.chat and ticket.contact_id is not None
    await connections(ctx, 1)
    # What another app process sees: the heartbeat's rows, not this process's memory.
    async with ctx.sessions() as session:
        assert await other_process_sees(session, workspace.id, ticket.contact_id)

    # Connected: the answer is seen live, nothing is mailed.
    await reply(client, workspace, ticket_id, "Hi Otto, looking into it.")
    await widget.expect("event", lambda f: f.get("body") == "Hi Otto, looking into it.")
    assert await outbound_rows(ctx) == []

    await widget.close()
    await connections(ctx, 0)
    async with ctx.sessions() as session:
        assert not await other_process_sees(session, workspace.id, ticket.contact_id)
    await reply(client, workspace, ticket_id, "Done: your order ships today.")
    [row] = await outbound_rows(ctx)
    assert row.to_address == "otto@example.com"
    [sent] = await sink.wait_for(1)
    assert sent.message["From"].addresses[0].addr_spec == "support@demo.localhost"
    [event] = [e for e in await events(ctx, ticket_id) if e.body.startswith("Done:")]
    assert event.kind is EventKind.message and event.payload["email"]["to"] == "otto@example.com"

    # Back in the widget: answers are live again.
    again = await Widget.open(live_server.ws_url, chat.public_key, token=widget.welcome["token"])
    await connections(ctx, 1)
    await reply(client, workspace, ticket_id, "Anything else?")
    await again.expect("event", lambda f: f.get("body") == "Anything else?")
    assert len(await outbound_rows(ctx)) == 1
    await again.close()
    await agent.close()


async def test_no_email_inbox_to_answer_from_is_shown_on_the_answer(
    ctx: AppContext,
    workspace: SeededWorkspace,
    live_server: LiveServer,
    client: httpx.AsyncClient,
) -> None:
    chat = await setup_inboxes(ctx, workspace, email=False)
    assert chat.public_key is not None
    widget = await Widget.open(live_server.ws_url, chat.public_key)
    ticket_id = (await widget.say("Hello?", email="max@example.com"))["ticket"]
    await widget.close()
    await reply(client, workspace, ticket_id, "We answer by email when we can.")
    [event] = [e for e in await events(ctx, ticket_id) if e.body.startswith("We answer")]
    assert event.payload["delivery"]["state"] == "failed"
    assert await outbound_rows(ctx) == []
