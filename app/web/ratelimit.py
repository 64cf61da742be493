"""Per-caller token buckets for the REST API (pure ASGI, in memory, one process).

The caller is the bearer token, else the console session cookie, else the client
address. Keys are digests, so no secret is kept in memory longer than a request.
Several processes each enforce their own bucket; that is deliberate: the limit
protects a process, and a shared limiter would put Redis on every request.
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from collections import OrderedDict
from collections.abc import Callable

from starlette.types import ASGIApp, Receive, Scope, Send

MAX_KEYS = 10_000


class TokenBuckets:
    def __init__(
        self,
        rate: float,
        burst: int,
        *,
        clock: Callable[[], float] = time.monotonic,
        max_keys: int = MAX_KEYS,
    ) -> None:
        self.rate = rate
        self.burst = float(burst)
        self.clock = clock
        self.max_keys = max_keys
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()

    def take(self, key: str) -> float:
        """Spend one token; returns 0 when allowed, else seconds until one is available."""
        now = self.clock()
        tokens, stamp = self._buckets.pop(key, (self.burst, now))
        tokens = min(self.burst, tokens + (now - stamp) * self.rate)
        if tokens >= 1:
            self._buckets[key] = (tokens - 1, now)
            wait = 0.0
        else:
            self._buckets[key] = (tokens, now)
            wait = (1 - tokens) / self.rate
        # Least recently seen first: an idle caller's bucket is full again anyway.
        while len(self._buckets) > self.max_keys:
            self._buckets.popitem(last=False)
        return wait


def caller_key(scope: Scope) -> str:
    auth = b""
    cookie = b""
    for name, value in scope["headers"]:
        if name == b"authorization":
            auth = value
        elif name == b"cookie":
            cookie = value
    if auth:
        return "t:" + hashlib.sha256(auth).hexdigest()
    if b"hd_session=" in cookie:
        return "c:" + hashlib.sha256(cookie).hexdigest()
    client = scope.get("client") or ("?", 0)
    return "a:" + str(client[0])


class RateLimit:
    """429 with Retry-After once a caller's bucket is empty. rate <= 0 disables it."""

    def __init__(self, app: ASGIApp, *, rate: float, burst: int) -> None:
        self.app = app
        self.buckets = TokenBuckets(rate, burst) if rate > 0 else None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.buckets is None or scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        wait = self.buckets.take(caller_key(scope))
        if wait <= 0:
            await self.app(scope, receive, send)
            return
        retry = str(max(1, math.ceil(wait)))
        body = json.dumps(
            {
                "error": {
                    "code": "rate_limited",
                    "message": f"too many requests; retry in {retry} s",
                    "details": {"retry_after": int(retry)},
                }
            }
        ).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 429,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                    (b"retry-after", retry.encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})
