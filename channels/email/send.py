"""The outbox worker: render queued mail once, send it through HELPDESK_SMTP_RELAY.

State transitions live in app/services/email_outbox.py; this module is the I/O:
templates, blob files and aiosmtplib. The rendered bytes are stored before the
first attempt, so every retry sends the identical message (same Message-ID).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from datetime import timedelta
from email.message import EmailMessage

import aiosmtplib

from app.context import AppContext
from app.models import OutboundKind, OutboxState
from app.services import email_outbox
from app.services.attachments import storage_path, write_blob
from app.services.email_outbox import OutboundData
from channels.email.render import (
    OutboundAttachment,
    ReplyContext,
    render_auto_ack,
    render_reply,
)
from channels.email.thread_keys import make_token, plus_address, token_key

log = logging.getLogger(__name__)


class PermanentFailure(Exception):
    """The relay rejected the message for good (5xx)."""


def relay_host_port(relay: str) -> tuple[str, int]:
    host, sep, port = relay.rpartition(":")
    if not sep or not port.isdigit():
        return relay, 25
    return host.strip("[]"), int(port)


class OutboxWorker:
    """A `Service`: sends due outbox rows; woken at once when a reply commits."""

    name = "email-outbox"

    def __init__(
        self,
        *,
        poll_seconds: float = 5.0,
        retry_base_seconds: float = 30.0,
        lease: timedelta = timedelta(minutes=10),
        send_timeout: float = 60.0,
    ) -> None:
        self.poll_seconds = poll_seconds
        self.retry_base_seconds = retry_base_seconds
        self.lease = lease
        self.send_timeout = send_timeout
        self._wake = asyncio.Event()
        self._stopping = False
        self._task: asyncio.Task[None] | None = None
        self.ctx: AppContext | None = None

    def wake(self) -> None:
        self._wake.set()

    async def start(self, ctx: AppContext) -> None:
        self.ctx = ctx
        email_outbox.install()
        email_outbox.wakers.append(self.wake)
        async with ctx.uow() as uow:
            recovered = await email_outbox.recover_interrupted(uow, self.lease)
            await uow.commit()
        if recovered:
            log.warning("%d outbound mails were interrupted mid-send; marked failed", recovered)
        self._task = ctx.spawn(self._run(), "email-outbox")

    async def stop(self) -> None:
        self._stopping = True
        self.wake()
        with contextlib.suppress(ValueError):
            email_outbox.wakers.remove(self.wake)
        if self._task is not None:
            # Let an in-flight send finish and record its outcome (bounded by the timeout).
            with contextlib.suppress(asyncio.CancelledError, TimeoutError):
                await asyncio.wait_for(asyncio.shield(self._task), self.send_timeout + 5)
            self._task.cancel()

    async def _run(self) -> None:
        assert self.ctx is not None
        while not self._stopping:
            self._wake.clear()
            handled = 0
            if self.ctx.settings.smtp_relay:
                try:
                    handled = await self.run_once()
                except Exception:
                    log.exception("outbox pass failed")
            if handled or self._stopping:
                continue
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.poll_seconds)

    async def run_once(self) -> int:
        """Claim due rows and send them; returns how many were handled."""
        assert self.ctx is not None
        async with self.ctx.uow() as uow:
            ids = await email_outbox.claim_due(uow)
            await uow.commit()
        for outbound_id in ids:
            await self._deliver(outbound_id)
        return len(ids)

    async def _deliver(self, outbound_id: int) -> None:
        assert self.ctx is not None
        async with self.ctx.read_sessions() as session:
            data = await email_outbox.load_outbound(session, outbound_id)
        if data is None:
            return
        state, error = OutboxState.sent, ""
        try:
            raw = await self._raw(data)
            await self._send(data, raw)
        except PermanentFailure as exc:
            state, error = OutboxState.failed, str(exc)
        except Exception as exc:  # network, timeouts, 4xx: try again later
            state, error = OutboxState.pending, f"{type(exc).__name__}: {exc}"
        async with self.ctx.uow() as uow:
            final = await email_outbox.settle(
                uow, outbound_id, state, error, retry_base=self.retry_base_seconds
            )
            await uow.commit()
        if final is not OutboxState.sent:
            log.warning("outbound mail %s: %s (%s)", outbound_id, final.value, error)

    async def _raw(self, data: OutboundData) -> bytes:
        assert self.ctx is not None
        data_dir = self.ctx.settings.data_dir
        if data.raw_key:
            return storage_path(data_dir, data.raw_key).read_bytes()
        message = self.render(data)
        raw = message.as_bytes()
        key, _ = write_blob(data_dir, data.workspace_id, raw)
        async with self.ctx.uow() as uow:
            await email_outbox.record_rendered(
                uow, data.id, raw_key=key, size=len(raw), subject=str(message["Subject"])
            )
            await uow.commit()
        return raw

    def render(self, data: OutboundData) -> EmailMessage:
        assert self.ctx is not None
        token = make_token(token_key(self.ctx.settings.secret), data.ticket_id)
        files = [
            OutboundAttachment(
                a.filename,
                a.content_type,
                storage_path(self.ctx.settings.data_dir, a.storage_key).read_bytes(),
            )
            for a in data.attachments
        ]
        reply_ctx = ReplyContext(
            inbox_address=data.inbox_address,
            inbox_name=data.inbox_name,
            sender_name=data.sender_name,
            to=data.to,
            cc=data.cc,
            ticket_number=data.ticket_number,
            subject=data.ticket_subject,
            message_id=data.message_id,
            reply_to=plus_address(data.inbox_address, token),
            in_reply_to=data.in_reply_to,
            references=data.references,
            locale=data.locale,
            attachments=files,
        )
        if data.kind is OutboundKind.auto_ack:
            return render_auto_ack(reply_ctx, data.customer_name)
        return render_reply(reply_ctx, data.body, first_message=data.first_message)

    async def _send(self, data: OutboundData, raw: bytes) -> None:
        assert self.ctx is not None and self.ctx.settings.smtp_relay
        host, port = relay_host_port(self.ctx.settings.smtp_relay)
        # RFC 3834 3.3: automatic responses go out with a null return path, so a
        # bounce of the auto-ack can never trigger another automatic message.
        sender = "" if data.kind is OutboundKind.auto_ack else data.inbox_address
        try:
            client = aiosmtplib.SMTP(
                hostname=host, port=port, timeout=self.send_timeout, start_tls=None
            )
            async with client:
                await client.sendmail(sender, [*data.to, *data.cc], raw)
        except aiosmtplib.SMTPRecipientsRefused as exc:
            codes = [r.code for r in exc.recipients]
            if codes and all(500 <= c < 600 for c in codes):
                raise PermanentFailure(f"recipients refused: {exc}") from exc
            raise
        except aiosmtplib.SMTPResponseException as exc:
            if 500 <= exc.code < 600:
                raise PermanentFailure(f"{exc.code} {exc.message}") from exc
            raise
