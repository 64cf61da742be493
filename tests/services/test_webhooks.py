"""Webhooks end to end: REST changes -> outbox -> worker -> a real, verifying HTTP receiver."""

from __future__ import annotations

import asyncio
import contextlib
import re
import socket
import ssl
import time
from collections.abc import AsyncIterator, Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import trustme
from prometheus_client import REGISTRY
from sqlmodel import col, select
from starlette.applications import Starlette

from app.context import AppContext
from app.main import create_app
from app.models import DeliveryStatus, Webhook, WebhookDelivery
from app.models.base import utcnow
from app.services import webhook_admin, webhooks
from app.services.actors import Actor
from app.services.webhooks import JITTER, RETRY_SCHEDULE, WebhookWorker, sign
from app.settings import Settings
from tests.conftest import SeededWorkspace, seed_workspace
from tests.services.webhook_receiver import Receiver

README = Path(__file__).resolve().parents[2] / "README.md"
ALL_EVENTS = {
    "ticket.created",
    "ticket.updated",
    "ticket.event.created",
    "contact.created",
    "contact.updated",
}
NO_WORKER = pytest.mark.parametrize("settings_overrides", [{"webhook_worker": False}])
WAIT = 30.0  # generous upper bound on any wait; tests never assert timings
FAST = (0.05,) * 8  # the real schedule's shape, in tens of milliseconds
BOTH_DATABASES = pytest.mark.parametrize("database_url", ["sqlite", "pg"], indirect=True)


def readme_verifier() -> Callable[..., bool]:
    """The ten-line verifier exactly as README shows it, so the docs cannot rot."""
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), re.S)
    code = next((b for b in blocks if "def verify(secret" in b), None)
    assert code is not None, "README must show the webhook signature verifier"
    assert len(code.strip().splitlines()) <= 10
    namespace: dict[str, Any] = {}
    exec(code, namespace)
    verify: Callable[..., bool] = namespace["verify"]
    return verify


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    server = Receiver()
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


async def add_webhook(
    ctx: AppContext, workspace_id: int, url: str, events: list[str] | None = None
) -> Webhook:
    async with ctx.uow() as uow:
        hook = Webhook(
            workspace_id=workspace_id,
            url=url,
            secret=webhooks.generate_secret(),
            events=events or [],
        )
        uow.session.add(hook)
        await uow.commit()
    return hook


async def deliveries(ctx: AppContext) -> list[WebhookDelivery]:
    async with ctx.sessions() as session:
        stmt = select(WebhookDelivery).order_by(col(WebhookDelivery.created_at))
        return list((await session.exec(stmt)).all())


async def wait_for_rows(
    ctx: AppContext, predicate: Callable[[list[WebhookDelivery]], bool]
) -> list[WebhookDelivery]:
    async with asyncio.timeout(WAIT):
        while True:
            rows = await deliveries(ctx)
            if predicate(rows):
                return rows
            await asyncio.sleep(0.02)


async def create_ticket(client: httpx.AsyncClient, ws: SeededWorkspace, n: int = 1) -> Any:
    r = await client.post(
        "/api/v1/tickets",
        headers=ws.auth(),
        json={
            "subject": f"Parcel {n} is late",
            "contact": {"email": f"jane{n}@example.com", "name": "Jane"},
            "message": "Where is my parcel?",
        },
    )
    assert r.status_code == 201, r.text
    return r.json()


async def started_worker(ctx: AppContext, **kwargs: Any) -> WebhookWorker:
    options: dict[str, Any] = {"schedule": FAST, "poll_interval": 0.2, "lease": 30.0}
    options.update(kwargs)
    worker = WebhookWorker(**options)
    await worker.start(ctx)
    return worker


def retry_count() -> float:
    value = REGISTRY.get_sample_value("helpdesk_webhook_deliveries_total", {"result": "retry"})
    return value or 0.0


# --- signing --------------------------------------------------------------------------


