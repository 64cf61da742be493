"""The bus contract and the local fan-out hub both backends deliver through.

A subscriber owns a bounded queue. Publishing never waits on a subscriber: when a
queue is full the subscription is marked overflowed and receives no more, so its
owner closes the connection and the client resumes from its cursor. One slow
consumer can never stall the others.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from typing import Any, Protocol

Message = dict[str, Any]


class SubscriptionOverflow(Exception):
    """The subscriber fell behind and lost messages; it must resume from the database."""


class Subscription:
    def __init__(self, hub: LocalHub, topics: Iterable[str], maxsize: int) -> None:
        self._hub = hub
        self.topics: set[str] = set(topics)
        self._queue: asyncio.Queue[Message | None] = asyncio.Queue(maxsize=maxsize)
        self.overflowed = False
        self.closed = False

    def _offer(self, message: Message) -> None:
        if self.overflowed or self.closed:
            return
        try:
            self._queue.put_nowait(message)
        except asyncio.QueueFull:
            self.overflowed = True
            # Wake the reader so it notices at once instead of after the backlog.
            while not self._queue.empty():
                self._queue.get_nowait()
            self._queue.put_nowait(None)

    async def get(self) -> Message:
        message = await self._queue.get()
        if message is None:
            if self.overflowed:
                raise SubscriptionOverflow
            raise asyncio.CancelledError
        return message

    def get_nowait(self) -> Message | None:
        """Next buffered message, or None when there is none right now."""
        if self._queue.empty():
            return None
        message = self._queue.get_nowait()
        if message is None and self.overflowed:
            raise SubscriptionOverflow
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
