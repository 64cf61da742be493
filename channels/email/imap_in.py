"""IMAP fetching for email inboxes that read an existing mailbox (aioimaplib).

Per inbox one watcher task keeps a connection: SELECT the folder, fetch every
UID above the stored high-water mark with BODY.PEEK[] (the mailbox's \\Seen flags
are left to humans), ingest each message, and advance the mark only after that
message committed. Then, where the server supports it, IDLE until the server
reports a change (or the poll interval passes, or an admin changed the settings);
otherwise log out and poll again after the interval.

A crash between the commit and the mark re-reads one message, which Message-ID
dedupe absorbs; a changed UIDVALIDITY restarts from zero for the same reason.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import ssl as ssl_lib
from typing import Any

import aioimaplib

from app.context import AppContext
from app.models import Inbox
from app.services import email_imap
from app.tasks import cancel_and_wait, raise_if_cancelling
from channels.email.ingest import ingest_raw

log = logging.getLogger(__name__)

MAX_PER_POLL = 200
# Servers end IDLE after 30 minutes (RFC 2177); re-issue well before.
MAX_IDLE_SECONDS = 25 * 60
MAX_BACKOFF_SECONDS = 300.0
_UIDVALIDITY = re.compile(rb"UIDVALIDITY (\d+)")
_FETCH_UID = re.compile(rb"UID (\d+)")
_FINGERPRINT_KEYS = ("host", "port", "ssl", "username", "password_enc", "folder", "poll_seconds")


class ImapError(Exception):
    pass


def _check(response: Any, what: str) -> list[Any]:
    if response.result != "OK":
        detail = b" ".join(x for x in response.lines if isinstance(x, bytes))[:200]
        raise ImapError(f"{what} failed: {detail.decode(errors='replace')}")
    return list(response.lines)


def fetched_messages(lines: list[Any]) -> list[tuple[int, bytes]]:
    """(uid, raw) pairs from an aioimaplib UID FETCH response (literal after its header)."""
    out: list[tuple[int, bytes]] = []
    for i, line in enumerate(lines[:-1]):
        if isinstance(line, bytes) and b"FETCH" in line:
            match = _FETCH_UID.search(line)
            literal = lines[i + 1]
            if match and isinstance(literal, bytes | bytearray):
                out.append((int(match.group(1)), bytes(literal)))
    return out


def search_uids(lines: list[Any], last_uid: int) -> list[int]:
    uids = {
        int(tok)
        for line in lines
        if isinstance(line, bytes)
        for tok in line.split()
        if tok.isdigit()
    }
    # "n:*" always matches the highest UID even when it is below n.
    return sorted(u for u in uids if u > last_uid)[:MAX_PER_POLL]


def fingerprint(cfg: dict[str, Any]) -> tuple[Any, ...]:
    """What a watcher's connection depends on; a change restarts the watcher."""
    return tuple(cfg.get(k) for k in _FINGERPRINT_KEYS)


