"""Console pages in Chromium: hostile email HTML stays inert, role limits hold, and the
screenshots (omnichannel ticket, supervisor station) are written as artifacts."""

from __future__ import annotations

import asyncio
import os
import shutil
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import timedelta
from email.message import EmailMessage

import pytest
from playwright.async_api import BrowserContext, Page, expect

from app.context import AppContext
from app.models import ActorType, Channel, Inbox, InboxKind, Priority, Ticket
from app.models.base import utcnow
from app.models.email import MailMessage
from app.models.ticket import EventKind
from app.services import tickets, workspaces
from app.services.actors import Actor
from app.services.contacts import IdentityIn, do_resolve_contact
from app.services.timeline import do_append_event
from channels.email.ingest import ingest_raw
from tests.browser.conftest import PageErrors, screenshot
from tests.conftest import PASSWORD, REPO, LiveServer, SeededWorkspace

NewContext = Callable[..., Awaitable[BrowserContext]]


async def console_sign_in(
    context: BrowserContext, live: LiveServer, email: str, errors: PageErrors | None = None
) -> Page:
    page = await context.new_page()
    if errors is not None:
        errors.watch(page)
    await page.goto(live.url + "/console/login")
    await page.get_by_label("Email").fill(email)
    await page.get_by_label("Password").fill(PASSWORD)
    await page.get_by_role("button", name="Sign in").click()
    await page.wait_for_url(live.url + "/console")
    return page


class Tracker:
    """Counts every connection: any request from an email iframe would land here."""

    def __init__(self) -> None:
        self.hits: list[bytes] = []
        self.server: asyncio.Server | None = None
        self.port = 0

    async def start(self) -> None:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        line = await reader.readline()
        self.hits.append(line)
        writer.write(b"HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n")
        await writer.drain()
        writer.close()

    async def stop(self) -> None:
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()


@pytest.fixture
async def tracker() -> AsyncIterator[Tracker]:
    t = Tracker()
    await t.start()
    try:
        yield t
    finally:
        await t.stop()


def hostile_html(port: int) -> str:
    base = f"http://127.0.0.1:{port}"
    return (
        "<p>Hello <b>team</b>, the invoice is attached.</p>"
        f"<script>window.parent.__pwned = 'script'; fetch('{base}/script')</script>"
        f'<img src="{base}/remote.png" onerror="window.parent.__pwned=\'onerror\'" alt="x">'
        f'<img src="{base}/pixel.gif" onload="window.parent.__pwned=\'onload\'">'
        f'<div style="background:url({base}/bg.png)" onmouseover="window.parent.__pwned=1">'
        "hover me</div>"
        f'<link rel="stylesheet" href="{base}/style.css">'
        f'<iframe src="{base}/frame"></iframe>'
        f"<a href=\"javascript:window.parent.__pwned='link'\">click</a>"
        "<svg onload=\"window.parent.__pwned='svg'\"></svg>"
    )


