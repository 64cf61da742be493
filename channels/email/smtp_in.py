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

from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session

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

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._registry.add(self)
        if _is_loopback(transport.get_extra_info("peername")):
            # Passwords cannot be sniffed on loopback; a local relay need not do TLS.
            self._auth_require_tls = False
        super().connection_made(transport)

    def connection_lost(self, exc: Exception | None) -> None:
        self._registry.discard(self)
        super().connection_lost(exc)
