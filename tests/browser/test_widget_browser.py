"""The one-tag embed in Chromium: a host page on another origin, a visitor, an agent.

The host page holds nothing but the script tag. The agent is a real console
websocket (presence "available", so routing assigns the chat) and answers over
REST; the widget must show everything live, exactly once, as text.
"""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
from playwright.async_api import BrowserContext, Page, expect

from app.models import Inbox
from app.services import demo, visitors
from tests.browser.conftest import (
    AgentSocket,
    HostSite,
    PageErrors,
    create_widget_inbox,
    embed_tag,
    screenshot,
)
from tests.conftest import LiveServer, SeededWorkspace

W = "#helpdesk-widget"
# A 1x1 PNG.
PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg=="
)
Api = Callable[..., Awaitable[httpx.Response]]
NewContext = Callable[..., Awaitable[BrowserContext]]


async def open_host(
    context: BrowserContext,
    site: HostSite,
    live: LiveServer,
    inbox: Inbox,
    errors: PageErrors | None = None,
    path: str = "/",
    **data: str,
) -> Page:
    assert inbox.public_key
    site.pages[path] = embed_tag(live.url, inbox.public_key, **data)
    page = await context.new_page()
    if errors is not None:
        errors.watch(page)
    await page.goto(site.url(path))
    await page.locator(f"{W} .launcher").wait_for()
    return page


async def say(page: Page, text: str) -> None:
    box = page.locator(f"{W} .compose textarea")
    await box.fill(text)
    await box.press("Enter")


async def ticket_of(page: Page, inbox: Inbox) -> int:
    script = "k => (JSON.parse(localStorage.getItem('helpdesk:' + k) || '{}')).ticket || null"
    handle = await page.wait_for_function(script, arg=inbox.public_key)
    value = await handle.json_value()
    assert isinstance(value, int)
    return value


async def bodies(page: Page, who: str = "") -> list[str]:
    """Message texts in the order the widget shows them (`.me`, `.them` or all)."""
    return await page.locator(f"{W} .m{who} .b").all_text_contents()


async def timeline(api: Api, ticket: int) -> list[dict[str, Any]]:
    r = await api("GET", f"/tickets/{ticket}/events", params={"limit": 500})
    assert r.status_code == 200, r.text
    items: list[dict[str, Any]] = r.json()["items"]
    return items


async def reply(api: Api, ticket: int, body: str, **extra: Any) -> None:
    r = await api("POST", f"/tickets/{ticket}/replies", json={"body": body, **extra})
    assert r.status_code == 201, r.text


async def test_visitor_chats_agent_answers_live_and_reload_shows_history(
    new_context: NewContext,
    host_site: HostSite,
    live_server: LiveServer,
    widget_inbox: Inbox,
    agent_online: AgentSocket,
    api: Api,
) -> None:
    errors = PageErrors()
    context = await new_context()
    page = await open_host(context, host_site, live_server, widget_inbox, errors)
    launcher = page.locator(f"{W} .launcher")
    await expect(launcher).to_have_attribute("aria-label", "Open chat")
    await expect(page.locator(f"{W} .panel")).to_be_hidden()
    await launcher.click()
    await expect(page.locator(f"{W} .panel")).to_be_visible()
    await expect(page.locator(f"{W} h2")).to_have_text("Acme")
    await expect(page.locator(f"{W} .greet")).to_have_text("Hi! How can we help?")
    await expect(page.locator(f"{W} .compose textarea")).to_be_focused()

    await say(page, "Hello, my order has not arrived")
    mine = page.locator(f"{W} .m.me")
    await expect(mine).to_have_count(1)
    await expect(mine).to_have_attribute("data-st", "sent")
    ticket = await ticket_of(page, widget_inbox)
    # Routing gave the chat to the available agent; the visitor sees who it is.
    await expect(page.locator(f"{W} .status")).to_have_text("Agent acme is here to help")
    await agent_online.wait_for(lambda f: f.get("type") == "event" and f.get("ticket") == ticket)

    await reply(api, ticket, "Sorry to hear that! Let me check.")
    theirs = page.locator(f"{W} .m.them")
    await expect(theirs).to_have_count(1)
    await expect(theirs.locator(".b")).to_have_text("Sorry to hear that! Let me check.")
    await screenshot(page, "widget-chat-en")

    # Closed panel: a new answer raises the unread badge; opening clears it.
    await page.keyboard.press("Escape")
    await expect(page.locator(f"{W} .panel")).to_be_hidden()
    await reply(api, ticket, "It ships tomorrow.")
    badge = page.locator(f"{W} .badge")
    await expect(badge).to_have_text("1")
    await expect(launcher).to_have_attribute("aria-label", "Open chat, 1 unread")
    await launcher.click()
    await expect(badge).to_be_hidden()

    expected = [
        "Hello, my order has not arrived",
        "Sorry to hear that! Let me check.",
        "It ships tomorrow.",
    ]
    assert await bodies(page) == expected
    # A reload resumes the same conversation from the token in localStorage.
    await page.reload()
    await page.locator(f"{W} .launcher").click()
    await expect(page.locator(f"{W} .m")).to_have_count(3)
    assert await bodies(page) == expected
    await expect(page.locator(f"{W} .badge")).to_be_hidden()  # already read before reload
    stored = [e["body"] for e in await timeline(api, ticket) if e["kind"] == "message"]
    assert stored == expected
    assert not [e for e in errors.items if e.startswith("pageerror")], errors.items


