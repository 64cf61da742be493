"""Webhook signing and the outbox delivery worker.

Deliveries are rows written by `app.services.webhook_outbox.enqueue` in the same
transaction as the change they describe. This worker sends them:

- It claims due rows (``pending`` and ``next_attempt_at <= now``) in a short
  transaction by pushing their ``next_attempt_at`` forward by a lease, so
  another worker or process skips them (``FOR UPDATE SKIP LOCKED`` on
  PostgreSQL; SQLite serializes writers with ``BEGIN IMMEDIATE``). The new
  ``next_attempt_at`` doubles as the claim token: the outcome is only recorded
  if the row still carries it, so a worker whose lease ran out cannot overwrite
  a newer attempt.
- A crash or restart mid-send leaves the lease in place; the row becomes due
  again when it expires (at-least-once delivery; receivers dedupe on
  ``Helpdesk-Delivery``).
- 2xx is success. Anything else (including redirects, which are not followed)
  is retried after the next step of the backoff schedule with jitter, and
  marked failed after the last one. Every attempt is appended to the history.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import ipaddress
import logging
import random
import secrets
import socket
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

import httpx
from sqlalchemy import delete, func
from sqlmodel import col, select

from app import __version__
from app.metrics import WEBHOOK_ATTEMPT_SECONDS, WEBHOOK_BACKLOG, WEBHOOK_DELIVERIES
from app.models import DeliveryStatus, Webhook, WebhookDelivery
from app.models.base import utcnow
from app.services import webhook_outbox

if TYPE_CHECKING:
    from app.context import AppContext

log = logging.getLogger(__name__)

SIGNATURE_HEADER = "Helpdesk-Signature"
DELIVERY_HEADER = "Helpdesk-Delivery"
EVENT_HEADER = "Helpdesk-Event"
USER_AGENT = f"Helpdesk-Webhooks/{__version__}"

# Delay before attempt 2, 3, ...: nine attempts spread over about two days, so a
# receiver that is down for a day still gets everything.
RETRY_SCHEDULE: tuple[float, ...] = (
    60,
    5 * 60,
    30 * 60,
    2 * 3600,
    5 * 3600,
    10 * 3600,
    14 * 3600,
    24 * 3600,
)
JITTER = 0.1  # +-10% so a burst of failures does not retry in lockstep
MAX_RESPONSE_BYTES = 64 * 1024  # read at most this much of a receiver's answer
HISTORY_LIMIT = 30  # attempts kept per delivery (manual redeliveries included)
EXCERPT_CHARS = 300
MAX_ADDRESSES = 4  # of a receiver's name, tried in turn when a connection fails
# Test deliveries an admin asks for (webhook_admin.do_send_test) go out even while the
# webhook is disabled: checking a receiver before switching it on is the point.
SENT_WHEN_DISABLED = frozenset({"ping"})
DEFAULT_TIMEOUT = httpx.Timeout(10.0, connect=5.0)


# --- signing ---------------------------------------------------------------------------


def generate_secret() -> str:
    """A new webhook signing secret (shown to the admin when the webhook is created)."""
    return "whsec_" + secrets.token_urlsafe(32)


def _as_bytes(body: bytes | str) -> bytes:
    return body.encode() if isinstance(body, str) else body


def signature(secret: str, ts: int, body: bytes | str) -> str:
    """Hex HMAC-SHA256 of ``"<ts>.<raw body>"`` keyed with the webhook secret."""
    message = str(ts).encode() + b"." + _as_bytes(body)
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def sign(secret: str, ts: int, body: bytes | str) -> str:
    """The ``Helpdesk-Signature`` header value: ``t=<ts>,v1=<hex>``."""
    return f"t={ts},v1={signature(secret, ts, body)}"


def verify(
    secret: str,
    header: str,
    body: bytes | str,
    *,
    tolerance: int = 300,
    now: float | None = None,
) -> bool:
    """True when `header` signs `body` with `secret` and is at most `tolerance` s old."""
    ts_text, candidates = "", []
    for part in header.split(","):
        key, _, value = part.strip().partition("=")
        if key == "t":
            ts_text = value
        elif key == "v1":
            candidates.append(value)
    if not ts_text.isdigit() or not candidates:
        return False
    ts = int(ts_text)
    current = time.time() if now is None else now
    if abs(current - ts) > tolerance:
        return False
    expected = signature(secret, ts, body)
    return any(hmac.compare_digest(expected, c) for c in candidates)


# --- one HTTP attempt ------------------------------------------------------------------


@dataclass(frozen=True)
class AttemptResult:
    ok: bool
    status_code: int | None
    error: str | None
    duration_ms: int
    response_excerpt: str

    def history_entry(self, at: datetime, attempt: int) -> dict[str, Any]:
        return {
            "attempt": attempt,
            "at": at.isoformat(),
            "status_code": self.status_code,
            "ok": self.ok,
            "error": self.error,
            "duration_ms": self.duration_ms,
            "response": self.response_excerpt,
        }


def new_http_client(timeout: httpx.Timeout = DEFAULT_TIMEOUT) -> httpx.AsyncClient:
    # trust_env=False: proxy variables of the server's environment must not reroute
    # (or leak) tenant webhooks; redirects are not followed so a receiver cannot
    # bounce a signed body elsewhere.
    return httpx.AsyncClient(
        timeout=timeout,
        follow_redirects=False,
        trust_env=False,
        limits=httpx.Limits(max_connections=50, max_keepalive_connections=10),
    )


Address = ipaddress.IPv4Address | ipaddress.IPv6Address


def is_public_address(address: Address) -> bool:
    return address.is_global


@dataclass(frozen=True)
class PinnedTarget:
    """Where a delivery goes: the URL with its host replaced by each address that was
    checked (tried in order), and the name the receiver still sees (Host header, TLS
    server name)."""

    urls: tuple[str, ...]
    host_header: str
    server_name: str


async def public_target(
    url: str, *, is_public: Callable[[Address], bool] = is_public_address
) -> PinnedTarget | str:
    """`url` pinned to an address of its host, or why it must not be called.

    A workspace admin controls webhook URLs and reads response excerpts in the delivery
    log, so an unguarded worker would let them probe internal services. The host is
    resolved once; every address must be public (not loopback, private, link-local or
    reserved), and the request then goes to them, the next one if a connection to one
    fails. Letting the HTTP client resolve the name again would reopen the hole: a
    name whose records change between the check and the connection (DNS rebinding, a
    zero TTL) would pass the check with a public address and be called at an
    internal one.
    """
    try:
        parsed = httpx.URL(url)
    except httpx.InvalidURL as exc:
        return f"invalid webhook URL: {exc}"
    host = parsed.host
    if not host:
        return "webhook URL has no host"
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(host, None, type=socket.SOCK_STREAM)
    except OSError as exc:
        return f"cannot resolve {host}: {exc.strerror or exc}"
    addresses = list(dict.fromkeys(ipaddress.ip_address(info[4][0]) for info in infos))
    if not addresses:
        return f"cannot resolve {host}: no address"
    for address in addresses:
        if not is_public(address):
            return f"refusing to call non-public address {address} ({host})"
    return PinnedTarget(
        urls=tuple(str(parsed.copy_with(host=str(a))) for a in addresses[:MAX_ADDRESSES]),
        host_header=parsed.netloc.decode("ascii"),
        server_name=parsed.raw_host.decode("ascii"),
    )


async def post_delivery(
    client: httpx.AsyncClient,
    *,
    url: str,
    secret: str,
    delivery_id: str,
    event: str,
    body: str,
    total_timeout: float = 20.0,
    allow_private: bool = True,
    is_public: Callable[[Address], bool] = is_public_address,
) -> AttemptResult:
    """POST one signed delivery; never raises for network or receiver errors.

    Unless `allow_private`, only to public addresses (`is_public`), pinned to the
    one that was checked (`public_target`)."""
    raw = body.encode()
    headers = {
        "Content-Type": "application/json",
        "User-Agent": USER_AGENT,
        SIGNATURE_HEADER: sign(secret, int(time.time()), raw),
        DELIVERY_HEADER: delivery_id,
        EVENT_HEADER: event,
    }
    extensions: dict[str, Any] = {}
    urls: tuple[str, ...] = (url,)
    if not allow_private:
        target = await public_target(url, is_public=is_public)
        if isinstance(target, str):
            return AttemptResult(False, None, target, 0, "")
        urls = target.urls
        headers["Host"] = target.host_header
        # The certificate is still checked against the name, not the address.
        extensions["sni_hostname"] = target.server_name
        # The client pools connections by address: a connection opened (and its
        # certificate checked) for one name would carry the next name's delivery to
        # the same address unchecked, another workspace's perhaps. So none is kept.
        headers["Connection"] = "close"
    started = time.perf_counter()
    status: int | None = None
    excerpt = ""
    error: str | None = None
    try:
        async with asyncio.timeout(total_timeout):
            for index, address_url in enumerate(urls):
                try:
                    async with client.stream(
                        "POST", address_url, content=raw, headers=headers, extensions=extensions
                    ) as response:
                        status = response.status_code
                        received = bytearray()
                        async for chunk in response.aiter_bytes():
                            received += chunk
                            if len(received) >= MAX_RESPONSE_BYTES:
                                break  # closing the stream drops the rest
                        excerpt = bytes(received[:EXCERPT_CHARS]).decode("utf-8", "replace")
                    break
                except httpx.ConnectError:
                    # Nothing was sent: the next checked address may answer.
                    if index == len(urls) - 1:
                        raise
    except TimeoutError:
        error = f"timed out after {total_timeout:g} s"
    except httpx.HTTPError as exc:
        error = f"{type(exc).__name__}: {exc}"[:500] if str(exc) else type(exc).__name__
    except (OSError, ValueError) as exc:  # bad URL, unsupported scheme, socket errors
        error = f"{type(exc).__name__}: {exc}"[:500]
    duration = time.perf_counter() - started
    WEBHOOK_ATTEMPT_SECONDS.observe(duration)
    ok = error is None and status is not None and 200 <= status < 300
    if error is None and not ok:
        error = f"HTTP {status}"
    return AttemptResult(ok, status, error, int(duration * 1000), excerpt)


# --- the worker ------------------------------------------------------------------------


# Finished deliveries are deleted in batches of this many, the loop free in between.
PRUNE_BATCH = 500
PRUNE_INTERVAL_SECONDS = 3600.0
# A pass deletes at most this many batches; a backlog (the first pass after an
# upgrade) goes over the following minutes, not in one long pass before any delivery.
PRUNE_MAX_BATCHES = 40
PRUNE_CATCH_UP_SECONDS = 60.0


async def prune_delivery_log(
    ctx: AppContext,
    retention_days: int,
    now: datetime | None = None,
    max_batches: int = PRUNE_MAX_BATCHES,
) -> tuple[int, bool]:
    """Delete deliveries that finished (delivered or given up) over `retention_days` ago:
    how many went, and whether more are left (at most `max_batches` go per call).

    The log keeps each delivery's body: ticket events with customers' messages. Kept
    for ever it would grow by every change of every ticket and keep copies of what
    erasing a ticket removes. Pending deliveries stay, however old. Each webhook's
    deliveries are read oldest first through (webhook_id, created_at), so a pass
    reads the rows it deletes, not the whole log."""
    cutoff = (now or utcnow()) - timedelta(days=retention_days)
    finished = [DeliveryStatus.delivered, DeliveryStatus.failed]
    async with ctx.sessions() as session:
        hooks = list((await session.exec(select(Webhook.id))).all())
    removed = batches = 0
    for hook_id in hooks:
        while True:
            if batches >= max_batches:
                return removed, True
            async with ctx.uow() as uow:
                batch = (
                    select(WebhookDelivery.id)
                    .where(
                        col(WebhookDelivery.webhook_id) == hook_id,
                        col(WebhookDelivery.created_at) < cutoff,
                        col(WebhookDelivery.status).in_(finished),
                    )
                    .order_by(col(WebhookDelivery.created_at))
                    .limit(PRUNE_BATCH)
                )
                result = await uow.session.exec(
                    delete(WebhookDelivery).where(col(WebhookDelivery.id).in_(batch))
                )
                await uow.commit()
            batches += 1
            count = int(result.rowcount or 0)
            removed += count
            await asyncio.sleep(0)
            if count < PRUNE_BATCH:
                break
    return removed, False


@dataclass(frozen=True)
class Claim:
    delivery_id: str
    lease_until: datetime
    url: str
    secret: str
    event: str
    body: str


def backoff_delay(schedule: Sequence[float], attempts: int, rng: random.Random) -> float | None:
    """Seconds before the next attempt after `attempts` failures; None when exhausted."""
    if attempts > len(schedule):
        return None
    base = schedule[attempts - 1]
    return base * (1 + rng.uniform(-JITTER, JITTER))


class WebhookWorker:
    """Background service that sends due webhook deliveries from the outbox."""

    name = "webhooks"

    def __init__(
        self,
        *,
        schedule: Sequence[float] = RETRY_SCHEDULE,
        poll_interval: float = 5.0,
        lease: float = 60.0,
        concurrency: int = 8,
        stop_grace: float = 5.0,
        total_timeout: float = 20.0,
        client: httpx.AsyncClient | None = None,
        rng: random.Random | None = None,
    ) -> None:
        if lease <= total_timeout:
            raise ValueError("the lease must outlast one attempt's total timeout")
        self.schedule = tuple(schedule)
        self.poll_interval = poll_interval
        self.lease = lease
        self.concurrency = concurrency
        self.stop_grace = stop_grace
        self.total_timeout = total_timeout
        self._client = client
        self._own_client = client is None
        self._rng = rng or random.Random()
        self._ctx: AppContext | None = None
        self._wake = asyncio.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task[None] | None = None
        self._inflight: set[asyncio.Task[None]] = set()
        self._stopping = False
        self._prune_due = 0.0  # time.monotonic() of the next pruning of the log

    @property
    def max_attempts(self) -> int:
        return len(self.schedule) + 1

    async def start(self, ctx: AppContext) -> None:
        self._ctx = ctx
        self._loop = asyncio.get_running_loop()
        self._stopping = False
        if self._client is None:
            self._client = new_http_client()
        webhook_outbox.register_wakeup(self.wake)
        self._task = asyncio.create_task(self._run(), name="webhook-worker")

    async def stop(self) -> None:
        webhook_outbox.unregister_wakeup(self.wake)
        self._stopping = True
        self._wake.set()
        if self._task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if self._inflight:
            # Let attempts in flight finish so their outcome is recorded; whatever is
            # still running after the grace keeps its lease and is retried later.
            _done, pending = await asyncio.wait(self._inflight, timeout=self.stop_grace)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
        if self._own_client and self._client is not None:
            await self._client.aclose()
            self._client = None

    def wake(self) -> None:
        """Called after a commit that enqueued deliveries; safe from any thread."""
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        with contextlib.suppress(RuntimeError):
            loop.call_soon_threadsafe(self._wake.set)

    async def run_once(self) -> int:
        """Claim and send what is due now, waiting for the results (tests, CLI)."""
        claims = await self._claim(self.concurrency)
        await asyncio.gather(*(self._deliver(c) for c in claims))
        return len(claims)

    async def _prune_when_due(self) -> None:
        if time.monotonic() < self._prune_due:
            return
        assert self._ctx is not None
        removed, more = await prune_delivery_log(
            self._ctx, self._ctx.settings.webhook_log_retention_days
        )
        # With more left, the next pass comes after a minute instead of an hour.
        wait = PRUNE_CATCH_UP_SECONDS if more else PRUNE_INTERVAL_SECONDS
        self._prune_due = time.monotonic() + wait
        if removed:
            log.info("webhook log: %d finished deliveries past retention deleted", removed)

    async def _run(self) -> None:
        while not self._stopping:
            self._wake.clear()
            free = self.concurrency - len(self._inflight)
            claims: list[Claim] = []
            try:
                await self._prune_when_due()
                if free > 0:
                    claims = await self._claim(free)
                    for claim in claims:
                        task = asyncio.create_task(self._deliver(claim))
                        self._inflight.add(task)
                        task.add_done_callback(self._delivered)
                if claims and len(claims) == free:
                    continue  # more may be due; claim again once a slot frees
                timeout = await self._until_next_due()
            except Exception:
                log.exception("webhook worker cycle failed")
                timeout = self.poll_interval
            if free <= 0:
                timeout = self.poll_interval
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(timeout):
                    await self._wake.wait()

    def _delivered(self, task: asyncio.Task[None]) -> None:
        self._inflight.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("webhook delivery task failed", exc_info=task.exception())
        self._wake.set()

    async def _claim(self, limit: int) -> list[Claim]:
        assert self._ctx is not None
        now = utcnow()
        lease_until = now + timedelta(seconds=self.lease)
        claims: list[Claim] = []
        async with self._ctx.sessions() as session:
            stmt = (
                select(WebhookDelivery, Webhook)
                .join(Webhook, col(Webhook.id) == col(WebhookDelivery.webhook_id))
                .where(
                    WebhookDelivery.status == DeliveryStatus.pending,
                    col(WebhookDelivery.next_attempt_at) <= now,
                )
                .order_by(col(WebhookDelivery.next_attempt_at))
                .limit(limit)
                .with_for_update(skip_locked=True, of=WebhookDelivery)
            )
            rows = (await session.exec(stmt)).all()
            for delivery, hook in rows:
                if not hook.active and delivery.event not in SENT_WHEN_DISABLED:
                    self._skip(delivery, now, "webhook disabled")
                else:
                    delivery.next_attempt_at = lease_until
                    claims.append(
                        Claim(
                            delivery.id,
                            lease_until,
                            hook.url,
                            hook.secret,
                            delivery.event,
                            delivery.body,
                        )
                    )
                session.add(delivery)
            await session.commit()
        return claims

    def _skip(self, delivery: WebhookDelivery, now: datetime, reason: str) -> None:
        delivery.status = DeliveryStatus.failed
        delivery.last_error = reason
        delivery.history = [
            *delivery.history,
            {"attempt": None, "at": now.isoformat(), "ok": False, "error": reason},
        ][-HISTORY_LIMIT:]
        WEBHOOK_DELIVERIES.labels("skipped").inc()

    async def _deliver(self, claim: Claim) -> None:
        assert self._client is not None
        result = await post_delivery(
            self._client,
            url=claim.url,
            secret=claim.secret,
            delivery_id=claim.delivery_id,
            event=claim.event,
            body=claim.body,
            total_timeout=self.total_timeout,
            allow_private=self._ctx.settings.webhooks_may_reach_private
            if self._ctx is not None
            else True,
        )
        await self._record(claim, result)

    async def _record(self, claim: Claim, result: AttemptResult) -> None:
        assert self._ctx is not None
        now = utcnow()
        async with self._ctx.sessions() as session:
            stmt = (
                select(WebhookDelivery)
                .where(
                    WebhookDelivery.id == claim.delivery_id,
                    WebhookDelivery.status == DeliveryStatus.pending,
                    WebhookDelivery.next_attempt_at == claim.lease_until,
                )
                .with_for_update()
            )
            delivery = (await session.exec(stmt)).first()
            if delivery is None:
                log.warning("webhook delivery %s: lease lost, result dropped", claim.delivery_id)
                return
            delivery.attempts += 1
            delivery.last_status_code = result.status_code
            delivery.last_error = result.error[:1000] if result.error else None
            delivery.history = [
                *delivery.history,
                result.history_entry(now, delivery.attempts),
            ][-HISTORY_LIMIT:]
            if result.ok:
                delivery.status = DeliveryStatus.delivered
                delivery.delivered_at = now
                outcome = "delivered"
            else:
                delay = backoff_delay(self.schedule, delivery.attempts, self._rng)
                if delay is None:
                    delivery.status = DeliveryStatus.failed
                    outcome = "failed"
                else:
                    delivery.next_attempt_at = now + timedelta(seconds=delay)
                    outcome = "retry"
            session.add(delivery)
            await session.commit()
        WEBHOOK_DELIVERIES.labels(outcome).inc()
        if outcome != "delivered":
            log.info(
                "webhook delivery %s attempt %d: %s (%s)",
                claim.delivery_id,
                delivery.attempts,
                outcome,
                result.error,
            )

    async def _until_next_due(self) -> float:
        """Seconds until the earliest pending delivery is due (capped by the poll)."""
        assert self._ctx is not None
        async with self._ctx.sessions() as session:
            stmt = select(func.count(), func.min(col(WebhookDelivery.next_attempt_at))).where(
                WebhookDelivery.status == DeliveryStatus.pending
            )
            count, earliest = (await session.exec(stmt)).one()
        WEBHOOK_BACKLOG.set(count)
        if earliest is None:
            return self.poll_interval
        if isinstance(earliest, str):  # raw SQLite value from an aggregate
            earliest = datetime.fromisoformat(earliest)
        if earliest.tzinfo is None:
            earliest = earliest.replace(tzinfo=utcnow().tzinfo)
        wait = (earliest - utcnow()).total_seconds()
        return min(max(wait, 0.0), self.poll_interval)