def test_sign_and_verify() -> None:
    body = b'{"id":"1","event":"ticket.created"}'
    header = sign("whsec_abc", 1_700_000_000, body)
    assert re.fullmatch(r"t=1700000000,v1=[0-9a-f]{64}", header)
    assert webhooks.verify("whsec_abc", header, body, now=1_700_000_010)
    assert not webhooks.verify("whsec_abc", header, body + b" ", now=1_700_000_010)
    assert not webhooks.verify("whsec_other", header, body, now=1_700_000_010)
    assert not webhooks.verify("whsec_abc", header, body, now=1_700_000_000 + 301)
    assert not webhooks.verify("whsec_abc", "v1=" + header.split("v1=")[1], body)
    assert not webhooks.verify("whsec_abc", "garbage", body)
    # A signature of another timestamp does not carry over.
    forged = header.replace("t=1700000000", "t=1700000005")
    assert not webhooks.verify("whsec_abc", forged, body, now=1_700_000_010)


def test_readme_verifier_agrees_with_the_signer() -> None:
    verify = readme_verifier()
    body = b'{"hello":"world"}'
    ts = int(time.time())
    assert verify("s3cret", sign("s3cret", ts, body), body)
    assert not verify("s3cret", sign("s3cret", ts, body), body + b"!")
    assert not verify("s3cret", sign("s3cret", ts - 3600, body), body)
    assert not verify("s3cret", "nonsense", body)


def test_secrets_are_random_and_long() -> None:
    a, b = webhooks.generate_secret(), webhooks.generate_secret()
    assert a != b and a.startswith("whsec_") and len(a) >= 40


def test_default_schedule_spans_a_day_in_at_least_eight_attempts() -> None:
    assert len(RETRY_SCHEDULE) + 1 >= 8
    assert sum(RETRY_SCHEDULE) * (1 - JITTER) >= 24 * 3600
    assert list(RETRY_SCHEDULE) == sorted(RETRY_SCHEDULE)


# --- delivery through the real app ----------------------------------------------------


@BOTH_DATABASES
async def test_rest_changes_arrive_signed_at_a_real_receiver(
    app: Starlette,
    ctx: AppContext,
    client: httpx.AsyncClient,
    workspace: SeededWorkspace,
    other_workspace: SeededWorkspace,
    receiver: Receiver,
) -> None:
    verify = readme_verifier()
    everything = await add_webhook(ctx, workspace.id, receiver.url + "/all")
    only_created = await add_webhook(
        ctx, workspace.id, receiver.url + "/created", ["ticket.created"]
    )
    foreign = await add_webhook(ctx, other_workspace.id, receiver.url + "/foreign")

    ticket = await create_ticket(client, workspace)
    r = await client.patch(
        f"/api/v1/tickets/{ticket['id']}", headers=workspace.auth(), json={"priority": "high"}
    )
    assert r.status_code == 200, r.text
    r = await client.patch(
        f"/api/v1/contacts/{ticket['contact_id']}",
        headers=workspace.auth(),
        json={"name": "Jane Doe"},
    )
    assert r.status_code == 200, r.text

    await receiver.wait_for(
        lambda rc: {x.event for x in rc.on("/all")} >= ALL_EVENTS and len(rc.on("/created")) == 1
    )
    for got, hook in [(x, everything) for x in receiver.on("/all")] + [
        (x, only_created) for x in receiver.on("/created")
    ]:
        assert verify(hook.secret, got.headers["helpdesk-signature"], got.body)
        assert not verify(foreign.secret, got.headers["helpdesk-signature"], got.body)
        assert got.headers["content-type"] == "application/json"
        assert got.headers["user-agent"].startswith("Helpdesk-Webhooks/")
        envelope = got.json()
        assert envelope["id"] == got.delivery_id
        assert envelope["event"] == got.event
        assert envelope["workspace_id"] == workspace.id
    assert [x.event for x in receiver.on("/created")] == ["ticket.created"]
    assert receiver.on("/foreign") == []

    by_event = {x.event: x.json()["data"] for x in receiver.on("/all")}
    assert by_event["ticket.created"]["id"] == ticket["id"]
    assert by_event["ticket.updated"]["ticket"]["priority"] == "high"
    assert by_event["contact.created"]["id"] == ticket["contact_id"]
    assert by_event["contact.updated"]["name"] == "Jane Doe"
    assert by_event["ticket.event.created"]["ticket_id"] == ticket["id"]

    rows = await wait_for_rows(
        ctx, lambda rows: all(r.status is DeliveryStatus.delivered for r in rows)
    )
    assert {r.id for r in rows} == {x.delivery_id for x in receiver.received}
    for row in rows:
        assert row.attempts == 1 and row.delivered_at is not None
        assert [h["status_code"] for h in row.history] == [200]


