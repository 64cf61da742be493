"""The inbound SMTP listener: aiosmtpd's protocol served on the app's own event loop.

Not aiosmtpd's `Controller`: that runs a second loop in a thread, and every
database call would then cross loops. Here `loop.create_server` hands each
connection an `SMTP` protocol whose handler awaits the ingest directly.

Replies: unknown recipient 550, over `HELPDESK_SMTP_MAX_BYTES` 552 (aiosmtpd enforces
the limit while reading DATA), malformed commands 5xx (aiosmtpd), and 250 to DATA
only after the message is committed; any failure before that is a 451, so the
sending MTA keeps the message and retries.

Optional STARTTLS (HELPDESK_SMTP_TLS_CERT/KEY) and AUTH (HELPDESK_SMTP_AUTH_USERS):
with users configured every session must authenticate before MAIL, and AUTH is
only offered inside TLS, except to loopback peers (a local relay on the same host).
"""

from __future__ import annotations

import asyncio
import hmac
import ipaddress
import logging
import ssl
from typing import Any

from aiosmtpd.smtp import MISSING, SMTP, AuthResult, Envelope, LoginPassword, Session

from app.context import AppContext
from app.services.email_ingest import inbox_for_address
from app.services.inbox_addresses import InboxAddressCache, address_key
from channels.email.ingest import ingest_raw

log = logging.getLogger(__name__)

MAX_RECIPIENTS = 100


class _Handler:
    def __init__(self, ctx: AppContext) -> None:
        self.ctx = ctx
        self.inboxes = InboxAddressCache()

    async def _inbox_id(self, address: str) -> int | None:
        key = address_key(address)
        if key is None:
            return None
        known = self.inboxes.get(key)
        if known is not None:
            return known.inbox_id
        generation = self.inboxes.generation()
        # A lookup: no SQLite write lock, so RCPT never queues behind ingests.
        async with self.ctx.read_sessions() as db:
            inbox = await inbox_for_address(db, address)
        inbox_id = inbox.id if inbox is not None else None
        self.inboxes.put(key, inbox_id, generation)
        return inbox_id

    async def handle_RCPT(
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        address: str,
        rcpt_options: list[str],
    ) -> str:
        if len(envelope.rcpt_tos) >= MAX_RECIPIENTS:
            return "452 4.5.3 Too many recipients"
        try:
            inbox_id = await self._inbox_id(address)
        except Exception:
            log.exception("recipient lookup failed")
            return "451 4.3.0 Temporary lookup failure, try again later"
        if inbox_id is None:
            return f"550 5.1.1 <{address}>: no such mailbox here"
        envelope.rcpt_tos.append(address)
        inbox_ids: list[int] = getattr(envelope, "inbox_ids", [])
        inbox_ids.append(inbox_id)
        envelope.inbox_ids = inbox_ids  # type: ignore[attr-defined]
        return "250 2.1.5 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        raw = envelope.original_content or b""
        if isinstance(raw, str):  # only with decode_data=True, which we never set
            raw = raw.encode("utf-8", errors="surrogateescape")
        inbox_ids: list[int] = getattr(envelope, "inbox_ids", [])
        if not inbox_ids:
            return "554 5.5.1 No valid recipients"
        mail_from = envelope.mail_from or ""
        sender = "" if mail_from in ("", "<>") else mail_from
        try:
            results = await ingest_raw(
                self.ctx,
                raw,
                inbox_ids,
                recipients=list(envelope.rcpt_tos),
                envelope_sender=sender,
                source="smtp",
            )
        except Exception:
            log.exception("ingesting a message failed; answering 451 so the sender retries")
            return "451 4.3.0 Temporary failure while storing the message, try again later"
        ids = ",".join(str(r.mail_id) for r in results if r.mail_id is not None)
        return f"250 2.0.0 OK stored {ids or 'duplicate'}"


def tls_context(settings: Any) -> ssl.SSLContext | None:
    if settings.smtp_tls_cert is None or settings.smtp_tls_key is None:
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(str(settings.smtp_tls_cert), str(settings.smtp_tls_key))
    return context


