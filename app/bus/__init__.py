"""Event bus: the memory backend for one process, Redis pub/sub for several."""

from __future__ import annotations

from app.bus.base import EventBus, Subscription, SubscriptionOverflow
from app.bus.memory import MemoryBus


def create_bus(redis_url: str | None, redis_namespace: str | None = None) -> EventBus:
    if redis_url:
        from app.bus.redis import RedisBus

        return RedisBus(redis_url, redis_namespace)
    return MemoryBus()


__all__ = ["EventBus", "MemoryBus", "Subscription", "SubscriptionOverflow", "create_bus"]
