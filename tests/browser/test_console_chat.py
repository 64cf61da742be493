"""The agent console in Chromium: sign in, a visitor's chat arrives live, the agent
answers, and a second agent sees who is viewing and typing.

The visitor is a real widget on a host page of another origin; both agents are real
console pages on /console/ws. Nothing is reloaded after sign-in.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from playwright.async_api import BrowserContext, Page, expect

from app.models import Inbox
from tests.browser.conftest import HostSite, PageErrors, embed_tag, screenshot
from tests.conftest import PASSWORD, LiveServer, SeededWorkspace

W = "#helpdesk-widget"
NewContext = Callable[..., Awaitable[BrowserContext]]


async def console_sign_in(
    context: BrowserContext, live: LiveServer, email: str, errors: PageErrors
) -> Page:
    page = await context.new_page()
    errors.watch(page)
    await page.goto(live.url + "/console/login")
    await page.get_by_label("Email").fill(email)
    await page.get_by_label("Password").fill(PASSWORD)
    await page.get_by_role("button", name="Sign in").click()
    await page.wait_for_url(live.url + "/console")
    # The console socket is up (presence "available" goes with its hello).
    await expect(page.locator("#live-state.on")).to_be_visible()
    return page


async def open_widget(
    context: BrowserContext, site: HostSite, live: LiveServer, inbox: Inbox
) -> Page:
    assert inbox.public_key
    site.pages["/"] = embed_tag(live.url, inbox.public_key)
    page = await context.new_page()
    await page.goto(site.url("/"))
    await page.locator(f"{W} .launcher").click()
    await expect(page.locator(f"{W} .panel")).to_be_visible()
    return page


async def test_chat_arrives_live_agent_replies_and_collisions_show(
    new_context: NewContext,
    host_site: HostSite,
    live_server: LiveServer,
    workspace: SeededWorkspace,
    widget_inbox: Inbox,
) -> None:
    errors = PageErrors()
    agent = await console_sign_in(await new_context(), live_server, "agent@acme.test", errors)
    await agent.get_by_role("button", name="All").click()
    rows = agent.get_by_test_id("ticket-row")
    await expect(rows).to_have_count(0)

    visitor = await open_widget(await new_context(), host_site, live_server, widget_inbox)
    box = visitor.locator(f"{W} .compose textarea")
    await box.fill("Hello, my parcel is lost")
    await box.press("Enter")

    # Live: the chat shows up in the open inbox without a reload, unread, routed to the agent.
    row = rows.filter(has_text="Hello, my parcel is lost")
    await expect(row).to_have_count(1)
    await expect(row).to_have_class("ticket-row unread selected")
    await expect(row).to_contain_text("Agent acme")
    await expect(agent.locator("#toast")).to_contain_text("was assigned to you")
    await screenshot(agent, "console-inbox")

    await row.locator("a").click()
    await agent.wait_for_url("**/console/tickets/*")
    timeline = agent.get_by_test_id("timeline")
    await expect(timeline.locator(".bubble.them .text")).to_have_text(["Hello, my parcel is lost"])
    ticket_url = agent.url

    # A second agent (the supervisor) opens the same ticket: each sees the other.
    second = await console_sign_in(await new_context(), live_server, "supervisor@acme.test", errors)
    await second.goto(ticket_url)
    await expect(second.get_by_test_id("timeline").locator(".bubble.them")).to_have_count(1)
    await expect(agent.get_by_test_id("collision")).to_contain_text("Supervisor acme is viewing")
    await expect(second.get_by_test_id("collision")).to_contain_text("Agent acme is viewing")

    # Typing shows for the other agent and for the visitor; the visitor's typing for the agent.
    composer = agent.get_by_label("Message", exact=True)
    await composer.press_sequentially("We are on it", delay=20)
    await expect(second.get_by_test_id("collision")).to_contain_text("Agent acme is typing")
    await box.press_sequentially("Thanks", delay=30)
    await expect(agent.get_by_test_id("customer-typing")).to_be_visible()

    await agent.get_by_role("button", name="Send").click()
    await expect(timeline.locator(".bubble.us .text")).to_have_text(["We are on it"])
    await expect(visitor.locator(f"{W} .m.them .b")).to_have_text(["We are on it"])
    # The second agent's timeline follows live too.
    await expect(second.get_by_test_id("timeline").locator(".bubble.us .text")).to_have_text(
        ["We are on it"]
    )
    await screenshot(agent, "console-chat-ticket")
    assert not [e for e in errors.items if "pageerror" in e], errors.items
