"""The one way the server opens Redis: a client whose pool waits for a free connection instead of failing.

redis-py's default async pool refuses a command at once (`MaxConnectionsError`) once its connections are all in
use; under load (a hundred replies appending frames, rate-limit checks, lease renewals) that made a node drop
frames, let requests through its rate limits and let its leases lapse. This pool holds up to `max_connections`
and makes a command wait up to `timeout_s` for one of them, which a busy node's commands always get in time.
"""

from __future__ import annotations

from typing import Any

MAX_CONNECTIONS = 64


def open_redis(url: str, timeout_s: float, max_connections: int = MAX_CONNECTIONS, *, retry: bool = True) -> Any:
    """An asyncio Redis client on `url` (its `aclose` closes the pool too). With `retry=False` a dropped
    connection is an error at once instead of being reconnected behind the caller's back (redis-py retries three
    times with a backoff by default): a pub/sub connection that reconnects by itself has lost the messages sent
    meanwhile, and its owner must know when that happened."""
    import redis.asyncio as redis

    extra: dict[str, Any] = {}
    if not retry:
        from redis.asyncio.retry import Retry
        from redis.backoff import NoBackoff

        extra["retry"] = Retry(NoBackoff(), 0)
    pool = redis.BlockingConnectionPool.from_url(url, max_connections=max_connections, timeout=timeout_s,
                                                 socket_timeout=timeout_s, socket_connect_timeout=timeout_s, **extra)
    return redis.Redis.from_pool(pool)
