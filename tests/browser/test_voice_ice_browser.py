"""The widget's call uses the STUN/TURN servers of HELPDESK_ICE_SERVERS (from its config),
with TURN credentials that Chromium accepts."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from playwright.async_api import BrowserContext

from app.models import Inbox
from tests.browser.conftest import HostSite, embed_tag
from tests.conftest import LiveServer

W = "#helpdesk-widget"
SERVERS = [{"urls": "stun:stun.example.org:3478"}, {"urls": "turn:turn.example.org:3478"}]

# Record how the widget configures its peer connection once Chromium has accepted it
# (it throws for a TURN server without credentials), then stop: no call is placed.
CAPTURE = """
window.__rtcConfigs = [];
window.RTCPeerConnection = class extends RTCPeerConnection {
  constructor(config) {
    super(config);
    window.__rtcConfigs.push(config);
    throw new Error("captured");
  }
};
"""


@pytest.fixture
def settings_overrides(settings_overrides: dict[str, Any]) -> dict[str, Any]:
    return {
        **settings_overrides,
        "ice_servers": ",".join(s["urls"] for s in SERVERS),
        "turn_secret": "shared-with-the-turn-server",
    }


async def test_the_widget_calls_through_the_configured_ice_servers(
    new_context: Callable[..., Awaitable[BrowserContext]],
    host_site: HostSite,
    live_server: LiveServer,
    widget_inbox: Inbox,
) -> None:
    assert widget_inbox.public_key
    host_site.pages["/"] = embed_tag(live_server.url, widget_inbox.public_key)
    context = await new_context()
    await context.add_init_script(CAPTURE)
    page = await context.new_page()
    await page.goto(host_site.url("/"))
    await page.locator(f"{W} .launcher").click()
    await page.locator(f"{W} button[aria-label='Call us']").click()
    await page.wait_for_function("() => window.__rtcConfigs.length > 0")
    configs = await page.evaluate("() => window.__rtcConfigs")
    ((stun, turn),) = [config["iceServers"] for config in configs]
    assert stun == SERVERS[0]
    assert turn["urls"] == SERVERS[1]["urls"]
    assert turn["username"].endswith(f":w{widget_inbox.workspace_id}-inbox{widget_inbox.id}")
    assert turn["credential"]