async def test_html_email_renders_inert(
    new_context: NewContext,
    live_server: LiveServer,
    ctx: AppContext,
    workspace: SeededWorkspace,
    tracker: Tracker,
) -> None:
    async with ctx.uow() as uow:
        inbox = await workspaces.do_create_inbox(
            uow,
            Actor.system(workspace.id),
            kind=InboxKind.email,
            name="Support mail",
            address="support@acme.test",
            team_id=workspace.team_ids["Support"],
        )
        await uow.commit()
    assert inbox.id is not None
    msg = EmailMessage()
    msg["From"] = "Mallory <mallory@example.com>"
    msg["To"] = "support@acme.test"
    msg["Subject"] = "Invoice question"
    msg["Message-ID"] = "<hostile-1@example.com>"
    msg.set_content("Hello team, the invoice is attached.")
    msg.add_alternative(hostile_html(tracker.port), subtype="html")
    [result] = await ingest_raw(ctx, msg.as_bytes(), [inbox.id], recipients=["support@acme.test"])
    assert result.ticket_id is not None and result.mail_id is not None
    # Defence in depth: even if the sanitizer let everything through, the console must
    # keep it inert. Store the raw hostile HTML on the mail record.
    async with ctx.uow() as uow:
        mail = await uow.session.get(MailMessage, result.mail_id)
        assert mail is not None
        mail.html = hostile_html(tracker.port)
        uow.session.add(mail)
        await uow.commit()

    errors = PageErrors()
    page = await console_sign_in(await new_context(), live_server, "agent@acme.test", errors)
    await page.goto(f"{live_server.url}/console/tickets/{result.ticket_id}")
    frame_el = page.get_by_test_id("email-frame")
    await expect(frame_el).to_have_count(1)
    assert await frame_el.get_attribute("sandbox") == ""
    frame = page.frame_locator("[data-testid=email-frame]")
    await expect(frame.locator("b")).to_have_text("team")
    await frame.locator("div").first.hover()
    await asyncio.sleep(1.0)  # give any request or handler a chance to (wrongly) happen
    assert await page.evaluate("() => window.__pwned === undefined")
    assert tracker.hits == []
    await screenshot(page, "console-email-inert")


async def _omnichannel_ticket(ctx: AppContext, ws: SeededWorkspace) -> int:
    """A chat ticket that also carries an email and a call: the unified timeline."""
    async with ctx.uow() as uow:
        contact, _ = await do_resolve_contact(
            uow,
            ws.id,
            IdentityIn(
                kind=__import__("app.models").models.IdentityKind.email, value="jane@example.com"
            ),
            name="Jane Doe",
        )
        assert contact.id is not None
        customer = Actor.contact(ws.id, contact.id, "Jane Doe")
        agent = Actor(
            workspace_id=ws.id, type=ActorType.agent, id=ws.agent_ids["agent"], name="Agent acme"
        )
        ticket, _ = await tickets.do_create_ticket(
            uow,
            Actor.system(ws.id),
            subject="Order #1042 arrived damaged",
            contact_id=contact.id,
            channel=Channel.chat,
            team_id=ws.team_ids["Support"],
            assignee_id=ws.agent_ids["agent"],
            priority=Priority.high,
            tags=["damage", "vip"],
            message="Hi, my order arrived with a broken lid.",
            message_actor=customer,
        )
        await do_append_event(
            uow,
            ticket,
            kind=EventKind.message,
            actor=agent,
            body="I'm sorry! Could you send a photo by email?",
        )
        await do_append_event(
            uow,
            ticket,
            kind=EventKind.email_in,
            actor=customer,
            body="Here is the photo of the lid. Thanks for the quick help!",
            payload={
                "subject": "Re: Order #1042",
                "from": {"email": "jane@example.com"},
                "quoted": "> I'm sorry! Could you send a photo by email?",
            },
        )
        await do_append_event(
            uow,
            ticket,
            kind=EventKind.note,
            actor=agent,
            internal=True,
            body="Photo confirms transport damage; replacement approved.",
        )
        await do_append_event(
            uow,
            ticket,
            kind=EventKind.call,
            actor=customer,
            payload={"state": "answered", "agent_name": "Agent acme", "wait_seconds": 14},
        )
        await do_append_event(
            uow,
            ticket,
            kind=EventKind.call,
            actor=Actor.system(ws.id),
            payload={"state": "ended", "duration": 187, "hung_up_by": "customer"},
        )
        await do_append_event(
            uow,
            ticket,
            kind=EventKind.message,
            actor=agent,
            body="A replacement ships today. Anything else I can do?",
        )
        await uow.commit()
    assert ticket.id is not None
    return ticket.id


