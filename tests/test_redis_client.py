"""The server's Redis client waits for a free connection when all are busy, where redis-py's default pool fails:
under load (bench/nodes.py, 200 replies on one node) that failure dropped frames, let requests past the rate
limits and let leases lapse while their replies were still streaming."""

from __future__ import annotations

import asyncio

import pytest
import redis.asyncio as redis
from redis.exceptions import MaxConnectionsError

from widget_server.backends.redis_client import open_redis

REDIS = "redis://127.0.0.1:6379/0"


async def _busy(client: redis.Redis, n: int) -> list[object]:
    # each command holds its connection for 50 ms (a blocking pop on a key nobody pushes to)
    return await asyncio.gather(*(client.blpop([f"test:redis-client:{i}"], timeout=0.05) for i in range(n)))


def test_more_commands_than_connections_wait_their_turn() -> None:
    async def run() -> list[object]:
        client = open_redis(REDIS, timeout_s=5, max_connections=2)
        try:
            return await _busy(client, 12)
        finally:
            await client.aclose()
    assert asyncio.run(run()) == [None] * 12


def test_the_default_pool_would_have_failed_them() -> None:
    async def run() -> None:
        client = redis.Redis.from_pool(redis.ConnectionPool.from_url(REDIS, max_connections=2))
        try:
            await _busy(client, 12)
        finally:
            await client.aclose()
    with pytest.raises(MaxConnectionsError):
        asyncio.run(run())