async def test_going_offline_loses_nothing_and_doubles_nothing(
    new_context: NewContext,
    host_site: HostSite,
    live_server: LiveServer,
    widget_inbox: Inbox,
    agent_online: AgentSocket,
    api: Api,
) -> None:
    context = await new_context()
    page = await open_host(context, host_site, live_server, widget_inbox)
    await page.locator(f"{W} .launcher").click()
    await say(page, "before the tunnel")
    await expect(page.locator(f"{W} .m.me")).to_have_attribute("data-st", "sent")
    ticket = await ticket_of(page, widget_inbox)

    await context.set_offline(True)
    await say(page, "typed offline one")
    await say(page, "typed offline two")
    pending = page.locator(f'{W} .m.me[data-st="pending"]')
    await expect(pending).to_have_count(2)
    await reply(api, ticket, "answered while you were away")
    await screenshot(page, "widget-offline")

    await context.set_offline(False)
    await expect(page.locator(f'{W} .m.me[data-st="sent"]')).to_have_count(3)
    await expect(page.locator(f"{W} .m.them .b")).to_have_text("answered while you were away")
    shown = await bodies(page)
    assert sorted(shown) == sorted(
        [
            "before the tunnel",
            "typed offline one",
            "typed offline two",
            "answered while you were away",
        ]
    )
    events = [e for e in await timeline(api, ticket) if e["kind"] == "message"]
    stored = [e["body"] for e in events]
    for body in ("before the tunnel", "typed offline one", "typed offline two"):
        assert stored.count(body) == 1, stored
    # The widget shows the stored order once the conversation is reloaded.
    await page.reload()
    await page.locator(f"{W} .launcher").click()
    await expect(page.locator(f"{W} .m")).to_have_count(4)
    assert await bodies(page) == stored


async def test_second_tab_shows_the_same_conversation_live(
    new_context: NewContext,
    host_site: HostSite,
    live_server: LiveServer,
    widget_inbox: Inbox,
    agent_online: AgentSocket,
    api: Api,
) -> None:
    context = await new_context()
    first = await open_host(context, host_site, live_server, widget_inbox)
    await first.locator(f"{W} .launcher").click()
    await say(first, "from the first tab")
    await expect(first.locator(f"{W} .m.me")).to_have_attribute("data-st", "sent")
    ticket = await ticket_of(first, widget_inbox)

    second = await open_host(context, host_site, live_server, widget_inbox)
    await second.locator(f"{W} .launcher").click()
    await expect(second.locator(f"{W} .m.me .b")).to_have_text(["from the first tab"])
    await say(second, "from the second tab")
    for page in (first, second):
        await expect(page.locator(f"{W} .m.me .b")).to_have_text(
            ["from the first tab", "from the second tab"]
        )
    await reply(api, ticket, "I see both of your messages")
    for page in (first, second):
        await expect(page.locator(f"{W} .m.them .b")).to_have_text(["I see both of your messages"])
        await expect(page.locator(f"{W} .m")).to_have_count(3)
    await screenshot(second, "widget-second-tab")