@NO_WORKER
async def test_a_hanging_receiver_never_blocks_the_request(
    app: Starlette,
    ctx: AppContext,
    client: httpx.AsyncClient,
    workspace: SeededWorkspace,
    receiver: Receiver,
) -> None:
    receiver.script["/slow"] = ["hang"] * 10
    await add_webhook(ctx, workspace.id, receiver.url + "/slow", ["ticket.created"])
    worker = await started_worker(ctx)
    try:
        await create_ticket(client, workspace, 1)
        await receiver.wait_for(lambda rc: rc.hanging == 1)
        # The receiver is stuck on the first delivery; the API still answers.
        async with asyncio.timeout(30):
            await create_ticket(client, workspace, 2)
        await receiver.wait_for(lambda rc: rc.hanging == 2)
        receiver.release()
        rows = await wait_for_rows(
            ctx, lambda rows: [r.status for r in rows] == [DeliveryStatus.delivered] * 2
        )
        assert len(rows) == 2
    finally:
        await worker.stop()


@NO_WORKER
async def test_failed_attempts_are_retried_with_backoff(
    app: Starlette,
    ctx: AppContext,
    client: httpx.AsyncClient,
    workspace: SeededWorkspace,
    receiver: Receiver,
) -> None:
    receiver.script["/flaky"] = [500, 503]
    hook = await add_webhook(ctx, workspace.id, receiver.url + "/flaky", ["ticket.created"])
    retries_before = retry_count()
    worker = await started_worker(ctx)
    try:
        await create_ticket(client, workspace)
        await receiver.wait_for(lambda rc: len(rc.on("/flaky")) == 3)
        (row,) = await wait_for_rows(ctx, lambda rows: rows[0].status is DeliveryStatus.delivered)
    finally:
        await worker.stop()
    got = receiver.on("/flaky")
    assert [g.status for g in got] == [500, 503, 200]
    assert len({g.delivery_id for g in got}) == 1
    # Every attempt is signed afresh and verifies.
    assert all(webhooks.verify(hook.secret, g.headers["helpdesk-signature"], g.body) for g in got)
    assert row.attempts == 3
    assert [h["status_code"] for h in row.history] == [500, 503, 200]
    assert [h["attempt"] for h in row.history] == [1, 2, 3]
    assert row.history[0]["error"] == "HTTP 500"
    assert row.last_error is None and row.last_status_code == 200
    assert retry_count() - retries_before == 2


@NO_WORKER
async def test_gives_up_after_the_schedule_and_does_not_follow_redirects(
    app: Starlette,
    ctx: AppContext,
    client: httpx.AsyncClient,
    workspace: SeededWorkspace,
    receiver: Receiver,
) -> None:
    receiver.script["/moved"] = ["redirect"] * 10
    await add_webhook(ctx, workspace.id, receiver.url + "/moved", ["ticket.created"])
    worker = await started_worker(ctx, schedule=(0.01, 0.02))
    try:
        await create_ticket(client, workspace)
        (row,) = await wait_for_rows(ctx, lambda rows: rows[0].status is DeliveryStatus.failed)
    finally:
        await worker.stop()
    assert row.attempts == 3
    assert [h["status_code"] for h in row.history] == [302, 302, 302]
    assert len(receiver.on("/moved")) == 3
    assert receiver.on("/elsewhere") == []


@NO_WORKER
async def test_unreachable_receiver_and_endless_response(
    app: Starlette,
    ctx: AppContext,
    client: httpx.AsyncClient,
    workspace: SeededWorkspace,
    receiver: Receiver,
) -> None:
    # A port nobody listens on: connection refused is an attempt like any other.
    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    dead_url = f"http://127.0.0.1:{probe.getsockname()[1]}/x"
    probe.close()
    receiver.script["/endless"] = ["endless"]
    dead = await add_webhook(ctx, workspace.id, dead_url, ["ticket.created"])
    await add_webhook(ctx, workspace.id, receiver.url + "/endless", ["ticket.created"])
    worker = await started_worker(ctx, schedule=(0.01,))
    try:
        await create_ticket(client, workspace)
        rows = await wait_for_rows(
            ctx, lambda rows: all(r.status is not DeliveryStatus.pending for r in rows)
        )
    finally:
        await worker.stop()
    by_hook = {r.webhook_id: r for r in rows}
    assert by_hook[dead.id].status is DeliveryStatus.failed
    assert by_hook[dead.id].history[0]["error"].startswith("ConnectError")
    endless = next(r for r in rows if r.webhook_id != dead.id)
    # The body never ends; the worker reads a bounded prefix and calls it delivered.
    assert endless.status is DeliveryStatus.delivered
    assert 0 < len(endless.history[0]["response"]) <= 300


