"""Which ticket does an inbound mail belong to? Pure helpers and the decision itself.

Order (strongest first):
1. a signed plus-address token in a recipient (`support+<token>@domain`) that we put
   in Reply-To: it names the ticket and carries an HMAC, so it cannot be guessed;
2. In-Reply-To / References against Message-IDs we stored (both directions);
3. a `[#<number>]` subject tag, accepted only from an address already on the ticket,
   because ticket numbers are small, sequential and easy to guess.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from enum import StrEnum

TOKEN_SIG_CHARS = 16  # base32: 80 bits of HMAC, lower-case so case-folding MTAs keep it valid
_TOKEN = re.compile(r"^t(\d{1,12})-([a-z2-7]{16})$")
_SUBJECT_TAG = re.compile(r"\[#(\d{1,12})\]")
_TAG_ANYWHERE = re.compile(r"\s*\[#\d{1,12}\]\s*")


def token_key(secret: bytes) -> bytes:
    """A key used only for reply tokens (domain-separated from other uses of the secret)."""
    return hmac.new(secret, b"helpdesk/email-reply-token/v1", hashlib.sha256).digest()


def _signature(key: bytes, ticket_id: int) -> str:
    mac = hmac.new(key, f"ticket:{ticket_id}".encode(), hashlib.sha256).digest()
    return base64.b32encode(mac).decode().lower()[:TOKEN_SIG_CHARS]


def make_token(key: bytes, ticket_id: int) -> str:
    return f"t{ticket_id}-{_signature(key, ticket_id)}"


def verify_token(key: bytes, token: str) -> int | None:
    """The ticket id a token names, or None when it is malformed or forged."""
    match = _TOKEN.match(token.strip().lower())
    if match is None:
        return None
    ticket_id = int(match.group(1))
    if not hmac.compare_digest(_signature(key, ticket_id), match.group(2)):
        return None
    return ticket_id


def plus_address(address: str, token: str) -> str:
    """`support@x` + token -> `support+token@x` (the inbox still receives it)."""
    local, _, domain = address.rpartition("@")
    return f"{local.split('+', 1)[0]}+{token}@{domain}"


def split_plus(address: str) -> tuple[str, str | None]:
    """`support+tok@x` -> (`support@x`, `tok`); addresses compare lower-case."""
    local, at, domain = address.strip().strip("<>").rpartition("@")
    if not at:
        return address.strip().lower(), None
    base, plus, tag = local.partition("+")
    return f"{base}@{domain}".lower(), (tag if plus and tag else None)


def token_ticket_id(key: bytes, recipients: Iterable[str]) -> int | None:
    """The first recipient carrying a valid token decides."""
    for address in recipients:
        _, tag = split_plus(address)
        if tag is not None:
            ticket_id = verify_token(key, tag)
            if ticket_id is not None:
                return ticket_id
    return None


def subject_tag(subject: str) -> int | None:
    match = _SUBJECT_TAG.search(subject)
    return int(match.group(1)) if match else None


def tag_subject(subject: str, number: int) -> str:
    """Ensure exactly one `[#n]` tag, at the end of the subject (keeps Re: prefixes intact)."""
    base = _TAG_ANYWHERE.sub(" ", subject).strip()
    return f"{base} [#{number}]".strip()


def reply_subject(subject: str, number: int) -> str:
    base = subject.strip()
    if not re.match(r"^(re|aw|sv|antw)\s*:", base, re.IGNORECASE):
        base = f"Re: {base}" if base else "Re:"
    return tag_subject(base, number)


class ThreadedBy(StrEnum):
    token = "token"
    references = "references"
    subject = "subject"
    new = "new"


@dataclass(frozen=True)
class ThreadLookups:
    """What the caller found in the database for the keys this module extracted.

    - token_ticket_id: ticket named by a *verified* token, if it exists in this workspace;
    - reference_ticket_ids: tickets owning the referenced Message-IDs, in the order of
      `ParsedEmail.thread_ids` (In-Reply-To first, then newest References);
    - subject_ticket_id / subject_ticket_addresses: the ticket numbered by the subject tag and
      the lower-case addresses allowed to use it (its contact and participants).
    """

    token_ticket_id: int | None = None
    reference_ticket_ids: Sequence[int] = ()
    subject_ticket_id: int | None = None
    subject_ticket_addresses: frozenset[str] = frozenset()


@dataclass(frozen=True)
class ThreadChoice:
    ticket_id: int | None
    by: ThreadedBy


def choose_thread(sender: str | None, lookups: ThreadLookups) -> ThreadChoice:
    if lookups.token_ticket_id is not None:
        return ThreadChoice(lookups.token_ticket_id, ThreadedBy.token)
    if lookups.reference_ticket_ids:
        return ThreadChoice(lookups.reference_ticket_ids[0], ThreadedBy.references)
    if (
        lookups.subject_ticket_id is not None
        and sender is not None
        and sender.strip().lower() in lookups.subject_ticket_addresses
    ):
        return ThreadChoice(lookups.subject_ticket_id, ThreadedBy.subject)
    return ThreadChoice(None, ThreadedBy.new)
