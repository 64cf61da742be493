"""Calls in the agent console, in Chromium with a fake microphone.

A visitor's widget on a host page of another origin calls; the agent signed in to the
console hears the ring, accepts, and audio flows both ways (getStats on both pages);
a supervisor sees the live call and listens in; hold and mute work; the agent opens the
ticket mid-call (a full page load) and the console rejoins the same call while the
customer's connection stays up; the agent hangs up and the timeline shows the call
events and the recording, which streams with HTTP range requests. A second test calls
a customer from the ticket view ("Call customer"), a third hands a call over with a
warm transfer.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from playwright.async_api import BrowserContext, Page, expect

from app.context import AppContext
from app.models import Inbox, Workspace
from tests.browser.conftest import HostSite, PageErrors, embed_tag, screenshot
from tests.browser.test_console_chat import console_sign_in
from tests.conftest import LiveServer, SeededWorkspace

W = "#helpdesk-widget"
NewContext = Callable[..., Awaitable[BrowserContext]]
CUSTOMER_STATS = "() => window.Helpdesk.call.stats()"
CONSOLE_STATS = "() => window.hdCalls.stats()"
TIMER = re.compile(r"^\d+:\d\d$")


@pytest.fixture
def settings_overrides() -> dict[str, Any]:
    return {
        "chat_route_interval_seconds": 0.05,
        "chat_heartbeat_seconds": 0.5,
        "voice_acd_interval_seconds": 0.1,
        "voice_rejoin_grace_seconds": 20.0,
        "smtp_enabled": False,
    }


async def flowing(page: Page, script: str, more_than: int = 0) -> int:
    """Wait until the page's call leg is connected and has received > `more_than`
    inbound audio packets (plus a margin); returns the count."""
    async with asyncio.timeout(20):
        while True:
            stats = await page.evaluate(script)
            if stats and stats["connection"] == "connected" and stats["packets"] > more_than + 20:
                return int(stats["packets"])
            await asyncio.sleep(0.2)


async def enable_recording(ctx: AppContext, workspace: SeededWorkspace) -> None:
    async with ctx.uow() as uow:
        ws = await uow.session.get(Workspace, workspace.id)
        assert ws is not None
        ws.settings = {**ws.settings, "recording": True}
        uow.session.add(ws)
        await uow.commit()


async def widget_page(
    context: BrowserContext, site: HostSite, live: LiveServer, inbox: Inbox
) -> Page:
    assert inbox.public_key
    site.pages["/"] = embed_tag(live.url, inbox.public_key)
    page = await context.new_page()
    await page.goto(site.url("/"))
    await page.locator(f"{W} .launcher").click()
    await expect(page.locator(f"{W} .panel")).to_be_visible()
    return page


async def go_away(page: Page) -> None:
    """This console stops taking calls (so the ACD offers them to someone else)."""
    await page.get_by_test_id("presence").select_option("away")


def card(page: Page) -> Any:
    return page.get_by_test_id("call-card")


async def test_agent_takes_a_widget_call_in_the_console(
    new_context: NewContext,
    host_site: HostSite,
    live_server: LiveServer,
    ctx: AppContext,
    workspace: SeededWorkspace,
    widget_inbox: Inbox,
) -> None:
    errors = PageErrors()
    await enable_recording(ctx, workspace)
    supervisor = await console_sign_in(
        await new_context(), live_server, "supervisor@acme.test", errors
    )
    await go_away(supervisor)
    await supervisor.goto(live_server.url + "/console/supervisor")
    await expect(supervisor.get_by_test_id("live-calls")).to_contain_text("No calls right now")
    agent = await console_sign_in(await new_context(), live_server, "agent@acme.test", errors)

    # The visitor calls from the widget on the host page.
    visitor = await widget_page(await new_context(), host_site, live_server, widget_inbox)
    errors.watch(visitor)
    await visitor.locator(f"{W} button[aria-label='Call us']").click()

    # The console rings with Accept / Decline, naming the ticket.
    ring = card(agent)
    await expect(ring).to_have_attribute("data-mode", "ring")
    await expect(ring).to_contain_text("Incoming call")
    await expect(ring.get_by_test_id("call-ticket")).to_contain_text("#")
    await expect(ring.get_by_role("button", name="Decline")).to_be_enabled()
    await ring.get_by_role("button", name="Accept").click()

    await expect(card(agent)).to_have_attribute("data-mode", "talking")
    await expect(card(agent).get_by_test_id("call-state")).to_have_text("On a call")
    await expect(visitor.locator(f"{W} .cinfo")).to_contain_text("On a call with")
    customer = await flowing(visitor, CUSTOMER_STATS)
    heard = await flowing(agent, CONSOLE_STATS)
    # Still flowing a moment later, both ways.
    customer = await flowing(visitor, CUSTOMER_STATS, customer)
    heard = await flowing(agent, CONSOLE_STATS, heard)
    await expect(card(agent).get_by_test_id("call-timer")).to_have_text(TIMER)

    # The supervisor sees the live call and listens in.
    row = supervisor.get_by_test_id("live-call")
    await expect(row).to_have_count(1)
    await expect(row).to_contain_text("Agent acme")
    await expect(row).to_contain_text("in progress")
    listen = row.get_by_role("button", name="Listen")
    await expect(listen).to_be_enabled()
    await expect(row.get_by_role("button", name="Whisper")).to_be_enabled()
    await expect(row.get_by_role("button", name="Barge")).to_be_enabled()
    await screenshot(supervisor, "console-supervisor-calls")
    await listen.click()
    await expect(card(supervisor)).to_contain_text("Listening to Agent acme")
    await flowing(supervisor, CONSOLE_STATS)
    await card(supervisor).get_by_role("button", name="Leave").click()
    await expect(card(supervisor)).to_have_count(0, timeout=10000)

    # Hold: the customer hears the hold line; resume; mute and unmute.
    panel = card(agent)
    await panel.get_by_role("button", name="Hold").click()
    await expect(panel.get_by_test_id("call-state")).to_have_text("Customer on hold")
    await expect(visitor.locator(f"{W} .cinfo")).to_have_text("On hold")
    await panel.get_by_role("button", name="Resume").click()
    await expect(panel.get_by_test_id("call-state")).to_have_text("On a call")
    await panel.get_by_role("button", name="Mute").click()
    await expect(panel.get_by_role("button", name="Unmute")).to_have_attribute(
        "aria-pressed", "true"
    )
    await panel.get_by_role("button", name="Unmute").click()
    await expect(panel.get_by_role("button", name="Mute")).to_be_visible()
    await screenshot(agent, "console-call-panel")

    # Opening the ticket loads a new page: the console rejoins the same call, and the
    # customer's connection never drops.
    await panel.get_by_test_id("call-ticket").click()
    await agent.wait_for_url("**/console/tickets/*")
    await expect(card(agent)).to_have_attribute("data-mode", "talking", timeout=20000)
    await flowing(agent, CONSOLE_STATS)
    customer = await flowing(visitor, CUSTOMER_STATS, customer)
    assert await visitor.evaluate("() => window.Helpdesk.call.state") == "active"
    timeline = agent.get_by_test_id("timeline")
    await expect(
        timeline.get_by_test_id("call-event").filter(has_text="agent rejoined")
    ).to_have_count(1)

    # The agent hangs up; both sides see the end; the timeline tells the story.
    await card(agent).get_by_role("button", name="Hang up").click()
    await expect(visitor.locator(f"{W} .cinfo")).to_have_text("Call ended")
    events = timeline.get_by_test_id("call-event")
    await expect(events.filter(has_text="started, waiting in the queue")).to_have_count(1)
    await expect(events.filter(has_text="answered by Agent acme")).to_have_count(1)
    await expect(events.filter(has_text="agent hung up")).to_have_count(1)
    await expect(timeline.locator("[data-testid=call-event][data-state=held]")).to_have_count(1)
    await expect(agent.get_by_test_id("ticket-calls")).not_to_contain_text("Call in progress")
    recording = timeline.get_by_test_id("recording")
    await expect(recording).to_have_count(1, timeout=15000)
    src = await recording.get_attribute("src")
    assert src and src.startswith("/console/attachments/")
    ranged = await agent.evaluate(
        """async (src) => {
          const r = await fetch(src, { headers: { Range: "bytes=0-99" } });
          return { status: r.status, range: r.headers.get("content-range"),
                   size: (await r.arrayBuffer()).byteLength };
        }""",
        src,
    )
    assert ranged["status"] == 206 and ranged["size"] == 100, ranged
    assert ranged["range"].startswith("bytes 0-99/")
    await screenshot(agent, "console-ticket-call")
    await expect(supervisor.get_by_test_id("live-call")).to_have_count(0)
    assert not [e for e in errors.items if "pageerror" in e], errors.items


async def dial_from_ticket(
    new_context: NewContext,
    host_site: HostSite,
    live_server: LiveServer,
    widget_inbox: Inbox,
    errors: PageErrors,
) -> tuple[Page, Page]:
    """A visitor chats; the agent opens the ticket and presses "Call customer"; the
    visitor's widget rings. Returns (agent page, visitor page)."""
    agent = await console_sign_in(await new_context(), live_server, "agent@acme.test", errors)
    visitor = await widget_page(await new_context(), host_site, live_server, widget_inbox)
    errors.watch(visitor)
    box = visitor.locator(f"{W} .compose textarea")
    await box.fill("Can you call me?")
    await box.press("Enter")

    row = agent.get_by_test_id("ticket-row").filter(has_text="Can you call me?")
    await row.locator("a").click()
    await agent.wait_for_url("**/console/tickets/*")
    call_button = agent.get_by_test_id("call-customer")
    await expect(call_button).to_be_visible()
    await call_button.click()
    await expect(card(agent)).to_contain_text("Calling")
    await expect(call_button).to_have_count(0)  # the ticket shows its live call instead
    await expect(agent.get_by_test_id("ticket-live-call")).to_be_visible()
    await expect(visitor.locator(f"{W} .cinfo")).to_contain_text("Agent acme is calling you")
    return agent, visitor


