"""A voice call in Chromium: the widget on a host page calls, an agent answers from a
second browser context through the agent websocket API, and audio flows both ways.

The fake microphone (--use-fake-device-for-media-stream) plays a beep; `getStats()` on
both peer connections must show inbound RTP packets growing.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from playwright.async_api import BrowserContext

from app.models import Inbox
from tests.browser.conftest import HostSite, PageErrors, embed_tag, sign_in
from tests.conftest import LiveServer

W = "#helpdesk-widget"
NewContext = Callable[..., Awaitable[BrowserContext]]

# The agent's side, run in a page of the app's origin: the console's call API by hand.
AGENT_JS = """
async (wsUrl) => {
  const ws = new WebSocket(wsUrl + "/console/ws");
  window.agent = { frames: [], ws };
  const next = (pred) => new Promise((ok) => {
    const look = () => {
      const f = window.agent.frames.find(pred);
      if (f) ok(f); else setTimeout(look, 50);
    };
    look();
  });
  ws.onmessage = (e) => window.agent.frames.push(JSON.parse(e.data));
  await new Promise((ok) => (ws.onopen = ok));
  ws.send(JSON.stringify({ type: "hello", presence: "available" }));
  await next((f) => f.type === "welcome");
  window.agent.ready = true;
  const offered = await next((f) => f.type === "call.state" && f.state === "offered");
  const mic = await navigator.mediaDevices.getUserMedia({ audio: true });
  const pc = new RTCPeerConnection({ iceServers: [] });
  window.agent.pc = pc;
  mic.getTracks().forEach((t) => pc.addTrack(t, mic));
  pc.ontrack = (e) => {
    const a = new Audio();
    a.srcObject = e.streams[0];
    a.play().catch(() => {});
  };
  await pc.setLocalDescription(await pc.createOffer());
  await new Promise((ok) => {
    if (pc.iceGatheringState === "complete") return ok();
    pc.onicegatheringstatechange = () => pc.iceGatheringState === "complete" && ok();
  });
  const sdp = pc.localDescription.sdp;
  ws.send(JSON.stringify({ type: "call.accept", call: offered.call, sdp }));
  const answer = await next((f) => f.type === "call.answer");
  await pc.setRemoteDescription({ type: "answer", sdp: answer.sdp });
  return offered.call;
}
"""

AGENT_STATS = """
async () => {
  const pc = window.agent && window.agent.pc;
  if (!pc) return null;
  let packets = 0;
  (await pc.getStats()).forEach((r) => {
    if (r.type === "inbound-rtp" && r.kind === "audio") packets += r.packetsReceived;
  });
  return { packets, connection: pc.connectionState };
}
"""


async def wait_packets(get: Callable[[], Awaitable[Any]], at_least: int) -> dict[str, Any]:
    async with asyncio.timeout(20):
        while True:
            stats = await get()
            if stats and stats["connection"] == "connected" and stats["packets"] >= at_least:
                return dict(stats)
            await asyncio.sleep(0.2)


async def test_widget_calls_and_an_agent_answers_in_the_browser(
    new_context: NewContext,
    host_site: HostSite,
    live_server: LiveServer,
    widget_inbox: Inbox,
) -> None:
    errors = PageErrors()
    assert widget_inbox.public_key
    host_site.pages["/"] = embed_tag(live_server.url, widget_inbox.public_key)

    # The agent: signed in, on a page of the app's origin, waiting for a call.
    cookie = await sign_in(live_server, "agent@acme.test")
    name, value = cookie.split("=", 1)
    agent_ctx = await new_context()
    await agent_ctx.add_cookies([{"name": name, "value": value, "url": live_server.url}])
    agent_page = await agent_ctx.new_page()
    errors.watch(agent_page)
    await agent_page.goto(live_server.url + "/healthz")
    answered = asyncio.ensure_future(agent_page.evaluate(AGENT_JS, live_server.ws_url))
    await agent_page.wait_for_function("() => window.agent && window.agent.ready")

    # The customer: the host page, the widget, the call button.
    customer_ctx = await new_context()
    page = await customer_ctx.new_page()
    errors.watch(page)
    await page.goto(host_site.url("/"))
    await page.locator(f"{W} .launcher").click()
    await page.locator(f"{W} button[aria-label='Call us']").click()
    call = await asyncio.wait_for(answered, 30)
    assert isinstance(call, int)
    await page.locator(f"{W} .cinfo", has_text="On a call with").wait_for()

    customer_stats = lambda: page.evaluate("() => window.Helpdesk.call.stats()")  # noqa: E731
    agent_stats = lambda: agent_page.evaluate(AGENT_STATS)  # noqa: E731
    first_c = await wait_packets(customer_stats, 25)
    first_a = await wait_packets(agent_stats, 25)
    # Still flowing a moment later, in both directions.
    await wait_packets(customer_stats, first_c["packets"] + 25)
    await wait_packets(agent_stats, first_a["packets"] + 25)
    assert await page.locator(f"{W} .ctime").text_content()

    await page.locator(f"{W} .cb.end", has_text="Hang up").click()
    await page.locator(f"{W} .cinfo", has_text="Call ended").wait_for()
    await agent_page.wait_for_function(
        "() => window.agent.frames.some(f => f.type === 'call.state' && f.state === 'ended')"
    )
    # Browsers ask both origins for /favicon.ico; that 404 is not the widget's.
    assert [e for e in errors.items if "404 (Not Found)" not in e] == []


async def test_denied_microphone_is_explained_in_german(
    new_context: NewContext, host_site: HostSite, live_server: LiveServer, widget_inbox: Inbox
) -> None:
    assert widget_inbox.public_key
    host_site.pages["/"] = embed_tag(live_server.url, widget_inbox.public_key)
    context = await new_context(locale="de-DE")
    # What a browser does when the visitor blocks the microphone.
    await context.add_init_script(
        "navigator.mediaDevices.getUserMedia = () => "
        "Promise.reject(new DOMException('denied', 'NotAllowedError'));"
    )
    page = await context.new_page()
    await page.goto(host_site.url("/"))
    await page.locator(f"{W} .launcher").click()
    await page.locator(f"{W} button[aria-label='Anrufen']").click()
    await page.locator(f"{W} .cinfo", has_text="Zugriff auf das Mikrofon").wait_for()
    assert await page.evaluate("() => window.Helpdesk.call.state") == ""
