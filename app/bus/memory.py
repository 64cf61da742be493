"""In-process bus: the default for a single server."""

from __future__ import annotations

from collections.abc import Iterable

from app.bus.base import LocalHub, Message, Subscription


class MemoryBus:
    def __init__(self) -> None:
        self._hub = LocalHub()

    async def start(self) -> None:
        return None

    async def stop(self) -> None:
        return None

    async def publish(self, topic: str, message: Message) -> None:
        self._hub.dispatch(topic, message)

    async def subscribe(self, topics: Iterable[str], maxsize: int = 1000) -> Subscription:
        return await self._hub.subscribe(topics, maxsize)
