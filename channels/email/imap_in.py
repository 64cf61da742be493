"""IMAP polling for email inboxes that fetch from an existing mailbox (aioimaplib).

Per inbox: log in, SELECT the folder, fetch every UID above the stored high-water
mark with BODY.PEEK[] (the mailbox's \\Seen flags are left to humans), ingest each
message, and advance the mark only after that message committed. A crash between
the commit and the mark re-reads one message, which Message-ID dedupe absorbs; a
changed UIDVALIDITY restarts from zero for the same reason.
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
from channels.email.ingest import ingest_raw

log = logging.getLogger(__name__)

MAX_PER_POLL = 200
_UIDVALIDITY = re.compile(rb"UIDVALIDITY (\d+)")
_FETCH_UID = re.compile(rb"UID (\d+)")


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


async def poll_inbox(ctx: AppContext, inbox: Inbox, *, io_timeout: float = 30.0) -> int:
    """One pass over one inbox; returns how many messages were ingested."""
    assert inbox.id is not None
    cfg = inbox.imap
    password = email_imap.decrypt_password(ctx.settings.secret, str(cfg["password_enc"]))
    client: aioimaplib.IMAP4
    if cfg.get("ssl", True):
        client = aioimaplib.IMAP4_SSL(
            host=cfg["host"],
            port=int(cfg.get("port", 993)),
            timeout=io_timeout,
            ssl_context=ssl_lib.create_default_context(),
        )
    else:
        client = aioimaplib.IMAP4(
            host=cfg["host"], port=int(cfg.get("port", 143)), timeout=io_timeout
        )
    await client.wait_hello_from_server()
    count = 0
    try:
        _check(await client.login(cfg["username"], password), "LOGIN")
        selected = _check(await client.select(cfg.get("folder", "INBOX")), "SELECT")
        validity = None
        for line in selected:
            found = _UIDVALIDITY.search(line) if isinstance(line, bytes) else None
            if found:
                validity = int(found.group(1))
        last_uid = int(cfg.get("last_uid") or 0)
        if validity is not None and cfg.get("uidvalidity") not in (None, validity):
            log.warning("inbox %s: UIDVALIDITY changed; re-reading the folder", inbox.id)
            last_uid = 0
        lines = _check(await client.uid_search(f"UID {last_uid + 1}:*", charset=None), "SEARCH")
        uids = sorted(
            {
                int(tok)
                for line in lines
                if isinstance(line, bytes)
                for tok in line.split()
                if tok.isdigit()
            }
        )
        # "n:*" always matches the highest UID even when it is below n.
        uids = [u for u in uids if u > last_uid][:MAX_PER_POLL]
        for uid in uids:
            response = await client.uid("fetch", str(uid), "(UID BODY.PEEK[])")
            for got_uid, raw in fetched_messages(_check(response, "FETCH")):
                await ingest_raw(ctx, raw, [inbox.id], recipients=[], source="imap")
                count += 1
                last_uid = max(last_uid, got_uid)
                async with ctx.uow() as uow:
                    await email_imap.do_record_poll(
                        uow, inbox.id, uidvalidity=validity, last_uid=last_uid, error=""
                    )
                    await uow.commit()
        if not uids and validity is not None and cfg.get("uidvalidity") != validity:
            async with ctx.uow() as uow:
                await email_imap.do_record_poll(uow, inbox.id, uidvalidity=validity)
                await uow.commit()
    finally:
        with contextlib.suppress(Exception):
            await client.logout()
    return count


class ImapPoller:
    """A `Service`: polls every enabled IMAP inbox on its own interval."""

    name = "email-imap"

    def __init__(self, *, tick_seconds: float = 5.0) -> None:
        self.tick_seconds = tick_seconds
        self._task: asyncio.Task[None] | None = None
        self._due: dict[int, float] = {}
        self._wake = asyncio.Event()
        self.ctx: AppContext | None = None

    def wake(self) -> None:
        """Poll every inbox now (tests, and after an admin changes settings)."""
        self._due.clear()
        self._wake.set()

    async def start(self, ctx: AppContext) -> None:
        self.ctx = ctx
        ctx.extras["imap_poller"] = self
        self._task = ctx.spawn(self._run(), "email-imap")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task

    async def _run(self) -> None:
        assert self.ctx is not None
        loop = asyncio.get_running_loop()
        while True:
            async with self.ctx.sessions() as session:
                inboxes = await email_imap.imap_inboxes(session)
            for inbox in inboxes:
                assert inbox.id is not None
                if self._due.get(inbox.id, 0.0) > loop.time():
                    continue
                self._due[inbox.id] = loop.time() + float(inbox.imap.get("poll_seconds", 60))
                await self._poll_safely(inbox)
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.tick_seconds)

    async def _poll_safely(self, inbox: Inbox) -> None:
        assert self.ctx is not None and inbox.id is not None
        try:
            await poll_inbox(self.ctx, inbox)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.warning("IMAP poll of inbox %s failed: %s", inbox.id, exc)
            async with self.ctx.uow() as uow:
                await email_imap.do_record_poll(uow, inbox.id, error=f"{type(exc).__name__}: {exc}")
                await uow.commit()