async def test_markup_in_messages_is_text_and_never_runs(
    new_context: NewContext,
    host_site: HostSite,
    live_server: LiveServer,
    widget_inbox: Inbox,
    agent_online: AgentSocket,
    api: Api,
) -> None:
    context = await new_context()
    page = await open_host(context, host_site, live_server, widget_inbox)
    dialogs: list[str] = []

    async def dismiss(dialog: Any) -> None:
        dialogs.append(dialog.message)
        await dialog.dismiss()

    page.on("dialog", dismiss)
    from_visitor = [
        '<img src=x onerror="window.__pwned=1;alert(1)">',
        "<script>window.__pwned=2</script>",
    ]
    from_agent = [
        '"><svg onload="window.__pwned=3;alert(3)"></svg><b>bold?</b>',
        "<a href=\"javascript:window.__pwned=4\">click</a> & &amp; <iframe src='//x'>",
    ]
    await page.locator(f"{W} .launcher").click()
    for payload in from_visitor:
        await say(page, payload)
    await expect(page.locator(f'{W} .m.me[data-st="sent"]')).to_have_count(2)
    ticket = await ticket_of(page, widget_inbox)
    for payload in from_agent:
        await reply(api, ticket, payload)
    await expect(page.locator(f"{W} .m.them")).to_have_count(2)

    async def check() -> None:
        assert await bodies(page, ".me") == from_visitor
        assert await bodies(page, ".them") == from_agent
        markup = f"{W} .log .b img, {W} .log .b script, {W} .log .b svg, {W} .log .b iframe"
        assert await page.locator(markup).count() == 0
        assert await page.locator(f"{W} .log .b b").count() == 0
        assert await page.locator(f'{W} .log a[href^="javascript"]').count() == 0
        assert await page.evaluate("window.__pwned") is None
        assert dialogs == []

    await check()
    await page.reload()  # the history replay renders through the same path
    await page.locator(f"{W} .launcher").click()
    await expect(page.locator(f"{W} .m")).to_have_count(4)
    await check()


async def test_german_from_the_browser_language_or_data_locale(
    new_context: NewContext,
    host_site: HostSite,
    live_server: LiveServer,
    widget_inbox: Inbox,
    agent_online: AgentSocket,
) -> None:
    context = await new_context(locale="de-DE")
    page = await open_host(context, host_site, live_server, widget_inbox)
    launcher = page.locator(f"{W} .launcher")
    await expect(launcher).to_have_attribute("aria-label", "Chat öffnen")
    await launcher.click()
    await expect(page.locator(f"{W} .compose textarea")).to_have_attribute(
        "placeholder", "Nachricht schreiben…"
    )
    await expect(page.locator(f"{W} .send")).to_have_attribute("aria-label", "Senden")
    await expect(page.locator(f'{W} header button[aria-label="Chat schließen"]')).to_be_visible()
    await expect(page.locator(f"{W} .status")).to_have_text("Wir sind online")
    await say(page, "Hallo!")
    await expect(page.locator(f"{W} .status")).to_have_text("Agent acme hilft Ihnen weiter")
    await screenshot(page, "widget-chat-de")

    # data-locale wins over the browser's language.
    english_browser = await new_context(locale="en-US")
    tagged = await open_host(
        english_browser, host_site, live_server, widget_inbox, path="/de", locale="de"
    )
    await expect(tagged.locator(f"{W} .launcher")).to_have_attribute("aria-label", "Chat öffnen")


async def test_keyboard_only_and_announced(
    new_context: NewContext,
    host_site: HostSite,
    live_server: LiveServer,
    widget_inbox: Inbox,
    agent_online: AgentSocket,
    api: Api,
) -> None:
    context = await new_context()
    page = await open_host(context, host_site, live_server, widget_inbox)
    await page.keyboard.press("Tab")
    launcher = page.locator(f"{W} .launcher")
    await expect(launcher).to_be_focused()
    await page.keyboard.press("Enter")
    await expect(launcher).to_have_attribute("aria-expanded", "true")
    await expect(page.locator(f"{W} .compose textarea")).to_be_focused()
    await page.keyboard.type("typed with the keyboard")
    await page.keyboard.press("Enter")
    await expect(page.locator(f'{W} .m.me[data-st="sent"]')).to_have_count(1)
    log = page.locator(f"{W} .log")
    await expect(log).to_have_attribute("aria-live", "polite")
    await expect(log).to_have_attribute("role", "log")
    await expect(page.locator(f"{W} .m.me .sr")).to_have_text("Sent")
    await expect(page.locator(f"{W} .panel")).to_have_attribute("role", "dialog")
    await page.keyboard.press("Escape")
    await expect(launcher).to_have_attribute("aria-expanded", "false")
    await expect(launcher).to_be_focused()