async def test_agent_calls_the_customer_who_declines(
    new_context: NewContext,
    host_site: HostSite,
    live_server: LiveServer,
    workspace: SeededWorkspace,
    widget_inbox: Inbox,
) -> None:
    errors = PageErrors()
    agent, visitor = await dial_from_ticket(
        new_context, host_site, live_server, widget_inbox, errors
    )
    await visitor.locator(f"{W} .cb.end", has_text="Decline").click()
    await expect(card(agent)).to_contain_text("Call ended")
    events = agent.get_by_test_id("timeline").get_by_test_id("call-event")
    await expect(events.filter(has_text="calling the customer")).to_have_count(1)
    await expect(events.filter(has_text="not connected: declined")).to_have_count(1)
    await expect(agent.get_by_test_id("call-customer")).to_be_visible()
    assert not [e for e in errors.items if "pageerror" in e], errors.items


async def test_agent_calls_the_customer_who_answers(
    new_context: NewContext,
    host_site: HostSite,
    live_server: LiveServer,
    workspace: SeededWorkspace,
    widget_inbox: Inbox,
) -> None:
    errors = PageErrors()
    agent, visitor = await dial_from_ticket(
        new_context, host_site, live_server, widget_inbox, errors
    )
    await visitor.locator(f"{W} .cb.ok", has_text="Answer").click()
    await expect(card(agent)).to_have_attribute("data-mode", "talking")
    await flowing(visitor, CUSTOMER_STATS)
    await flowing(agent, CONSOLE_STATS)
    await expect(agent.get_by_test_id("ticket-live-call")).to_contain_text("Call in progress")

    await visitor.locator(f"{W} .cb.end", has_text="Hang up").click()
    await expect(card(agent)).to_contain_text("Call ended")
    events = agent.get_by_test_id("timeline").get_by_test_id("call-event")
    await expect(events.filter(has_text="customer hung up")).to_have_count(1)
    assert not [e for e in errors.items if "pageerror" in e], errors.items