class ImapConnection:
    """One logged-in, SELECTed connection to one inbox's mailbox."""

    def __init__(self, ctx: AppContext, inbox: Inbox, *, io_timeout: float = 30.0) -> None:
        assert inbox.id is not None
        self.ctx = ctx
        self.inbox_id = inbox.id
        self.cfg = dict(inbox.imap)
        self.io_timeout = io_timeout
        self.client: aioimaplib.IMAP4 | None = None
        self.validity: int | None = None

    async def open(self) -> None:
        cfg = self.cfg
        password = email_imap.decrypt_password(self.ctx.settings.secret, str(cfg["password_enc"]))
        client: aioimaplib.IMAP4
        if cfg.get("ssl", True):
            client = aioimaplib.IMAP4_SSL(
                host=cfg["host"],
                port=int(cfg.get("port", 993)),
                timeout=self.io_timeout,
                ssl_context=ssl_lib.create_default_context(),
            )
        else:
            client = aioimaplib.IMAP4(
                host=cfg["host"], port=int(cfg.get("port", 143)), timeout=self.io_timeout
            )
        self.client = client
        await client.wait_hello_from_server()
        _check(await client.login(cfg["username"], password), "LOGIN")
        selected = _check(await client.select(cfg.get("folder", "INBOX")), "SELECT")
        for line in selected:
            found = _UIDVALIDITY.search(line) if isinstance(line, bytes) else None
            if found:
                self.validity = int(found.group(1))

    @property
    def supports_idle(self) -> bool:
        return self.client is not None and self.client.has_capability("IDLE")

    async def _state(self) -> dict[str, Any]:
        async with self.ctx.read_sessions() as session:
            inbox = await session.get(Inbox, self.inbox_id)
            return dict(inbox.imap) if inbox is not None else {}

    async def fetch_new(self) -> int:
        """Ingest every message above the high-water mark; returns how many."""
        client = self.client
        assert client is not None
        state = await self._state()
        validity = self.validity
        last_uid = int(state.get("last_uid") or 0)
        if validity is not None and state.get("uidvalidity") not in (None, validity):
            log.warning("inbox %s: UIDVALIDITY changed; re-reading the folder", self.inbox_id)
            last_uid = 0
        lines = _check(await client.uid_search(f"UID {last_uid + 1}:*", charset=None), "SEARCH")
        uids = search_uids(lines, last_uid)
        count = 0
        for uid in uids:
            response = await client.uid("fetch", str(uid), "(UID BODY.PEEK[])")
            for got_uid, raw in fetched_messages(_check(response, "FETCH")):
                await ingest_raw(self.ctx, raw, [self.inbox_id], recipients=[], source="imap")
                count += 1
                last_uid = max(last_uid, got_uid)
                async with self.ctx.uow() as uow:
                    await email_imap.do_record_poll(
                        uow, self.inbox_id, uidvalidity=validity, last_uid=last_uid, error=""
                    )
                    await uow.commit()
        stale_validity = validity is not None and state.get("uidvalidity") != validity
        if not count and (stale_validity or state.get("last_error")):
            async with self.ctx.uow() as uow:
                await email_imap.do_record_poll(
                    uow,
                    self.inbox_id,
                    uidvalidity=validity,
                    last_uid=last_uid if stale_validity else None,
                    error="",
                )
                await uow.commit()
        return count

    async def idle(self, seconds: float, wake: asyncio.Event) -> None:
        """IDLE until the server pushes anything, `wake` is set, or `seconds` pass."""
        client = self.client
        assert client is not None
        idle = await client.idle_start(timeout=seconds)
        push = asyncio.ensure_future(client.wait_server_push(timeout=seconds + 5))
        woken = asyncio.ensure_future(wake.wait())
        try:
            await asyncio.wait({push, woken}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            await cancel_and_wait(push, woken)
            if client.has_pending_idle():
                client.idle_done()
            await asyncio.wait_for(idle, self.io_timeout)

    async def close(self) -> None:
        client, self.client = self.client, None
        if client is None:
            return
        with contextlib.suppress(Exception):
            if client.protocol is not None and client.protocol.state != "LOGOUT":
                await asyncio.wait_for(client.logout(), self.io_timeout)
        # aioimaplib connects in a task of its own; a failed or cancelled open leaves it
        # (and its transport) behind unless we end them here.
        connecting = getattr(client, "_client_task", None)
        if connecting is not None and not connecting.done():
            connecting.cancel()
        transport = getattr(client.protocol, "transport", None)
        if transport is not None:
            transport.close()


async def poll_inbox(ctx: AppContext, inbox: Inbox, *, io_timeout: float = 30.0) -> int:
    """One pass over one inbox on a fresh connection; returns how many were ingested."""
    connection = ImapConnection(ctx, inbox, io_timeout=io_timeout)
    try:
        await connection.open()
        return await connection.fetch_new()
    finally:
        await connection.close()


class ImapPoller:
    """A `Service`: one watcher task per enabled IMAP inbox (IDLE, or polling)."""

    name = "email-imap"

    def __init__(self, *, tick_seconds: float = 5.0, use_idle: bool = True) -> None:
        self.tick_seconds = tick_seconds
        self.use_idle = use_idle
        self._task: asyncio.Task[None] | None = None
        self._watchers: dict[int, tuple[tuple[Any, ...], asyncio.Task[None]]] = {}
        self._wakes: dict[int, asyncio.Event] = {}
        self._tick = asyncio.Event()
        self.ctx: AppContext | None = None
        # Passes completed per inbox (tests wait on it instead of sleeping).
        self.passes: dict[int, int] = {}
        self.changed = asyncio.Condition()

    def wake(self) -> None:
        """Re-read the settings and check every inbox now (after an admin change, tests)."""
        for event in self._wakes.values():
            event.set()
        self._tick.set()

    async def start(self, ctx: AppContext) -> None:
        self.ctx = ctx
        ctx.extras["imap_poller"] = self
        self._task = ctx.spawn(self._run(), "email-imap")

    async def stop(self) -> None:
        tasks = [t for _, t in self._watchers.values()]
        if self._task is not None:
            tasks.append(self._task)
        await cancel_and_wait(*tasks)
        self._watchers.clear()

    async def _run(self) -> None:
        assert self.ctx is not None
        while True:
            try:
                await self._sync_watchers()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("reading IMAP inboxes failed")
            self._tick.clear()
            raise_if_cancelling()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._tick.wait(), self.tick_seconds)

    async def _sync_watchers(self) -> None:
        assert self.ctx is not None
        async with self.ctx.read_sessions() as session:
            inboxes = {i.id: i for i in await email_imap.imap_inboxes(session) if i.id is not None}
        for inbox_id in list(self._watchers):
            current = inboxes.get(inbox_id)
            print_, task = self._watchers[inbox_id]
            if current is None or fingerprint(current.imap) != print_ or task.done():
                await cancel_and_wait(task)
                del self._watchers[inbox_id]
        for inbox_id, inbox in inboxes.items():
            if inbox_id not in self._watchers:
                wake = self._wakes.setdefault(inbox_id, asyncio.Event())
                task = self.ctx.spawn(self._watch(inbox, wake), f"email-imap-{inbox_id}")
                self._watchers[inbox_id] = (fingerprint(inbox.imap), task)

    async def _passed(self, inbox_id: int) -> None:
        async with self.changed:
            self.passes[inbox_id] = self.passes.get(inbox_id, 0) + 1
            self.changed.notify_all()

    async def wait_passes(self, inbox_id: int, count: int) -> None:
        async with self.changed:
            await self.changed.wait_for(lambda: self.passes.get(inbox_id, 0) >= count)

    async def _watch(self, inbox: Inbox, wake: asyncio.Event) -> None:
        assert self.ctx is not None and inbox.id is not None
        interval = float(inbox.imap.get("poll_seconds", 60))
        backoff = 5.0
        while True:
            wait = interval
            wake.clear()
            connection = ImapConnection(self.ctx, inbox)
            try:
                await connection.open()
                while True:
                    wake.clear()
                    await connection.fetch_new()
                    await self._passed(inbox.id)
                    backoff = 5.0
                    if not (self.use_idle and connection.supports_idle):
                        break
                    await connection.idle(min(interval, MAX_IDLE_SECONDS), wake)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("IMAP fetch for inbox %s failed: %s", inbox.id, exc)
                wait, backoff = min(backoff, interval), min(backoff * 2, MAX_BACKOFF_SECONDS)
                await self._record_error(inbox.id, exc)
            finally:
                await connection.close()
            raise_if_cancelling()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(wake.wait(), wait)

    async def _record_error(self, inbox_id: int, exc: Exception) -> None:
        assert self.ctx is not None
        with contextlib.suppress(Exception):
            async with self.ctx.uow() as uow:
                await email_imap.do_record_poll(uow, inbox_id, error=f"{type(exc).__name__}: {exc}")
                await uow.commit()
        await self._passed(inbox_id)
