"""Shared browser fixtures: Debian's Chromium through Playwright, a host site on another
origin, a widget inbox that allows it, and an available agent on the console websocket.

Every test in tests/browser is marked `browser`. Browsers are never downloaded: the
tests use /usr/bin/chromium and skip when it is missing.
"""

from __future__ import annotations

import asyncio
import contextlib
import html
import json
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.async_api import Browser, BrowserContext, Page, async_playwright
from websockets.asyncio.client import ClientConnection, connect

from app.context import AppContext
from app.models import Inbox
from tests.conftest import PASSWORD, REPO, LiveServer, SeededWorkspace, make_widget_inbox

CHROMIUM = Path("/usr/bin/chromium")
HAVE_CHROMIUM = CHROMIUM.exists()
ARTIFACTS = REPO / "artifacts"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    # WebRTC (voice tests): a fake microphone that needs no permission prompt, and real
    # host candidates instead of mDNS names on 127.0.0.1.
    "--use-fake-ui-for-media-stream",
    "--use-fake-device-for-media-stream",
    "--disable-features=WebRtcHideLocalIpsWithMdns",
    "--autoplay-policy=no-user-gesture-required",
]
TIMEOUT = 10.0


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    for item in items:
        if here in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.browser)


@pytest.fixture
def settings_overrides() -> dict[str, Any]:
    # Fast routing and heartbeats so tests wait on conditions, not on timers.
    return {"chat_route_interval_seconds": 0.05, "chat_heartbeat_seconds": 0.5}


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    if not HAVE_CHROMIUM:
        pytest.skip("/usr/bin/chromium is not installed")
    async with async_playwright() as pw:
        instance = await pw.chromium.launch(
            executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True
        )
        try:
            yield instance
        finally:
            await instance.close()


class PageErrors:
    """Console errors and uncaught exceptions of every page a context opens."""

    def __init__(self) -> None:
        self.items: list[str] = []

    def watch(self, page: Page) -> None:
        page.on("pageerror", lambda exc: self.items.append(f"pageerror: {exc}"))
        page.on(
            "console",
            lambda msg: (
                self.items.append(f"console.{msg.type}: {msg.text}")
                if msg.type == "error"
                else None
            ),
        )


@pytest.fixture
async def new_context(
    browser: Browser,
) -> AsyncIterator[Callable[..., Awaitable[BrowserContext]]]:
    """`await new_context(locale="de-DE")`: a fresh profile; closed after the test."""
    made: list[BrowserContext] = []

    async def make(**options: Any) -> BrowserContext:
        options.setdefault("locale", "en-US")
        options.setdefault("viewport", {"width": 1100, "height": 800})
        context = await browser.new_context(**options)
        context.set_default_timeout(TIMEOUT * 1000)
        made.append(context)
        return context

    try:
        yield make
    finally:
        for context in made:
            with contextlib.suppress(Exception):
                await context.close()


async def screenshot(page: Page, name: str) -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / (re.sub(r"[^\w.-]+", "_", name) + ".png")
    await page.screenshot(path=str(path))
    return path


class HostSite:
    """A tiny HTTP server on another port of 127.0.0.1: another origin than the app."""

    def __init__(self) -> None:
        self.pages: dict[str, str] = {}
        self.server: asyncio.Server | None = None
        self.port = 0

    @property
    def origin(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def url(self, path: str = "/") -> str:
        return self.origin + path

    async def start(self) -> None:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), TIMEOUT)
            path = head.split(b" ", 2)[1].decode("latin-1").split("?")[0]
            page = self.pages.get(path)
            status = "200 OK" if page is not None else "404 Not Found"
            body = (page if page is not None else "not found").encode()
            writer.write(
                f"HTTP/1.1 {status}\r\nContent-Type: text/html; charset=utf-8\r\n"
                f"Content-Length: {len(body)}\r\nCache-Control: no-store\r\n"
                "Connection: close\r\n\r\n".encode()
                + body
            )
            await writer.drain()
        except (TimeoutError, ConnectionError, asyncio.IncompleteReadError, IndexError):
            pass
        finally:
            writer.close()