async def test_warm_transfer_hands_the_call_to_a_colleague(
    new_context: NewContext,
    host_site: HostSite,
    live_server: LiveServer,
    workspace: SeededWorkspace,
    widget_inbox: Inbox,
) -> None:
    errors = PageErrors()
    colleague = await console_sign_in(
        await new_context(), live_server, "supervisor@acme.test", errors
    )
    await go_away(colleague)
    agent = await console_sign_in(await new_context(), live_server, "agent@acme.test", errors)
    visitor = await widget_page(await new_context(), host_site, live_server, widget_inbox)
    await visitor.locator(f"{W} button[aria-label='Call us']").click()
    await card(agent).get_by_role("button", name="Accept").click()
    await expect(card(agent)).to_have_attribute("data-mode", "talking")
    customer = await flowing(visitor, CUSTOMER_STATS)

    panel = card(agent)
    await panel.get_by_role("button", name="Transfer").click()
    await panel.get_by_label("Transfer to").select_option(label="Supervisor acme")
    await panel.get_by_label("Consult first (warm)").check()
    await panel.get_by_test_id("call-transfer-form").get_by_role("button", name="Transfer").click()

    ring = card(colleague)
    await expect(ring).to_contain_text("Agent acme wants to consult you")
    await ring.get_by_role("button", name="Accept").click()
    await expect(panel.get_by_test_id("call-state")).to_have_text("Consulting (customer on hold)")
    await flowing(colleague, CONSOLE_STATS)
    await panel.get_by_role("button", name="Complete transfer").click()

    await expect(card(agent)).to_contain_text("Call transferred")
    await expect(card(colleague).get_by_test_id("call-state")).to_have_text("On a call")
    await expect(card(colleague).get_by_role("button", name="Hold")).to_be_visible()
    customer = await flowing(visitor, CUSTOMER_STATS, customer)
    await card(colleague).get_by_role("button", name="Hang up").click()
    await expect(visitor.locator(f"{W} .cinfo")).to_have_text("Call ended")
    assert not [e for e in errors.items if "pageerror" in e], errors.items