@NO_WORKER
async def test_disabled_webhooks_are_skipped_except_for_test_pings(
    app: Starlette,
    ctx: AppContext,
    client: httpx.AsyncClient,
    workspace: SeededWorkspace,
    receiver: Receiver,
) -> None:
    hook = await add_webhook(ctx, workspace.id, receiver.url + "/off", ["ticket.created"])
    await create_ticket(client, workspace, 1)  # queued while the hook is active
    async with ctx.uow() as uow:
        stored = await uow.session.get(Webhook, hook.id)
        assert stored is not None
        stored.active = False
        uow.session.add(stored)
        await uow.commit()
    await create_ticket(client, workspace, 2)  # not queued at all
    assert hook.id is not None
    async with ctx.uow() as uow:
        await webhook_admin.do_send_test(uow, Actor.system(workspace.id), hook.id)
        await uow.commit()
    worker = await started_worker(ctx)
    try:
        rows = await wait_for_rows(
            ctx, lambda rows: all(r.status is not DeliveryStatus.pending for r in rows)
        )
    finally:
        await worker.stop()
    by_event = {r.event: r for r in rows}
    assert sorted(by_event) == ["ping", "ticket.created"]
    skipped = by_event["ticket.created"]
    assert skipped.status is DeliveryStatus.failed and skipped.last_error == "webhook disabled"
    assert skipped.attempts == 0
    assert by_event["ping"].status is DeliveryStatus.delivered
    assert [x.event for x in receiver.received] == ["ping"]


# --- restarts and several workers -----------------------------------------------------


async def _app(settings: Settings) -> tuple[Starlette, Any]:
    application = create_app(settings)
    lifespan = application.router.lifespan_context(application)
    await lifespan.__aenter__()
    return application, lifespan


@BOTH_DATABASES
async def test_restart_mid_queue_delivers_exactly_the_pending_ones(
    settings: Settings, receiver: Receiver
) -> None:
    quiet = settings.model_copy(update={"webhook_worker": False})
    first, first_life = await _app(quiet)
    ctx1: AppContext = first.state.ctx
    ws = await seed_workspace(ctx1, "acme")
    await add_webhook(ctx1, ws.id, receiver.url + "/hook")
    transport = httpx.ASGITransport(app=first)
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as c:
            worker = await started_worker(ctx1, lease=1.0, total_timeout=0.5, stop_grace=0.1)
            await create_ticket(c, ws, 1)
            done = await wait_for_rows(
                ctx1,
                lambda rows: (
                    len(rows) == 3 and all(r.status is DeliveryStatus.delivered for r in rows)
                ),
            )
            # Ticket 2's deliveries are in flight when the process "dies"...
            receiver.script["/hook"] = ["hang"] * 3
            await create_ticket(c, ws, 2)
            await receiver.wait_for(lambda rc: rc.hanging == 3)
            await worker.stop()  # abandoned mid-request, leases still held
            # ...and ticket 3's and 4's were never picked up at all.
            for n in (3, 4):
                await create_ticket(c, ws, n)
        rows = await deliveries(ctx1)
    finally:
        await first_life.__aexit__(None, None, None)
    delivered_before = {r.id for r in done}
    pending = {r.id for r in rows if r.status is DeliveryStatus.pending}
    assert len(delivered_before) == 3 and len(pending) == 9 and len(rows) == 12
    receiver.release()  # the abandoned requests notice their sender is gone

    # A fresh process on the same database, with the worker the app wires in itself.
    second, second_life = await _app(settings)
    ctx2: AppContext = second.state.ctx
    assert any(isinstance(s, WebhookWorker) for s in ctx2.services)
    try:
        rows = await wait_for_rows(
            ctx2, lambda rows: all(r.status is DeliveryStatus.delivered for r in rows)
        )
    finally:
        await second_life.__aexit__(None, None, None)
    assert len(rows) == 12
    acknowledged = [x.delivery_id for x in receiver.received if x.status == 200]
    # Everything acknowledged exactly once: the pending ones after the restart,
    # and nothing delivered before the restart was sent again.
    assert sorted(acknowledged) == sorted(delivered_before | pending)


