"""Sign-in rate limiting: a sliding window of failed attempts per (client IP, email).

In-process on purpose: a multi-node deployment limits per node, which still caps
guessing at N nodes x the limit; a shared limiter can replace this class.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable

MAX_KEYS = 50_000


class LoginLimiter:
    def __init__(
        self,
        max_failures: int = 5,
        window_seconds: float = 15 * 60,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.max_failures = max_failures
        self.window = window_seconds
        self.clock = clock
        self._failures: dict[tuple[str, str], deque[float]] = {}

    @staticmethod
    def key(ip: str, email: str) -> tuple[str, str]:
        return ip, email.strip().lower()[:254]

    def _recent(self, key: tuple[str, str]) -> deque[float]:
        hits = self._failures.get(key)
        if hits is None:
            return deque()
        cutoff = self.clock() - self.window
        while hits and hits[0] <= cutoff:
            hits.popleft()
        if not hits:
            del self._failures[key]
        return hits

    def retry_after(self, ip: str, email: str) -> int:
        """Seconds until another attempt is allowed; 0 when allowed now."""
        hits = self._recent(self.key(ip, email))
        if len(hits) < self.max_failures:
            return 0
        return max(1, int(hits[0] + self.window - self.clock()) + 1)

    def failed(self, ip: str, email: str) -> None:
        key = self.key(ip, email)
        if key not in self._failures and len(self._failures) >= MAX_KEYS:
            # Bounded memory: forget the oldest key rather than grow without limit.
            self._failures.pop(next(iter(self._failures)))
        self._recent(key)
        self._failures.setdefault(key, deque()).append(self.clock())

    def succeeded(self, ip: str, email: str) -> None:
        self._failures.pop(self.key(ip, email), None)
