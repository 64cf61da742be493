"""IMAP settings of email inboxes: encrypted credentials and the UID high-water mark."""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
from collections.abc import Sequence
from typing import Any

from cryptography.fernet import Fernet, InvalidToken
from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession

from app.events import UnitOfWork
from app.models import Inbox, InboxKind, Role
from app.services import audit
from app.services.actors import Actor
from app.services.errors import Invalid
from app.services.workspaces import get_inbox

MAX_FIELD = 255
_HOST = re.compile(r"^[A-Za-z0-9.-]{1,253}$|^\[?[0-9a-fA-F:.]+\]?$")


def _fernet(secret: bytes) -> Fernet:
    # A key of its own, derived from the app secret: rotating the secret invalidates
    # stored credentials (admins re-enter them), and no other use shares this key.
    digest = hmac.new(secret, b"helpdesk/imap-credentials/v1", hashlib.sha256).digest()
    return Fernet(base64.urlsafe_b64encode(digest))


def encrypt_password(secret: bytes, password: str) -> str:
    return _fernet(secret).encrypt(password.encode()).decode()


def decrypt_password(secret: bytes, token: str) -> str:
    try:
        return _fernet(secret).decrypt(token.encode()).decode()
    except InvalidToken:
        raise Invalid(
            "stored IMAP password cannot be decrypted (was the secret key changed?)"
        ) from None


def imap_public(inbox: Inbox) -> dict[str, Any]:
    """The IMAP settings without the credential."""
    return {k: v for k, v in inbox.imap.items() if k != "password_enc"}


async def do_configure_imap(
    uow: UnitOfWork,
    actor: Actor,
    inbox_id: int,
    *,
    secret: bytes,
    host: str,
    username: str,
    password: str,
    port: int = 993,
    ssl: bool = True,
    folder: str = "INBOX",
    poll_seconds: int = 60,
    enabled: bool = True,
) -> Inbox:
    actor.require(Role.admin)
    inbox = await get_inbox(uow.session, actor.workspace_id, inbox_id)
    if inbox.kind is not InboxKind.email:
        raise Invalid("IMAP polling needs an email inbox")
    if not _HOST.match(host):
        raise Invalid("host is not a valid host name or address")
    if not 1 <= port <= 65535:
        raise Invalid("port must be 1 to 65535")
    for name, value in (("username", username), ("password", password), ("folder", folder)):
        if not value or len(value) > MAX_FIELD:
            raise Invalid(f"{name} must be 1 to {MAX_FIELD} characters")
    if not 5 <= poll_seconds <= 3600:
        raise Invalid("poll_seconds must be 5 to 3600")
    previous = inbox.imap
    same_mailbox = (previous.get("host"), previous.get("username"), previous.get("folder")) == (
        host,
        username,
        folder,
    )
    inbox.imap = {
        "enabled": enabled,
        "host": host,
        "port": port,
        "ssl": ssl,
        "username": username,
        "password_enc": encrypt_password(secret, password),
        "folder": folder,
        "poll_seconds": poll_seconds,
        # A different mailbox starts over; Message-ID dedupe keeps re-reads harmless.
        "uidvalidity": previous.get("uidvalidity") if same_mailbox else None,
        "last_uid": previous.get("last_uid", 0) if same_mailbox else 0,
        "last_error": "",
    }
    uow.session.add(inbox)
    audit.record(uow, actor, "inbox.imap", "inbox", inbox_id, {"host": host, "user": username})
    return inbox


async def imap_inboxes(session: AsyncSession) -> Sequence[Inbox]:
    """Every email inbox with IMAP polling switched on (all workspaces: the poller is global)."""
    stmt = select(Inbox).where(Inbox.kind == InboxKind.email)
    return [i for i in (await session.exec(stmt)).all() if i.imap.get("enabled")]


async def do_record_poll(
    uow: UnitOfWork,
    inbox_id: int,
    *,
    uidvalidity: int | None = None,
    last_uid: int | None = None,
    error: str | None = None,
) -> None:
    inbox = await uow.session.get(Inbox, inbox_id)
    if inbox is None:
        return
    state = dict(inbox.imap)
    if not state.get("host"):
        return  # removed meanwhile: a late report must not resurrect the settings
    if uidvalidity is not None:
        state["uidvalidity"] = uidvalidity
    if last_uid is not None:
        state["last_uid"] = last_uid
    if error is not None:
        state["last_error"] = error[:500]
    inbox.imap = state
    uow.session.add(inbox)


async def do_remove_imap(uow: UnitOfWork, actor: Actor, inbox_id: int) -> Inbox:
    """Stop fetching and forget the credentials (the inbox keeps receiving over SMTP)."""
    actor.require(Role.admin)
    inbox = await get_inbox(uow.session, actor.workspace_id, inbox_id)
    inbox.imap = {}
    uow.session.add(inbox)
    audit.record(uow, actor, "inbox.imap.remove", "inbox", inbox_id, {})
    return inbox
