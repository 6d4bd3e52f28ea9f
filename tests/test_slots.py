"""Counted slots with leases, in process and in Redis (shared by several nodes): the same behaviour from both."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine
from typing import Any

import pytest
import redis

from tests.conftest import REDIS
from widget_server.backends.slots import MemorySlots, RedisSlots, Slots, open_slots

Make = Callable[..., Slots]


class Clock:
    """A clock the test moves: a lease lapses without the test waiting for it."""

    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture(params=["memory", "redis"])
def make(request: pytest.FixtureRequest, redis_prefix: str) -> Make:
    """A factory of slots of one version: `make(clock)`."""
    if request.param == "memory":
        return lambda clock: MemorySlots(clock=clock)
    return lambda clock: RedisSlots(REDIS, prefix=redis_prefix, clock=clock)


def run(body: Callable[[], Coroutine[Any, Any, None]]) -> None:
    asyncio.run(body())


def test_at_most_limit_holders_and_a_release_frees_one(make: Make) -> None:
    async def body() -> None:
        slots = make(Clock())
        got = [await slots.acquire("k", f"h{i}", limit=3, lease_s=60) for i in range(5)]
        assert got == [True, True, True, False, False]
        assert await slots.acquire("other", "h3", limit=3, lease_s=60)  # another key has its own slots
        await slots.release("k", "h1")
        assert await slots.acquire("k", "h3", limit=3, lease_s=60)
        assert not await slots.acquire("k", "h4", limit=3, lease_s=60)
        await slots.release("k", "nobody")  # not a holder: nothing freed, nothing raised
        assert not await slots.acquire("k", "h4", limit=3, lease_s=60)
        await slots.aclose()

    run(body)


def test_a_lapsed_lease_frees_its_slot(make: Make) -> None:
    """A holder that never releases (its node died) holds its slot until its lease lapses, and no longer."""

    async def body() -> None:
        clock = Clock()
        slots = make(clock)
        assert await slots.acquire("k", "dead", limit=1, lease_s=60)
        clock.now += 59.9
        assert not await slots.acquire("k", "alive", limit=1, lease_s=60)
        clock.now += 0.1
        assert await slots.acquire("k", "alive", limit=1, lease_s=60)
        assert not await slots.acquire("k", "dead", limit=1, lease_s=60)  # its slot is gone, not kept for it
        await slots.aclose()

    run(body)


def test_acquiring_again_renews_the_lease_and_takes_no_second_slot(make: Make) -> None:
    async def body() -> None:
        clock = Clock()
        slots = make(clock)
        assert await slots.acquire("k", "long", limit=2, lease_s=60)
        clock.now += 50
        assert await slots.acquire("k", "long", limit=2, lease_s=60)  # a hold longer than one lease
        assert await slots.acquire("k", "short", limit=2, lease_s=60)  # the renewal took no second slot
        clock.now += 20  # past the first lease, within the renewed one
        assert not await slots.acquire("k", "third", limit=2, lease_s=60)
        await slots.release("k", "long")
        assert await slots.acquire("k", "third", limit=2, lease_s=60)
        await slots.aclose()

    run(body)


def test_redis_slots_are_shared_between_nodes(redis_prefix: str) -> None:
    """Two nodes, each with its own client: the limit is one limit, and a dead node's slot lapses for the other."""

    async def body() -> None:
        clock = Clock()
        a, b = (RedisSlots(REDIS, prefix=redis_prefix, clock=clock) for _ in range(2))
        assert [await a.acquire("k", "a1", limit=2, lease_s=30), await b.acquire("k", "b1", limit=2, lease_s=60)] \
            == [True, True]
        assert not await a.acquire("k", "a2", limit=2, lease_s=30)
        assert not await b.acquire("k", "b2", limit=2, lease_s=30)
        await a.aclose()  # node a dies without releasing
        clock.now += 30
        assert await b.acquire("k", "b2", limit=2, lease_s=30)  # a1 lapsed; b1's longer lease still holds
        assert not await b.acquire("k", "b3", limit=2, lease_s=30)
        await b.aclose()

    run(body)


def test_a_redis_key_lives_no_longer_than_its_leases(redis_prefix: str) -> None:
    async def body() -> None:
        slots = RedisSlots(REDIS, prefix=redis_prefix)
        client = redis.Redis.from_url(REDIS)
        try:
            await slots.acquire("k", "h1", limit=2, lease_s=30)
            await slots.acquire("k", "h2", limit=2, lease_s=60)
            assert 30_000 < client.pttl(redis_prefix + "k") <= 60_000  # the longest lease
            await slots.release("k", "h1")
            await slots.release("k", "h2")
            assert not client.exists(redis_prefix + "k")  # the last holder gone: nothing left in Redis
        finally:
            client.close()
            await slots.aclose()

    run(body)


def test_unreachable_redis_grants_the_slot_and_says_so_once(caplog: pytest.LogCaptureFixture) -> None:
    """Without Redis each node keeps only its own limit (the caller's per-node bound), rather than none at all."""

    async def body() -> None:
        slots = RedisSlots("redis://127.0.0.1:1/0")
        with caplog.at_level(logging.WARNING, logger="widget_server.backends.slots"):
            assert [await slots.acquire("k", f"h{i}", limit=1, lease_s=60) for i in range(3)] == [True] * 3
            await slots.release("k", "h0")  # does not raise
        assert [r.getMessage() for r in caplog.records].count(
            "shared slots unavailable: each node keeps only its own limit") == 1
        await slots.aclose()

    run(body)


def test_the_url_chooses_the_backend() -> None:
    async def body() -> None:
        assert isinstance(open_slots(None), MemorySlots)
        shared = open_slots(REDIS)
        assert isinstance(shared, RedisSlots)
        await shared.aclose()

    run(body)
