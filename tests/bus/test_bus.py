"""The bus contract, on the memory backend and on Redis (two instances = two processes)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest

from app.bus import EventBus, MemoryBus, SubscriptionOverflow
from tests.conftest import REDIS_URL

BusPair = tuple[EventBus, EventBus]


async def _memory_pair() -> BusPair:
    bus = MemoryBus()
    return bus, bus


async def _redis_pair() -> BusPair:
    if not REDIS_URL:
        pytest.skip("HELPDESK_TEST_REDIS_URL is not set")
    from app.bus.redis import RedisBus

    return RedisBus(REDIS_URL), RedisBus(REDIS_URL)


@pytest.fixture(params=["memory", "redis"])
async def buses(request: pytest.FixtureRequest) -> AsyncIterator[BusPair]:
    """(subscriber side, publisher side): one bus twice for memory, two RedisBus
    instances (as two app processes would have) for Redis."""
    make: Callable[[], Awaitable[BusPair]] = (
        _memory_pair if request.param == "memory" else _redis_pair
    )
    sub_bus, pub_bus = await make()
    started = [sub_bus] if sub_bus is pub_bus else [sub_bus, pub_bus]
    for bus in started:
        await bus.start()
    try:
        yield sub_bus, pub_bus
    finally:
        for bus in started:
            await bus.stop()


@pytest.fixture
def topic() -> Callable[[str], str]:
    # Several helpers share one Redis: every test uses its own topic names.
    run = uuid.uuid4().hex[:8]
    return lambda name: f"test.{run}.{name}"


async def test_publish_reaches_only_subscribed_topics(
    buses: BusPair, topic: Callable[[str], str]
) -> None:
    sub_bus, pub_bus = buses
    sub = await sub_bus.subscribe([topic("a")])
    await pub_bus.publish(topic("b"), {"n": 0})
    await pub_bus.publish(topic("a"), {"n": 1, "nested": {"x": [1, "é"]}})
    assert await asyncio.wait_for(sub.get(), 5) == {"n": 1, "nested": {"x": [1, "é"]}}
    assert sub.get_nowait() is None
    await sub.close()


async def test_add_and_remove_topics(buses: BusPair, topic: Callable[[str], str]) -> None:
    sub_bus, pub_bus = buses
    sub = await sub_bus.subscribe([topic("a")])
    await sub.add_topics([topic("b")])
    await pub_bus.publish(topic("b"), {"n": 1})
    assert await asyncio.wait_for(sub.get(), 5) == {"n": 1}
    await sub.remove_topics([topic("a")])
    await pub_bus.publish(topic("a"), {"n": 2})
    await pub_bus.publish(topic("b"), {"n": 3})
    # Messages arrive in publish order, so "a" was skipped if "b"'s comes next.
    assert await asyncio.wait_for(sub.get(), 5) == {"n": 3}
    assert sub.topics == {topic("b")}
    await sub.close()


async def test_several_subscribers_of_one_topic_each_get_every_message(
    buses: BusPair, topic: Callable[[str], str]
) -> None:
    sub_bus, pub_bus = buses
    first = await sub_bus.subscribe([topic("a")])
    second = await sub_bus.subscribe([topic("a")])
    for n in range(3):
        await pub_bus.publish(topic("a"), {"n": n})
    for sub in (first, second):
        got = [await asyncio.wait_for(sub.get(), 5) for _ in range(3)]
        assert got == [{"n": 0}, {"n": 1}, {"n": 2}]
    # Closing one subscriber leaves the topic alive for the other.
    await first.close()
    await pub_bus.publish(topic("a"), {"n": 9})
    assert await asyncio.wait_for(second.get(), 5) == {"n": 9}
    await second.close()


async def test_overflow_marks_only_the_slow_subscriber(
    buses: BusPair, topic: Callable[[str], str]
) -> None:
    sub_bus, pub_bus = buses
    slow = await sub_bus.subscribe([topic("a")], maxsize=3)
    fast = await sub_bus.subscribe([topic("a")], maxsize=100)
    for n in range(10):
        # Publishing never waits for a full queue.
        await asyncio.wait_for(pub_bus.publish(topic("a"), {"n": n}), 5)
    got = [await asyncio.wait_for(fast.get(), 5) for _ in range(10)]
    assert got == [{"n": n} for n in range(10)]
    assert slow.overflowed
    # The slow one learns at once (not after draining a stale backlog).
    with pytest.raises(SubscriptionOverflow):
        await asyncio.wait_for(slow.get(), 5)
    await pub_bus.publish(topic("a"), {"n": 10})
    assert await asyncio.wait_for(fast.get(), 5) == {"n": 10}
    await slow.close()
    await fast.close()


async def test_closed_subscription_receives_nothing(
    buses: BusPair, topic: Callable[[str], str]
) -> None:
    sub_bus, pub_bus = buses
    gone = await sub_bus.subscribe([topic("a")])
    stays = await sub_bus.subscribe([topic("a")])
    await gone.close()
    await pub_bus.publish(topic("a"), {"n": 1})
    assert await asyncio.wait_for(stays.get(), 5) == {"n": 1}
    assert gone.get_nowait() is None
    await stays.close()


async def test_publish_right_after_subscribe_is_never_lost(
    buses: BusPair, topic: Callable[[str], str]
) -> None:
    """subscribe() returns only once the backend listens: a caller may subscribe, replay
    from the database, then go live without a hole in between."""
    sub_bus, pub_bus = buses
    for n in range(30):
        sub = await sub_bus.subscribe([topic(f"fresh{n}")])
        await pub_bus.publish(topic(f"fresh{n}"), {"n": n})
        assert await asyncio.wait_for(sub.get(), 5) == {"n": n}
        await sub.close()


async def test_on_ready_announces_every_arrival_without_a_waiting_reader(
    buses: BusPair, topic: Callable[[str], str]
) -> None:
    """The websockets drain their subscription from a task started on demand: the
    callback fires in the publisher's call for every arrival, and for an overflow."""
    sub_bus, pub_bus = buses
    sub = await sub_bus.subscribe([topic("a")], maxsize=2)
    arrivals: list[bool] = []
    announced = asyncio.Event()

    def ready() -> None:
        arrivals.append(sub.ready)
        announced.set()

    sub.on_ready = ready
    assert not sub.ready
    await pub_bus.publish(topic("a"), {"n": 1})
    await asyncio.wait_for(announced.wait(), 5)
    assert arrivals == [True]
    assert sub.get_nowait() == {"n": 1}
    assert not sub.ready and sub.get_nowait() is None
    for n in range(3):  # one more than fits
        await pub_bus.publish(topic("a"), {"n": n})
    for _ in range(300):
        if len(arrivals) == 4:
            break
        await asyncio.sleep(0.01)
    assert len(arrivals) == 4 and sub.ready and sub.overflowed
    with pytest.raises(SubscriptionOverflow):
        sub.get_nowait()
    await sub.close()