@BOTH_DATABASES
async def test_two_workers_never_send_the_same_delivery(
    app: Starlette,
    ctx: AppContext,
    client: httpx.AsyncClient,
    workspace: SeededWorkspace,
    receiver: Receiver,
    settings: Settings,
) -> None:
    # The app's own worker plus a second process-like context on the same database.
    other = AppContext(settings)
    await other.start([])
    second = await started_worker(other, concurrency=3)
    try:
        await add_webhook(ctx, workspace.id, receiver.url + "/both", ["ticket.event.created"])
        ticket = await create_ticket(client, workspace)
        for i in range(20):
            r = await client.post(
                f"/api/v1/tickets/{ticket['id']}/notes",
                headers=workspace.auth(),
                json={"body": f"note {i}"},
            )
            assert r.status_code == 201, r.text
        await receiver.wait_for(lambda rc: len(rc.on("/both")) >= 21)
        await wait_for_rows(
            ctx, lambda rows: all(r.status is DeliveryStatus.delivered for r in rows)
        )
    finally:
        await second.stop()
        await other.stop()
    ids = [x.delivery_id for x in receiver.on("/both")]
    assert len(ids) == 21 and len(set(ids)) == 21


def loopback_is_public(address: webhooks.Address) -> bool:
    """In these tests the receiver listens on loopback, standing in for the internet."""
    return address.is_loopback or address.is_global


async def deliver_pinned(client: httpx.AsyncClient, url: str, delivery_id: str = "d-1") -> Any:
    """A ping as production sends it: private addresses refused, the checked one called."""
    return await webhooks.post_delivery(
        client,
        url=url,
        secret="s" * 32,
        delivery_id=delivery_id,
        event="ping",
        body="{}",
        total_timeout=5.0,
        allow_private=False,
        is_public=loopback_is_public,
    )


async def test_production_refuses_webhooks_to_private_addresses() -> None:
    from app.services.webhooks import PinnedTarget, public_target

    assert isinstance(await public_target("http://127.0.0.1:9/hook"), str)
    assert isinstance(await public_target("http://169.254.169.254/latest"), str)
    assert isinstance(await public_target("http://10.1.2.3/"), str)
    assert isinstance(await public_target("http://[::1]:8080/"), str)
    assert await public_target("http://8.8.8.8/hook") == PinnedTarget(
        urls=("http://8.8.8.8/hook",), host_header="8.8.8.8", server_name="8.8.8.8"
    )


async def test_a_receiver_name_is_resolved_once_and_called_at_the_checked_address(
    receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    """DNS rebinding: a name that resolves to a public address for the check and to an
    internal one a moment later (a zero TTL) must never be called at the internal
    one. The worker connects to the address it checked and still names the host.
    Here loopback stands in for a public address and 10.0.0.0/8 for the internal
    network; the receiver listens on loopback."""
    loop = asyncio.get_running_loop()
    system_resolver = loop.getaddrinfo
    answers = iter(["127.0.0.1", "10.0.0.7", "10.0.0.7"])
    port = httpx.URL(receiver.url).port

    async def rebinding(host: Any, *args: Any, **kwargs: Any) -> Any:
        if host == "hooks.example":
            return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (next(answers), 0))]
        return await system_resolver(host, *args, **kwargs)

    monkeypatch.setattr(loop, "getaddrinfo", rebinding)

    async def deliver(delivery_id: str) -> webhooks.AttemptResult:
        async with webhooks.new_http_client() as client:
            url = f"http://hooks.example:{port}/rebound"
            result: webhooks.AttemptResult = await deliver_pinned(client, url, delivery_id)
            return result

    result = await deliver("d-1")
    assert result.ok, result.error
    (received,) = receiver.on("/rebound")
    assert received.headers["host"] == f"hooks.example:{port}"
    # The same name now resolving to the internal address is refused outright.
    refused = await deliver("d-2")
    assert not refused.ok and "10.0.0.7" in (refused.error or "")
    assert len(receiver.on("/rebound")) == 1