async def test_blind_transfer_rings_the_other_agent(
    new_context: NewContext,
    host_site: HostSite,
    live_server: LiveServer,
    workspace: SeededWorkspace,
    widget_inbox: Inbox,
) -> None:
    errors = PageErrors()
    colleague = await console_sign_in(
        await new_context(), live_server, "supervisor@acme.test", errors
    )
    await go_away(colleague)
    agent = await console_sign_in(await new_context(), live_server, "agent@acme.test", errors)
    visitor = await widget_page(await new_context(), host_site, live_server, widget_inbox)
    await visitor.locator(f"{W} button[aria-label='Call us']").click()
    await card(agent).get_by_role("button", name="Accept").click()
    await expect(card(agent)).to_have_attribute("data-mode", "talking")
    customer = await flowing(visitor, CUSTOMER_STATS)

    panel = card(agent)
    await panel.get_by_role("button", name="Transfer").click()
    await panel.get_by_label("Transfer to").select_option(label="Supervisor acme")
    await panel.get_by_test_id("call-transfer-form").get_by_role("button", name="Transfer").click()
    await expect(card(agent)).to_contain_text("Call transferred")
    await expect(visitor.locator(f"{W} .cinfo")).to_contain_text("Transferring")

    ring = card(colleague)
    await expect(ring).to_contain_text("Transferred call")
    await ring.get_by_role("button", name="Accept").click()
    await expect(card(colleague).get_by_test_id("call-state")).to_have_text("On a call")
    await flowing(colleague, CONSOLE_STATS)
    await flowing(visitor, CUSTOMER_STATS, customer)
    await expect(card(agent)).to_have_count(0, timeout=10000)
    await visitor.locator(f"{W} .cb.end", has_text="Hang up").click()
    await expect(card(colleague)).to_contain_text("Call ended")
    assert not [e for e in errors.items if "pageerror" in e], errors.items
