"""/healthz, /readyz and /metrics on the real app; the metrics middleware on websockets."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
import uvicorn
import websockets
from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families
from starlette.applications import Starlette
from starlette.routing import WebSocketRoute
from starlette.websockets import WebSocket

from app.main import create_app
from app.metrics import track_connection
from app.web.metrics import MetricsMiddleware
from tests.conftest import SeededWorkspace, make_settings


def samples(text: str, name: str) -> list[dict[str, str]]:
    return [
        sample.labels
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == name
    ]


async def test_healthz_and_readyz(client: httpx.AsyncClient) -> None:
    r = await client.get("/healthz")
    assert r.status_code == 200 and r.json() == {"status": "ok"}
    r = await client.get("/readyz")
    assert r.status_code == 200 and r.json() == {"status": "ready"}


async def test_readyz_is_503_when_the_database_is_unreachable(tmp_path: Path) -> None:
    # A directory where the database file should be: SQLite cannot open it.
    broken = tmp_path / "db-is-a-directory"
    broken.mkdir()
    settings = make_settings(tmp_path, f"sqlite+aiosqlite:///{broken}", workers_enabled=False)
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
            assert (await c.get("/healthz")).status_code == 200  # alive, just not ready
            r = await c.get("/readyz")
    assert r.status_code == 503
    assert r.json()["status"] == "unavailable"


async def test_metrics_use_route_templates_with_bounded_labels(
    client: httpx.AsyncClient, workspace: SeededWorkspace
) -> None:
    for ticket_id in (1, 2, 999_999):
        await client.get(f"/api/v1/tickets/{ticket_id}", headers=workspace.auth())
    for n in range(5):
        await client.get(f"/no/such/page/{n}")
    await client.request("BREW", "/healthz")
    r = await client.get("/metrics")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/plain")
    requests = samples(r.text, "helpdesk_http_requests_total")
    routes = {s["route"] for s in requests}
    assert "/api/v1/tickets/{ticket_id}" in routes
    assert "<unmatched>" in routes
    assert not any("999999" in route or "/no/such" in route for route in routes)
    assert {"method": "GET", "route": "/api/v1/tickets/{ticket_id}", "status": "404"} in requests
    assert {"method": "OTHER", "route": "/healthz", "status": "405"} in requests
    assert samples(r.text, "helpdesk_http_request_duration_seconds_count")
    # The webhook worker's gauges and counters are exported too.
    for name in ("helpdesk_webhook_outbox_backlog", "helpdesk_websocket_connections"):
        assert f"# TYPE {name} gauge" in r.text
    assert "# TYPE helpdesk_webhook_deliveries_total counter" in r.text


async def test_api_404_under_the_mount_is_labelled_by_the_mount(
    client: httpx.AsyncClient, workspace: SeededWorkspace
) -> None:
    await client.get("/api/v1/definitely/not/here", headers=workspace.auth())
    text = (await client.get("/metrics")).text
    routes = {s["route"] for s in samples(text, "helpdesk_http_requests_total")}
    assert "/api/v1/{path}" in routes
    assert not any("definitely" in route for route in routes)


def gauge(name: str, labels: dict[str, str]) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


@pytest.fixture
async def ws_server() -> AsyncIterator[tuple[str, asyncio.Event]]:
    """A tiny inline app with one websocket route behind the metrics middleware."""
    closed = asyncio.Event()

    async def echo(websocket: WebSocket) -> None:
        await websocket.accept()
        try:
            async for text in websocket.iter_text():
                await websocket.send_text(text)
        finally:
            closed.set()

    app = Starlette(routes=[WebSocketRoute("/rooms/{room}", echo)])
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(MetricsMiddleware(app), lifespan="off", log_config=None))
    task = asyncio.create_task(server.serve(sockets=[sock]))
    while not server.started:  # noqa: ASYNC110 (uvicorn exposes only a flag)
        await asyncio.sleep(0.01)
    try:
        yield f"ws://127.0.0.1:{sock.getsockname()[1]}", closed
    finally:
        server.should_exit = True
        await task
        sock.close()


async def test_open_websockets_are_counted_by_route(
    ws_server: tuple[str, asyncio.Event],
) -> None:
    url, closed = ws_server
    labels = {"route": "/rooms/{room}"}
    before = gauge("helpdesk_websocket_connections", labels)
    room = url + "/rooms/"
    async with websockets.connect(room + "42") as a, websockets.connect(room + "7") as b:
        for conn in (a, b):
            await conn.send("hi")
            assert await conn.recv() == "hi"
        assert gauge("helpdesk_websocket_connections", labels) == before + 2
    async with asyncio.timeout(30):
        await closed.wait()
    # The middleware decrements once the handler has returned, just after `closed`.
    for _ in range(3000):
        if gauge("helpdesk_websocket_connections", labels) == before:
            break
        await asyncio.sleep(0.01)
    assert gauge("helpdesk_websocket_connections", labels) == before


def test_track_connection_counts_while_open() -> None:
    labels = {"kind": "test_kind"}
    with track_connection("test_kind"):
        assert gauge("helpdesk_open_connections", labels) == 1
        with track_connection("test_kind"):
            assert gauge("helpdesk_open_connections", labels) == 2
    assert gauge("helpdesk_open_connections", labels) == 0


async def test_a_stalled_event_loop_shows_in_the_lag_histogram(client: httpx.AsyncClient) -> None:
    def stalled(text: str) -> float:
        """Samples more than 0.1 s late (the bucket counts are cumulative)."""
        total = bucket = 0.0
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                if sample.name == "helpdesk_event_loop_lag_seconds_count":
                    total = sample.value
                if (
                    sample.name == "helpdesk_event_loop_lag_seconds_bucket"
                    and sample.labels["le"] == "0.1"
                ):
                    bucket = sample.value
        return total - bucket

    before = stalled((await client.get("/metrics")).text)
    # Work that never awaits, as a long transaction would be: the monitor's timer is due
    # meanwhile and can only run once the loop is free again.
    await asyncio.sleep(0.3)
    time.sleep(0.4)  # noqa: ASYNC251 (the stall is the point)
    await asyncio.sleep(0.3)
    assert stalled((await client.get("/metrics")).text) >= before + 1
