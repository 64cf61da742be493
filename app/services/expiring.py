"""A small bounded map whose entries expire: the per-process caches in front of hot lookups."""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Generic, Protocol, TypeVar


class Expiring(Protocol):
    expires: float  # on the cache's clock


E = TypeVar("E", bound=Expiring)


class ExpiringCache(Generic[E]):
    """key -> entry until `entry.expires`; the least recently stored go past `max_entries`."""

    def __init__(
        self,
        ttl: float,
        *,
        max_entries: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.ttl = ttl
        self.max_entries = max_entries
        self.clock = clock
        self._known: OrderedDict[str, E] = OrderedDict()

    def get(self, key: str) -> E | None:
        entry = self._known.get(key)
        if entry is not None and entry.expires <= self.clock():
            del self._known[key]
            return None
        return entry

    def store(self, key: str, entry: E) -> None:
        self._known[key] = entry
        self._known.move_to_end(key)
        while len(self._known) > self.max_entries:
            self._known.popitem(last=False)

    def discard(self, key: str) -> None:
        self._known.pop(key, None)

    def clear(self) -> None:
        self._known.clear()