async def test_image_upload_reaches_the_ticket(
    new_context: NewContext,
    host_site: HostSite,
    live_server: LiveServer,
    widget_inbox: Inbox,
    agent_online: AgentSocket,
    api: Api,
) -> None:
    context = await new_context()
    page = await open_host(context, host_site, live_server, widget_inbox)
    await page.locator(f"{W} .launcher").click()
    await say(page, "here is a screenshot")
    await expect(page.locator(f'{W} .m.me[data-st="sent"]')).to_have_count(1)
    ticket = await ticket_of(page, widget_inbox)
    attach = page.locator(f'{W} button[aria-label="Attach an image or PDF"]')
    await expect(attach).to_be_enabled()
    await page.locator(f"{W} input[type=file]").set_input_files(
        files=[{"name": "shot.png", "mimeType": "image/png", "buffer": PNG}]
    )
    await expect(page.locator(f'{W} .m.me[data-st="sent"]')).to_have_count(2)
    await expect(page.locator(f"{W} .m.me .att img")).to_have_count(1)
    events = await timeline(api, ticket)
    with_file = [e for e in events if (e["payload"] or {}).get("attachments")]
    assert len(with_file) == 1
    att_id = with_file[0]["payload"]["attachments"][0]
    got = await api("GET", f"/attachments/{att_id}")
    assert got.status_code == 200 and got.content == PNG
    # After a reload the picture comes back from the server with the visitor's token.
    await page.reload()
    await page.locator(f"{W} .launcher").click()
    await expect(page.locator(f"{W} .m.me .att img")).to_have_count(1)
    natural = await page.locator(f"{W} .m.me .att img").evaluate("img => img.naturalWidth")
    assert natural == 1


async def test_nobody_available_leaves_a_message_for_email(
    new_context: NewContext,
    host_site: HostSite,
    live_server: LiveServer,
    widget_inbox: Inbox,
    api: Api,
) -> None:
    context = await new_context()
    page = await open_host(context, host_site, live_server, widget_inbox)
    await page.locator(f"{W} .launcher").click()
    form = page.locator(f"{W} form.card").nth(1)
    await expect(form).to_be_visible()
    await expect(page.locator(f"{W} form.compose")).to_be_hidden()
    await expect(page.locator(f"{W} .status")).to_have_text("We're away right now")
    await form.locator("input[name=name]").fill("Erika Muster")
    await form.locator("input[name=email]").fill("erika@example.com")
    await form.locator("textarea[name=body]").fill("Please call me back about my invoice.")
    await form.locator("button[type=submit]").click()
    await expect(page.locator(f'{W} .m.me[data-st="sent"]')).to_have_count(1)
    await expect(page.locator(f"{W} .sys")).to_have_text("Thanks! We'll get back to you by email.")
    ticket_id = await ticket_of(page, widget_inbox)
    ticket = (await api("GET", f"/tickets/{ticket_id}")).json()
    assert ticket["channel"] == "email"
    contact = (await api("GET", f"/contacts/{ticket['contact_id']}")).json()
    assert contact["email"] == "erika@example.com"
    assert contact["name"] == "Erika Muster"


async def test_site_not_on_the_allowlist_gets_no_chat(
    new_context: NewContext,
    host_site: HostSite,
    live_server: LiveServer,
    ctx: Any,
    workspace: SeededWorkspace,
) -> None:
    inbox = await create_widget_inbox(ctx, workspace, ["https://somewhere.else.example"])
    context = await new_context()
    page = await open_host(context, host_site, live_server, inbox)
    await page.locator(f"{W} .launcher").click()
    await expect(page.locator(f"{W} .status")).to_have_text(
        "The chat isn't available on this site."
    )