@pytest.fixture
async def host_site() -> AsyncIterator[HostSite]:
    site = HostSite()
    await site.start()
    try:
        yield site
    finally:
        await site.stop()


def embed_tag(app_url: str, public_key: str, **data: str) -> str:
    """The one-tag embed, exactly as a customer pastes it."""
    extra = "".join(f' data-{k}="{html.escape(v, quote=True)}"' for k, v in data.items())
    return (
        f'<script src="{html.escape(app_url, quote=True)}/widget.js" '
        f'data-inbox="{html.escape(public_key, quote=True)}"{extra} async></script>'
    )


async def create_widget_inbox(
    ctx: AppContext, workspace: SeededWorkspace, origins: list[str], **fields: Any
) -> Inbox:
    fields.setdefault("greeting", "Hi! How can we help?")
    fields.setdefault("theme", {"color": "#3454d1", "position": "right", "title": "Acme"})
    return await make_widget_inbox(
        ctx, workspace.id, workspace.team_ids["Support"], origins, **fields
    )


@pytest.fixture
async def widget_inbox(ctx: AppContext, workspace: SeededWorkspace, host_site: HostSite) -> Inbox:
    """A widget inbox of the `acme` workspace (team Support) that allows the host site."""
    return await create_widget_inbox(ctx, workspace, [host_site.origin])


class AgentSocket:
    """A signed-in agent on `/console/ws`, as the console would be (presence: available)."""

    def __init__(self, conn: ClientConnection) -> None:
        self.conn = conn
        self.frames: list[dict[str, Any]] = []
        self.reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        # Always drain: a console that stops reading is closed as a slow consumer.
        with contextlib.suppress(Exception):
            async for raw in self.conn:
                self.frames.append(json.loads(raw))

    async def send(self, frame: dict[str, Any]) -> None:
        await self.conn.send(json.dumps(frame))

    async def wait_for(self, pred: Callable[[dict[str, Any]], bool]) -> dict[str, Any]:
        async with asyncio.timeout(TIMEOUT):
            while True:
                for frame in self.frames:
                    if pred(frame):
                        return frame
                await asyncio.sleep(0.02)

    async def close(self) -> None:
        await self.conn.close()
        self.reader.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self.reader


async def sign_in(live: LiveServer, email: str, password: str = PASSWORD) -> str:
    """The console session cookie (`name=value`), from the real sign-in form."""
    async with httpx.AsyncClient(base_url=live.url) as http:
        r = await http.post(
            "/console/login",
            data={"email": email, "password": password},
            headers={"Origin": live.url},
        )
        assert r.status_code in (302, 303), r.text[:500]
        cookie = r.cookies.get("hd_session")
        assert cookie, "sign-in set no session cookie"
        return f"hd_session={cookie}"


@pytest.fixture
async def agent_online(
    live_server: LiveServer, workspace: SeededWorkspace
) -> AsyncIterator[AgentSocket]:
    """The `agent` of team Support, available on the agent websocket, streaming its tickets."""
    cookie = await sign_in(live_server, "agent@acme.test")
    conn = await connect(
        live_server.ws_url + "/console/ws",
        additional_headers={"Cookie": cookie},
        origin=live_server.url,  # type: ignore[arg-type]
    )
    agent = AgentSocket(conn)
    await agent.send({"type": "hello", "presence": "available"})
    await agent.wait_for(lambda f: f.get("type") == "welcome")
    await agent.send({"type": "subscribe", "stream": "assigned", "cursors": {}})
    try:
        yield agent
    finally:
        await agent.close()


@pytest.fixture
def api(
    live_server: LiveServer, workspace: SeededWorkspace
) -> Callable[..., Awaitable[httpx.Response]]:
    """`await api("POST", "/tickets/1/replies", json=…)` as the workspace admin's token."""

    async def call(method: str, path: str, **kwargs: Any) -> httpx.Response:
        async with httpx.AsyncClient(base_url=live_server.url + "/api/v1") as http:
            return await http.request(method, path, headers=workspace.auth("admin"), **kwargs)

    return call