async def test_finished_deliveries_leave_the_log_after_the_retention(
    ctx: AppContext, workspace: SeededWorkspace
) -> None:
    """The log keeps each delivery's body (customers' messages): finished deliveries go
    after the retention, in batches; pending ones stay however old."""
    hook = await add_webhook(ctx, workspace.id, "http://127.0.0.1:9/h")
    now = utcnow()
    old, recent = now - timedelta(days=31), now - timedelta(days=29)
    rows = {
        "old-delivered": (DeliveryStatus.delivered, old),
        "old-failed": (DeliveryStatus.failed, old),
        "old-pending": (DeliveryStatus.pending, old),
        "recent-delivered": (DeliveryStatus.delivered, recent),
    }
    rows |= {f"old-{n}": (DeliveryStatus.delivered, old) for n in range(webhooks.PRUNE_BATCH + 5)}
    async with ctx.uow() as uow:
        for name, (status, created) in rows.items():
            uow.session.add(
                WebhookDelivery(
                    id=name,
                    workspace_id=workspace.id,
                    webhook_id=hook.id or 0,
                    event="ticket.created",
                    body="{}",
                    status=status,
                    created_at=created,
                )
            )
        await uow.commit()
    # A pass stops after its batches and says more are left; the next goes on.
    removed, more = await webhooks.prune_delivery_log(ctx, 30, now=now, max_batches=1)
    assert (removed, more) == (webhooks.PRUNE_BATCH, True)
    rest, more = await webhooks.prune_delivery_log(ctx, retention_days=30, now=now)
    assert removed + rest == len(rows) - 2 and not more
    assert sorted(d.id for d in await deliveries(ctx)) == ["old-pending", "recent-delivered"]


async def test_each_name_gets_its_own_checked_tls_connection(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Pinned to an address, deliveries to two names at that address must not share a
    pooled TLS connection: the second name's certificate would never be checked (and
    another workspace's delivery would ride on the first one's connection). The
    receiver's certificate is for a.test only; b.test must always fail."""
    ca = trustme.CA()
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("a.test").configure_cert(server_context)
    names: list[str | None] = []  # the server name of each TLS handshake
    server_context.sni_callback = lambda _sock, name, _ctx: names.append(name)

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(OSError, asyncio.IncompleteReadError):
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = re.search(rb"(?i)content-length: *(\d+)", head)
                await reader.readexactly(int(length.group(1)) if length else 0)
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
                await writer.drain()
        writer.close()

    server = await asyncio.start_server(answer, "127.0.0.1", 0, ssl=server_context)
    port = server.sockets[0].getsockname()[1]
    loop = asyncio.get_running_loop()
    system_resolver = loop.getaddrinfo

    async def both_names_here(host: Any, *args: Any, **kwargs: Any) -> Any:
        if host in ("a.test", "b.test"):
            return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("127.0.0.1", 0))]
        return await system_resolver(host, *args, **kwargs)

    monkeypatch.setattr(loop, "getaddrinfo", both_names_here)
    client_context = ssl.create_default_context()
    ca.configure_trust(client_context)
    outcomes = []
    try:
        async with httpx.AsyncClient(verify=client_context, trust_env=False) as client:
            for name in ("a.test", "b.test", "a.test", "b.test"):
                result = await deliver_pinned(client, f"https://{name}:{port}/hook", name)
                outcomes.append((name, result.ok))
    finally:
        server.close()
        await server.wait_closed()
    assert outcomes == [("a.test", True), ("b.test", False), ("a.test", True), ("b.test", False)]
    assert names == ["a.test", "b.test", "a.test", "b.test"]  # a handshake per delivery


async def test_a_name_with_several_addresses_is_tried_at_each_in_turn(
    receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Pinning must not lose a name's other records: when the first checked address
    refuses the connection, the delivery goes to the next one."""
    loop = asyncio.get_running_loop()
    system_resolver = loop.getaddrinfo
    port = httpx.URL(receiver.url).port

    async def two_records(host: Any, *args: Any, **kwargs: Any) -> Any:
        if host == "hooks.example":  # nothing listens on 127.0.0.2
            return [
                (socket.AF_INET, socket.SOCK_STREAM, 6, "", (address, 0))
                for address in ("127.0.0.2", "127.0.0.1")
            ]
        return await system_resolver(host, *args, **kwargs)

    monkeypatch.setattr(loop, "getaddrinfo", two_records)
    async with webhooks.new_http_client() as client:
        result = await deliver_pinned(client, f"http://hooks.example:{port}/second")
    assert result.ok, result.error
    assert len(receiver.on("/second")) == 1
