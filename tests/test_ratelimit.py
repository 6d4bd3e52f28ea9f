"""Rate limits per visitor, in process and in Redis (shared by several nodes)."""

from __future__ import annotations

import asyncio
import secrets

from widget_server.backends.ratelimit import MemoryRateLimiter, RedisRateLimiter

REDIS = "redis://127.0.0.1:6379/0"


def test_redis_limit_is_shared_between_nodes() -> None:
    async def run() -> None:
        key = f"test:{secrets.token_hex(4)}"
        node_a, node_b = RedisRateLimiter(REDIS, 3, 60), RedisRateLimiter(REDIS, 3, 60)
        assert [await node_a.hit(key), await node_b.hit(key), await node_a.hit(key)] == [None, None, None]
        wait = await node_b.hit(key)
        assert wait is not None and 0 < wait <= 60
        assert await node_a.hit("other:" + key) is None  # another visitor is not affected
        await node_a.aclose()
        await node_b.aclose()

    asyncio.run(run())


class Clock:
    """A clock the test moves: the window slides without the test waiting for it."""

    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


def test_the_window_slides() -> None:
    async def run() -> None:
        key = f"test:{secrets.token_hex(4)}"
        for make in (MemoryRateLimiter, lambda limit, window, clock: RedisRateLimiter(REDIS, limit, window,
                                                                                      clock=clock)):
            clock = Clock()
            limiter = make(2, 60, clock=clock)
            assert await limiter.hit(key) is None
            clock.now += 30
            assert await limiter.hit(key) is None
            assert await limiter.hit(key) == 30.0  # the first hit leaves the window in 30 s
            clock.now += 30.001
            assert await limiter.hit(key) is None  # it has left: room for one
            assert await limiter.hit(key) is not None
            await limiter.aclose()

    asyncio.run(run())


def test_unreachable_redis_lets_messages_through() -> None:
    async def run() -> None:
        limiter = RedisRateLimiter("redis://127.0.0.1:1/0", 1, 60)
        assert await limiter.hit("k") is None and await limiter.hit("k") is None
        await limiter.aclose()

    asyncio.run(run())