async def test_identified_customer_resumes_on_another_device_and_js_api(
    new_context: NewContext,
    host_site: HostSite,
    live_server: LiveServer,
    widget_inbox: Inbox,
    agent_online: AgentSocket,
    api: Api,
) -> None:
    assert widget_inbox.identity_secret and widget_inbox.public_key
    expires = int(time.time()) + 3600
    ident = {
        "id": "cust-42",
        "name": "Ada Lovelace",
        "email": "ada@example.com",
        "expires": expires,
        "hash": visitors.identity_hash(widget_inbox.identity_secret, "cust-42", expires),
    }
    # Calls queued before the async script loads (window.Helpdesk as an array) are replayed.
    stub = (
        "<script>window.__got = []; window.Helpdesk = ["
        f'["identify", {json.dumps(ident)}],'
        ' ["on", "message", function (m) { window.__got.push(m.body); }]];</script>'
    )
    host_site.pages["/account"] = stub + embed_tag(live_server.url, widget_inbox.public_key)

    laptop = await (await new_context()).new_page()
    await laptop.goto(host_site.url("/account"))
    await laptop.evaluate("Helpdesk.open()")
    await expect(laptop.locator(f"{W} .panel")).to_be_visible()
    await say(laptop, "signed in on my laptop")
    await expect(laptop.locator(f'{W} .m.me[data-st="sent"]')).to_have_count(1)
    ticket_id = await ticket_of(laptop, widget_inbox)
    ticket = (await api("GET", f"/tickets/{ticket_id}")).json()
    contact = (await api("GET", f"/contacts/{ticket['contact_id']}")).json()
    assert contact["name"] == "Ada Lovelace"
    assert any(i["kind"] == "external" and i["value"] == "cust-42" for i in contact["identities"])

    # Another device (fresh storage), same signed-in customer: the same conversation.
    phone = await (await new_context()).new_page()
    await phone.goto(host_site.url("/account"))
    await phone.evaluate("Helpdesk.open()")
    await expect(phone.locator(f"{W} .m.me .b")).to_have_text(["signed in on my laptop"])
    await reply(api, ticket_id, "Hello Ada")
    for page in (laptop, phone):
        await expect(page.locator(f"{W} .m.them .b")).to_have_text(["Hello Ada"])
        got = await page.evaluate("window.__got")
        assert "Hello Ada" in got
    await phone.evaluate("Helpdesk.close()")
    await expect(phone.locator(f"{W} .panel")).to_be_hidden()

    # An anonymous visitor on a third device sees none of it.
    stranger = await open_host(await new_context(), host_site, live_server, widget_inbox)
    await stranger.locator(f"{W} .launcher").click()
    await expect(stranger.locator(f"{W} .compose")).to_be_visible()
    assert await stranger.locator(f"{W} .m").count() == 0


async def test_demo_page_shows_a_working_widget(
    new_context: NewContext, live_server: LiveServer, ctx: Any
) -> None:
    # As after `make run`: the app's public URL is where the browser opens it.
    ctx.settings.public_url = live_server.url
    await demo.seed_demo(ctx, live_server.url)
    page = await (await new_context()).new_page()
    await page.goto(live_server.url + "/demo")
    await expect(page.locator(".warn")).to_have_count(0)
    await page.get_by_role("button", name="Talk to us").click()  # calls Helpdesk.open()
    await expect(page.locator(f"{W} .panel")).to_be_visible()
    await expect(page.locator(f"{W} h2")).to_have_text("Demo Company")
    await expect(page.locator(f"{W} .greet")).to_have_text("Hi! How can we help you today?")
    # Nobody is signed in to the console: the offline form takes the message.
    await expect(page.locator(f"{W} form.card").nth(1)).to_be_visible()
    await screenshot(page, "demo-page")


async def test_a_deleted_conversation_leaves_the_visitors_screen(
    new_context: NewContext,
    host_site: HostSite,
    live_server: LiveServer,
    widget_inbox: Inbox,
    agent_online: AgentSocket,
    api: Api,
) -> None:
    errors = PageErrors()
    page = await open_host(await new_context(), host_site, live_server, widget_inbox, errors)
    await page.locator(f"{W} .launcher").click()
    await say(page, "Please delete everything about me")
    await expect(page.locator(f"{W} .m.me")).to_have_attribute("data-st", "sent")
    ticket = await ticket_of(page, widget_inbox)

    gone = await api("DELETE", f"/tickets/{ticket}")
    assert gone.status_code == 204, gone.text
    await expect(page.locator(f"{W} .m")).to_have_count(0)

    # The next message is a new conversation; a reload shows only that one.
    await say(page, "Thank you")
    await expect(page.locator(f"{W} .m.me")).to_have_attribute("data-st", "sent")
    assert await bodies(page) == ["Thank you"]
    await page.reload()
    await page.locator(f"{W} .launcher").click()
    await expect(page.locator(f"{W} .m")).to_have_count(1)
    assert await bodies(page) == ["Thank you"]
    assert not [e for e in errors.items if e.startswith("pageerror")], errors.items