class Authenticator:
    """aiosmtpd `authenticator`: PLAIN/LOGIN against HELPDESK_SMTP_AUTH_USERS."""

    def __init__(self, users: dict[str, str]) -> None:
        self.users = {u.encode(): p.encode() for u, p in users.items()}

    def __call__(
        self, server: SMTP, session: Session, envelope: Envelope, mechanism: str, data: Any
    ) -> AuthResult:
        if not isinstance(data, LoginPassword):
            return AuthResult(success=False, handled=False)
        expected = self.users.get(data.login)
        # Compare against something even for unknown users: no timing hint about names.
        ok = hmac.compare_digest(expected or b"\0" * 32, data.password) and expected is not None
        if not ok:
            log.warning("SMTP AUTH failed for %r", data.login[:64])
        return AuthResult(success=ok, handled=False, auth_data=data.login if ok else None)


def _is_loopback(peer: Any) -> bool:
    try:
        host = peer[0] if isinstance(peer, tuple) else str(peer)
        return ipaddress.ip_address(host).is_loopback
    except (ValueError, IndexError, TypeError):
        return False


class SmtpListener:
    """A `Service` for the app lifespan."""

    name = "email-smtp"

    def __init__(self) -> None:
        self.server: asyncio.AbstractServer | None = None
        self.port: int = 0
        self.protocols: set[SMTP] = set()

    async def start(self, ctx: AppContext) -> None:
        host, port = ctx.settings.smtp_host_port
        handler = _Handler(ctx)
        limit = ctx.settings.smtp_max_bytes
        context = tls_context(ctx.settings)
        users = ctx.settings.smtp_users
        auth: dict[str, Any] = (
            {"authenticator": Authenticator(users), "auth_required": True} if users else {}
        )

        def factory() -> SMTP:
            protocol = _TrackedSMTP(
                self.protocols,
                handler,
                tls_context=context,
                # Loopback peers may AUTH without TLS (see connection_made).
                auth_require_tls=True,
                **auth,
                data_size_limit=limit,
                enable_SMTPUTF8=True,
                decode_data=False,
                hostname=host if host not in ("0.0.0.0", "::") else None,
                ident="helpdesk ESMTP",
                timeout=300,
            )
            return protocol

        loop = asyncio.get_running_loop()
        self.server = await loop.create_server(factory, host, port)
        self.port = self.server.sockets[0].getsockname()[1]
        ctx.extras["smtp_port"] = self.port
        log.info("SMTP listening on %s:%s", host, self.port)

    async def stop(self) -> None:
        if self.server is None:
            return
        self.server.close()
        # Drop open sessions: an unfinished DATA was never acknowledged, so the
        # sender still owns that message and will retry it.
        for protocol in list(self.protocols):
            transport: Any = protocol.transport
            if transport is not None:
                transport.abort()
        await self.server.wait_closed()
        self.server = None


class _TrackedSMTP(SMTP):
    # RFC 5321 caps lines at 1000 octets, but real senders exceed it (long HTML lines);
    # rejecting would lose mail. Memory stays bounded by HELPDESK_SMTP_MAX_BYTES.
    line_length_limit = 1024 * 1024

    def __init__(self, registry: set[SMTP], handler: Any, **kwargs: Any) -> None:
        super().__init__(handler, **kwargs)
        self._registry = registry

    async def smtp_DATA(self, arg: str) -> None:
        """aiosmtpd's DATA, with the message read in a few large pieces.

        aiosmtpd reads DATA one line at a time in Python: a 100 KiB attachment is
        ~1,800 lines and cost more CPU than parsing the message. Here the reader
        waits for the next ".<CRLF>" (rare inside a mail, absent from base64), so a
        message arrives in a few reads; the replies, limits and dot-unstuffing are
        aiosmtpd's (`DataReader`)."""
        if self._decode_data or "DATA" not in self._handle_hooks:
            await super().smtp_DATA(arg)
            return
        if await self.check_helo_needed():
            return
        if await self.check_auth_needed("DATA"):
            return
        assert self.envelope is not None
        if not self.envelope.rcpt_tos:
            await self.push("503 Error: need RCPT command")
            return
        if arg:
            await self.push("501 Syntax: DATA")
            return
        await self.push("354 End data with <CR><LF>.<CR><LF>")
        reader = DataReader(self.data_size_limit, self.line_length_limit)
        while not reader.done:
            try:
                piece = await self._reader.readuntil(b".\r\n")
            except asyncio.CancelledError:
                log.info("Connection lost during DATA")
                self._writer.close()
                raise
            except asyncio.LimitOverrunError as exc:
                # No ".<CRLF>" within the stream limit: take what is there, read on.
                reader.feed(await self._reader.read(exc.consumed), maybe_end=False)
            else:
                reader.feed(piece, maybe_end=True)
        if reader.error is not None:
            await self.push(reader.error)
            self._set_post_data_state()  # type: ignore[no-untyped-call]
            return
        content = reader.content()
        self.envelope.content = content
        self.envelope.original_content = content
        status = await self._call_handler_hook("DATA")
        self._set_post_data_state()  # type: ignore[no-untyped-call]
        await self.push("250 OK" if status is MISSING else status)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._registry.add(self)
        if _is_loopback(transport.get_extra_info("peername")):
            # Passwords cannot be sniffed on loopback; a local relay need not do TLS.
            self._auth_require_tls = False
        super().connection_made(transport)

    def connection_lost(self, exc: Exception | None) -> None:
        self._registry.discard(self)
        super().connection_lost(exc)


