"""The bus contract and the local fan-out hub both backends deliver through.

A subscriber owns a bounded queue. Publishing never waits on a subscriber: when a
queue is full the subscription is marked overflowed and receives no more, so its
owner closes the connection and the client resumes from its cursor. One slow
consumer can never stall the others.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable, Iterable
from typing import Any, Protocol

Message = dict[str, Any]


class SubscriptionOverflow(Exception):
    """The subscriber fell behind and lost messages; it must resume from the database."""


class Subscription:
    """A subscriber's buffer: read with `get`, or set `on_ready` and drain with `get_nowait`.

    Thousands of idle websockets each hold one, so it stays small: no asyncio.Queue
    (four deques even when empty), a buffer only while messages are waiting, and with
    `on_ready` no task parked on it either.
    """

    __slots__ = (
        "_buffer",
        "_hub",
        "_maxsize",
        "_waiter",
        "accept",
        "closed",
        "on_ready",
        "overflowed",
        "topics",
    )

    def __init__(self, hub: LocalHub, topics: Iterable[str], maxsize: int) -> None:
        self._hub = hub
        self.topics: set[str] = set(topics)
        self._maxsize = maxsize
        self._buffer: deque[Message] | None = None
        self._waiter: asyncio.Future[None] | None = None
        self.overflowed = False
        self.closed = False
        # Called (synchronously, from the publisher) whenever there is something to read.
        self.on_ready: Callable[[], None] | None = None
        # Called (synchronously, from the publisher) first: False drops the message.
        # Must be cheap and must not raise.
        self.accept: Callable[[Message], bool] | None = None

    def offer(self, message: Message) -> None:
        """Deliver `message` as a publish to one of its topics would (`accept` first):
        for a router that subscribed on this subscription's behalf."""
        self._offer(message)

    def _offer(self, message: Message) -> None:
        if self.overflowed or self.closed:
            return
        if self.accept is not None and not self.accept(message):
            return
        buffer = self._buffer
        if buffer is None:
            buffer = self._buffer = deque()
        if len(buffer) >= self._maxsize:
            # Wake the reader so it notices at once instead of after the backlog.
            self.overflowed = True
            self._buffer = None
        else:
            buffer.append(message)
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)
        if self.on_ready is not None:
            self.on_ready()

    @property
    def ready(self) -> bool:
        """Whether `get_nowait` has something to return (or an overflow to raise)."""
        return self.overflowed or bool(self._buffer)

    async def get(self) -> Message:
        while True:
            message = self.get_nowait()
            if message is not None:
                return message
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None

    def get_nowait(self) -> Message | None:
        """Next buffered message, or None when there is none right now."""
        if self.overflowed:
            raise SubscriptionOverflow
        buffer = self._buffer
        if not buffer:
            return None
        message = buffer.popleft()
        if not buffer:
            self._buffer = None
        return message

    async def add_topics(self, topics: Iterable[str]) -> None:
        await self._hub.add_topics(self, topics)

    async def remove_topics(self, topics: Iterable[str]) -> None:
        await self._hub.remove_topics(self, topics)

    async def close(self) -> None:
        if not self.closed:
            self.closed = True
            await self._hub.unsubscribe(self)


class LocalHub:
    """Topic -> subscriptions in this process; `on_first`/`on_last` let Redis follow."""

    def __init__(self) -> None:
        self._topics: dict[str, set[Subscription]] = {}

    async def on_first(self, topic: str) -> None:  # pragma: no cover - hook
        return None

    async def on_last(self, topic: str) -> None:  # pragma: no cover - hook
        return None

    def dispatch(self, topic: str, message: Message) -> None:
        for sub in tuple(self._topics.get(topic, ())):
            sub._offer(message)

    async def subscribe(self, topics: Iterable[str], maxsize: int = 1000) -> Subscription:
        sub = Subscription(self, (), maxsize)
        await self.add_topics(sub, topics)
        return sub

    async def add_topics(self, sub: Subscription, topics: Iterable[str]) -> None:
        for topic in topics:
            subs = self._topics.setdefault(topic, set())
            if not subs:
                await self.on_first(topic)
            subs.add(sub)
            sub.topics.add(topic)

    async def remove_topics(self, sub: Subscription, topics: Iterable[str]) -> None:
        for topic in list(topics):
            subs = self._topics.get(topic)
            sub.topics.discard(topic)
            if subs is None or sub not in subs:
                continue
            subs.discard(sub)
            if not subs:
                del self._topics[topic]
                await self.on_last(topic)

    async def unsubscribe(self, sub: Subscription) -> None:
        await self.remove_topics(sub, tuple(sub.topics))


class EventBus(Protocol):
    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    async def publish(self, topic: str, message: Message) -> None: ...

    async def subscribe(self, topics: Iterable[str], maxsize: int = 1000) -> Subscription: ...