async def test_installations_sharing_a_redis_server_never_hear_each_other(
    topic: Callable[[str], str],
) -> None:
    """Redis pub/sub ignores the database number; topics are named by ids, so without
    a namespace one installation's consoles would be shown another's ticket events.
    Buses hear each other only with the same database and namespace."""
    if not REDIS_URL:
        pytest.skip("HELPDESK_TEST_REDIS_URL is not set")
    from redis.asyncio.connection import parse_url

    from app.bus.redis import RedisBus

    db = int(parse_url(REDIS_URL).get("db", 0))
    base = REDIS_URL.rsplit("/", 1)[0] if REDIS_URL.count("/") > 2 else REDIS_URL
    other_db = f"{base}/{(db + 1) % 16}"
    listener = RedisBus(REDIS_URL)
    same = RedisBus(REDIS_URL)
    strangers = [RedisBus(other_db), RedisBus(REDIS_URL, namespace="staging")]
    buses = [listener, same, *strangers]
    for bus in buses:
        await bus.start()
    try:
        sub = await listener.subscribe([topic("ticket:5")])
        for n, stranger in enumerate(strangers):
            await stranger.publish(topic("ticket:5"), {"from": f"stranger {n}"})
        # Published after the strangers' (each awaited): it arrives after anything
        # of theirs would have.
        await same.publish(topic("ticket:5"), {"from": "same installation"})
        assert await asyncio.wait_for(sub.get(), 5) == {"from": "same installation"}
        assert sub.get_nowait() is None
        await sub.close()
    finally:
        for bus in buses:
            await bus.stop()