async def test_screenshots_of_ticket_and_supervisor_station(
    new_context: NewContext, live_server: LiveServer, ctx: AppContext, workspace: SeededWorkspace
) -> None:
    ticket_id = await _omnichannel_ticket(ctx, workspace)
    system = Actor.system(workspace.id)
    # Billing chats wait: the only online Billing member (the supervisor) is away.
    waiting = [
        (Channel.chat, "Billing", None),
        (Channel.chat, "Billing", None),
        (Channel.voice, "Support", None),
        (Channel.email, "Billing", timedelta(minutes=30)),
        (Channel.email, "Support", timedelta(minutes=-15)),
    ]
    async with ctx.uow() as uow:
        for i, (channel, team, due_in) in enumerate(waiting):
            t, _ = await tickets.do_create_ticket(
                uow,
                system,
                subject=f"Waiting {i}",
                channel=channel,
                team_id=workspace.team_ids[team],
                message="Hello?",
            )
            if due_in is not None:
                t.due_at = utcnow() + due_in
                uow.session.add(t)
        await uow.commit()

    errors = PageErrors()
    agent = await console_sign_in(await new_context(), live_server, "agent@acme.test", errors)
    await agent.goto(f"{live_server.url}/console/tickets/{ticket_id}")
    timeline = agent.get_by_test_id("timeline")
    await expect(timeline.locator("[data-kind=call]")).to_have_count(2)
    await expect(timeline.locator("[data-kind=email_in]")).to_have_count(1)
    await expect(timeline.locator(".note")).to_contain_text("replacement approved")
    await timeline.get_by_role("button", name="Show quoted text").click()
    await expect(timeline.locator(".quoted pre")).to_contain_text("Could you send a photo")
    path = await screenshot(agent, "console-ticket-omnichannel")
    if os.environ.get("HELPDESK_UPDATE_SCREENSHOTS"):  # refresh the README's picture
        shutil.copyfile(path, REPO / "docs" / "console.png")

    away = await new_context()
    await away.add_init_script("localStorage.setItem('hd.presence', 'away')")
    supervisor = await console_sign_in(away, live_server, "supervisor@acme.test")
    await supervisor.goto(f"{live_server.url}/console/supervisor")
    queues = supervisor.get_by_test_id("queue")
    await expect(queues.filter(has_text="Billing")).to_contain_text("Waiting chats2")
    await expect(queues.filter(has_text="Support")).to_contain_text("Waiting calls1")
    agents = supervisor.get_by_test_id("agents")
    await expect(agents.locator("tr", has_text="Agent acme")).to_contain_text("Available")
    await expect(agents.locator("tr", has_text="Supervisor acme")).to_contain_text("Away")
    await expect(supervisor.get_by_test_id("due").locator("tr.overdue")).to_have_count(1)
    await screenshot(supervisor, "console-supervisor")
    assert not [e for e in errors.items if "pageerror" in e], errors.items


async def test_agent_cannot_open_other_teams_ticket_or_admin(
    new_context: NewContext,
    live_server: LiveServer,
    ctx: AppContext,
    workspace: SeededWorkspace,
    other_workspace: SeededWorkspace,
) -> None:
    async with ctx.uow() as uow:
        billing, _ = await tickets.do_create_ticket(
            uow,
            Actor.system(workspace.id),
            subject="Billing only",
            team_id=workspace.team_ids["Billing"],
        )
        foreign, _ = await tickets.do_create_ticket(
            uow,
            Actor.system(other_workspace.id),
            subject="Globex only",
        )
        await uow.commit()
    page = await console_sign_in(await new_context(), live_server, "agent@acme.test")
    for ticket in (billing, foreign):
        response = await page.goto(f"{live_server.url}/console/tickets/{ticket.id}")
        assert response is not None and response.status == 404
        await expect(page.get_by_test_id("error-message")).to_have_text("Not found.")
        await expect(page.locator("body")).not_to_contain_text("only")
    response = await page.goto(f"{live_server.url}/console/admin/agents")
    assert response is not None and response.status == 403
    await expect(page.get_by_test_id("error-message")).to_contain_text("do not have access")
    await page.goto(f"{live_server.url}/console")
    await expect(page.get_by_role("link", name="Admin")).to_have_count(0)
    _ = (Inbox, Ticket)
