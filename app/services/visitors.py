"""Widget visitors: signed visitor tokens and HMAC identity verification.

A visitor token is issued by the server on first contact and kept by the widget
in the host page's localStorage. It names an anonymous visitor only; it never
grants access to a verified customer (that needs a fresh, valid identity hash
on every connection), so a shared browser cannot leak a signed-in customer's
conversations to the next person.
"""

from __future__ import annotations

import hashlib
import hmac
import time
import uuid
from dataclasses import dataclass

from itsdangerous import BadSignature, URLSafeSerializer

MAX_TOKEN_CHARS = 512
MAX_EXTERNAL_ID = 200
# An identity hash may be valid for at most this long; longer is a host-site bug.
MAX_IDENTITY_LIFETIME = 30 * 24 * 3600


@dataclass(frozen=True)
class Visitor:
    workspace_id: int
    visitor_id: str


class IdentityError(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def _serializer(secret: bytes) -> URLSafeSerializer:
    return URLSafeSerializer(secret, salt="widget-visitor")


def issue_token(secret: bytes, workspace_id: int, visitor_id: str | None = None) -> tuple[str, str]:
    """A new (token, visitor id); page views write nothing to the database."""
    visitor_id = visitor_id or uuid.uuid4().hex
    return _serializer(secret).dumps({"w": workspace_id, "v": visitor_id}), visitor_id


def read_token(secret: bytes, token: str | None, workspace_id: int) -> Visitor | None:
    """The visitor behind a token of this workspace, or None (unknown, tampered, foreign)."""
    if not token or len(token) > MAX_TOKEN_CHARS:
        return None
    try:
        data = _serializer(secret).loads(token)
    except BadSignature:
        return None
    if not isinstance(data, dict) or data.get("w") != workspace_id:
        return None
    visitor_id = data.get("v")
    if not isinstance(visitor_id, str) or not 1 <= len(visitor_id) <= 64:
        return None
    return Visitor(workspace_id=workspace_id, visitor_id=visitor_id)


def identity_hash(secret: str, external_id: str, expires: int) -> str:
    """hex HMAC-SHA256(secret, id + ":" + expires): what the host site's server computes."""
    message = f"{external_id}:{expires}".encode()
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def verify_identity(
    secret: str | None,
    external_id: object,
    expires: object,
    given_hash: object,
    *,
    now: float | None = None,
) -> str:
    """The verified external id, or IdentityError(identity_invalid | identity_expired)."""
    if not secret:
        raise IdentityError("identity_invalid", "this inbox does not verify identities")
    if not isinstance(external_id, str) or not 1 <= len(external_id) <= MAX_EXTERNAL_ID:
        raise IdentityError("identity_invalid", f"id must be 1 to {MAX_EXTERNAL_ID} characters")
    if isinstance(expires, bool) or not isinstance(expires, int):
        raise IdentityError("identity_invalid", "expires must be a Unix time in seconds")
    if not isinstance(given_hash, str) or len(given_hash) != 64:
        raise IdentityError("identity_invalid", "hash must be 64 hex characters")
    expected = identity_hash(secret, external_id, expires)
    # Constant-time: the comparison must not tell an attacker how many characters matched.
    if not hmac.compare_digest(expected, given_hash.lower()):
        raise IdentityError("identity_invalid", "identity hash does not match")
    current = time.time() if now is None else now
    if expires <= current:
        raise IdentityError("identity_expired", "identity hash has expired")
    if expires > current + MAX_IDENTITY_LIFETIME:
        raise IdentityError("identity_invalid", "expires is too far in the future")
    return external_id


def visitor_topic(workspace_id: int, visitor_id: str) -> str:
    """Tabs of one visitor learn here that the visitor's contact now exists."""
    return f"ws.{workspace_id}.visitor.{visitor_id}"
