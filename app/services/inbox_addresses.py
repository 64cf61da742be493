"""Which inbox an address or a widget key names, remembered for a few seconds.

Every SMTP recipient (RCPT) and every widget connection asks this; without a cache
that is a read transaction each, more than the rest of the RCPT handling costs and
an Inbox row per idle widget connection.
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from app.services.expiring import E, ExpiringCache

if TYPE_CHECKING:
    from app.models import Inbox

# How long another process's inbox change may take to reach this one.
INBOX_CACHE_TTL_SECONDS = 5.0

_caches: weakref.WeakSet[ExpiringCache[Any]] = weakref.WeakSet()
# Bumped by every inbox change in this process: a lookup that started before the
# change must not store what it read (it may have read the old row).
_generation = 0


def address_key(address: str) -> str | None:
    """`Support+anything@X` -> `support@x`, the address an inbox is stored under."""
    local, at, domain = address.strip().strip("<>").rpartition("@")
    if not at:
        return None
    return f"{local.split('+', 1)[0]}@{domain}".lower()


@dataclass
class _Entry:
    inbox_id: int | None
    expires: float


class _InboxCache(ExpiringCache[E]):
    """Registered so that `forget_inbox_addresses` empties it."""

    def __init__(self, ttl: float = INBOX_CACHE_TTL_SECONDS, **kwargs: Any) -> None:
        super().__init__(ttl, **kwargs)
        _caches.add(self)

    @staticmethod
    def generation() -> int:
        """Take before the lookup, hand to `put`."""
        return _generation


class InboxAddressCache(_InboxCache[_Entry]):
    """address key -> inbox id (None: no inbox), valid for `ttl` seconds.

    Unknown addresses are remembered too (dictionary attacks ask for many). An inbox
    created, changed or deleted in this process empties every cache at once
    (`forget_inbox_addresses`); elsewhere it takes effect within `ttl`.
    """

    def put(self, key: str, inbox_id: int | None, generation: int) -> None:
        if generation == _generation:
            self.store(key, _Entry(inbox_id, self.clock() + self.ttl))


@dataclass
class _Inbox:
    inbox: Inbox | None
    expires: float


class InboxKeyCache(_InboxCache[_Inbox]):
    """widget public key -> its Inbox row (None: no such inbox), valid for `ttl` seconds,
    emptied like `InboxAddressCache`. The rows are shared by every connection of the
    inbox: read them, never change them."""

    def put(self, key: str, inbox: Inbox | None, generation: int) -> None:
        if generation == _generation:
            self.store(key, _Inbox(inbox, self.clock() + self.ttl))


def forget_inbox_addresses() -> None:
    global _generation
    _generation += 1
    for cache in list(_caches):
        cache.clear()
