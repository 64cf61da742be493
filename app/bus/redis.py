"""Redis pub/sub bus for several app processes sharing one PostgreSQL database.

Each process keeps one pub/sub connection and subscribes a Redis channel only
while a local subscriber wants that topic; delivery to local subscribers goes
through the same bounded hub as the memory bus.

Redis pub/sub ignores the database number: a PUBLISH reaches every subscriber of
the channel on the server, whatever database its connection selected. Two
installations on one Redis (production and staging, say, on databases 0 and 1)
would hear each other's topics, and topics are named by ids ("ticket:5"), so one
installation's consoles would be shown another's ticket events. Channel names
therefore carry a namespace: the database number of the URL unless the settings
give one (`HELPDESK_REDIS_NAMESPACE`), for installations that share a database.
"""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from collections.abc import Iterable
from typing import Any

import redis.asyncio as aioredis

from app.bus.base import LocalHub, Message, Subscription
from app.tasks import cancel_and_wait

log = logging.getLogger(__name__)
PREFIX = "helpdesk:"
SUBSCRIBE_CONFIRM_SECONDS = 5.0


class _RedisHub(LocalHub):
    def __init__(self, bus: RedisBus) -> None:
        super().__init__()
        self._bus = bus

    async def on_first(self, topic: str) -> None:
        await self._bus._subscribe_confirmed(self._bus.prefix + topic)

    async def on_last(self, topic: str) -> None:
        await self._bus._pubsub.unsubscribe(self._bus.prefix + topic)


class RedisBus:
    def __init__(self, url: str, namespace: str | None = None) -> None:
        self._url = url
        self._redis: aioredis.Redis = aioredis.from_url(url)
        if namespace is None:
            namespace = f"db{self._redis.connection_pool.connection_kwargs.get('db', 0)}"
        self.prefix = f"{PREFIX}{namespace}:"
        self._pubsub: Any = self._redis.pubsub(ignore_subscribe_messages=True)
        self._hub = _RedisHub(self)
        self._reader: asyncio.Task[None] | None = None
        self._pongs: dict[str, asyncio.Future[None]] = {}

    async def start(self) -> None:
        await self._redis.ping()
        # A pub/sub connection must exist before the reader can block on it.
        await self._pubsub.subscribe(self.prefix + "__control__")
        self._reader = asyncio.create_task(self._read(), name="redis-bus-reader")

    async def stop(self) -> None:
        await cancel_and_wait(self._reader)
        await self._pubsub.aclose()
        await self._redis.aclose()

    async def _subscribe_confirmed(self, channel: str) -> None:
        """SUBSCRIBE and wait until Redis has processed it.

        Sending the command is not enough: a PUBLISH from another connection can
        overtake it, and a caller that subscribes, then replays from the database,
        would lose an event committed in between. A PING on the same connection is
        answered only after the SUBSCRIBE, so its PONG is the confirmation."""
        await self._pubsub.subscribe(channel)
        if self._reader is None or self._reader.done():
            return
        token = uuid.uuid4().hex
        pong = asyncio.get_running_loop().create_future()
        self._pongs[token] = pong
        try:
            await self._pubsub.ping(token)
            await asyncio.wait_for(pong, SUBSCRIBE_CONFIRM_SECONDS)
        except TimeoutError:
            log.warning("redis bus: no confirmation for SUBSCRIBE %s", channel)
        finally:
            self._pongs.pop(token, None)

    async def publish(self, topic: str, message: Message) -> None:
        await self._redis.publish(self.prefix + topic, json.dumps(message, separators=(",", ":")))

    async def subscribe(self, topics: Iterable[str], maxsize: int = 1000) -> Subscription:
        return await self._hub.subscribe(topics, maxsize)

    async def _read(self) -> None:
        while True:
            try:
                raw = await self._pubsub.get_message(timeout=1.0)
            except asyncio.CancelledError:
                raise
            except Exception:  # the connection dropped; redis-py reconnects on next call
                log.exception("redis bus read failed; retrying")
                await asyncio.sleep(0.5)
                continue
            if raw is None:
                continue
            if raw.get("type") == "pong":
                data = raw.get("data")
                token = data.decode() if isinstance(data, bytes) else str(data)
                pong = self._pongs.get(token)
                if pong is not None and not pong.done():
                    pong.set_result(None)
                continue
            if raw.get("type") != "message":
                continue
            channel = raw["channel"].decode()
            if not channel.startswith(self.prefix):
                continue
            try:
                message = json.loads(raw["data"])
            except ValueError:
                log.warning("dropping non-JSON bus message on %s", channel)
                continue
            self._hub.dispatch(channel[len(self.prefix) :], message)