class DataReader:
    """The DATA bytes of one message, fed in pieces, under aiosmtpd's rules.

    The message ends at a line that is a lone "."; lines (ending in CRLF) that begin
    with a dot lose it (RFC 5321 4.5.2). A line longer than `line_limit` answers 500,
    more than `size_limit` bytes 552, whichever aiosmtpd would have met first; the
    rest is still read, but no longer kept.
    """

    def __init__(self, size_limit: int | None, line_limit: int) -> None:
        self.size_limit = size_limit or 0
        self.line_limit = line_limit
        self.size = 0  # bytes of the finished lines, line endings included
        self.line = 0  # bytes of the unfinished line
        self.tail = b"\r\n"  # the last two bytes read; DATA starts at a line start
        self.pieces: list[bytes] = []
        self.error: str | None = None
        self.done = False

    def feed(self, piece: bytes, *, maybe_end: bool) -> None:
        if maybe_end and (piece if len(piece) >= 5 else self.tail + piece).endswith(b"\r\n.\r\n"):
            piece = piece[:-3]
            self.done = True
        if not piece:
            return
        if self.error is None:
            self._count(piece)
            if self.error is None:
                self.pieces.append(piece)
        self.tail = (self.tail + piece)[-2:]

    def _count(self, piece: bytes) -> None:
        # A CRLF split between two pieces ends its line at this piece's first byte.
        split_crlf = self.tail.endswith(b"\r") and piece.startswith(b"\n")
        total = self.size + self.line + len(piece)
        if self.line + len(piece) <= self.line_limit and not (
            self.size_limit and total > self.size_limit
        ):
            # No limit can be reached in this piece: its lines need not be looked at.
            last = piece.rfind(b"\r\n")
            end = last + 2 if last >= 0 else int(split_crlf)  # after the last line end
            if end:
                self.size, self.line = total - (len(piece) - end), len(piece) - end
            else:
                self.line += len(piece)
            return
        # Line by line, with aiosmtpd's checks in aiosmtpd's order.
        if split_crlf:
            self._line(1, finished=True)
            piece = piece[1:]
        *lines, rest = piece.split(b"\r\n")
        for line in lines:
            if self.error is None:
                self._line(len(line) + 2, finished=True)
        if rest and self.error is None:
            self._line(len(rest), finished=False)

    def _line(self, length: int, *, finished: bool) -> None:
        """`length` more bytes of the current line; `finished`: they end it."""
        self.line += length
        # aiosmtpd's stream limit trips (500) before the line's bytes are counted...
        if self.line - (2 if finished else 0) > self.line_limit:
            self.error = "500 Line too long (see RFC5321 4.5.3.1.6)"
            return
        if not finished:
            return
        self.size += self.line
        if self.size_limit and self.size > self.size_limit:
            self.error = "552 Error: Too much mail data"
            return
        # ...and its own check of a line that fit the stream only after.
        if self.line > self.line_limit:
            self.error = "500 Line too long (see RFC5321 4.5.3.1.6)"
            return
        self.line = 0

    def content(self) -> bytes:
        data = b"".join(self.pieces)
        self.pieces = []
        # De-transparency: every line's leading dot goes, the first line's too.
        if data.startswith(b"."):
            data = data[1:]
        return data.replace(b"\r\n.", b"\r\n")
