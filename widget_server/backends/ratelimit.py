"""Per-key sliding-window rate limits: in process (one machine) or in Redis (several nodes share them).

The backend is chosen by `WIDGET_REDIS_URL`, imported only when used. A limiter whose Redis is unreachable
lets traffic through and logs it: limiting abuse must not take the chat down with it.
"""

from __future__ import annotations

import logging
import secrets
import time
from collections import deque
from collections.abc import Callable
from typing import Any, Protocol

from widget_server.backends.redis_client import open_redis

log = logging.getLogger(__name__)


class RateLimiter(Protocol):
    async def hit(self, key: str) -> float | None:
        """Count one hit; `None` when allowed, else the seconds until the next one would be."""
        ...

    async def aclose(self) -> None: ...


class MemoryRateLimiter:
    def __init__(self, limit: int, window_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.limit = limit
        self.window_s = window_s
        self.clock = clock
        self._hits: dict[str, deque[float]] = {}

    async def hit(self, key: str) -> float | None:
        stamp = self.clock()
        hits = self._hits.setdefault(key, deque())
        while hits and hits[0] <= stamp - self.window_s:
            hits.popleft()
        if len(hits) >= self.limit:
            return round(hits[0] + self.window_s - stamp, 3)
        hits.append(stamp)
        if len(self._hits) > 100_000:  # forget idle visitors
            self._hits = {k: v for k, v in self._hits.items() if v and v[-1] > stamp - self.window_s}
        return None

    async def aclose(self) -> None:
        return None


# Atomic: drop hits older than the window, refuse when full (answering the wait), else record this hit.
SLIDING_WINDOW = """
local now, window, limit = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
if redis.call('ZCARD', KEYS[1]) >= limit then
  local oldest = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
  return tostring(tonumber(oldest[2]) + window - now)
end
redis.call('ZADD', KEYS[1], now, ARGV[4])
redis.call('PEXPIRE', KEYS[1], window)
return false
"""


class RedisRateLimiter:
    def __init__(self, url: str, limit: int, window_s: float, prefix: str = "widget:rl:",
                 clock: Callable[[], float] = time.time, client: Any = None) -> None:
        self.clock = clock  # Unix seconds: the window is kept in Redis, shared by nodes whose clocks agree
        self._owned = client is None  # a client handed in belongs to whoever made it (`Limits`)
        self._redis: Any = client if client is not None else open_redis(url, timeout_s=1)
        self._script = self._redis.register_script(SLIDING_WINDOW)
        self.limit = limit
        self.window_ms = int(window_s * 1000)
        self.prefix = prefix

    async def hit(self, key: str) -> float | None:
        now_ms = self.clock() * 1000
        try:
            wait = await self._script(keys=[self.prefix + key],
                                      args=[now_ms, self.window_ms, self.limit, f"{now_ms}:{secrets.token_hex(4)}"])
        except Exception as exc:
            log.warning("rate limiter unavailable, letting the request through", extra={"error": repr(exc)})
            return None
        return None if wait is None else round(float(wait) / 1000, 3)

    async def aclose(self) -> None:
        if self._owned:
            await self._redis.aclose()


class Limits:
    """Every rate limit of the server by name, each with its own budget: the backend is chosen once (Redis when
    `WIDGET_REDIS_URL` is set, sharing one client; in process otherwise)."""

    def __init__(self, redis_url: str | None, rules: dict[str, tuple[int, float]]) -> None:
        self._limiters: dict[str, RateLimiter] = {}
        self._redis: Any = None
        if redis_url:
            self._redis = open_redis(redis_url, timeout_s=1)
        for name, (limit, window_s) in rules.items():
            self._limiters[name] = (RedisRateLimiter(redis_url, limit, window_s, prefix=f"widget:rl:{name}:",
                                                     client=self._redis)
                                    if redis_url else MemoryRateLimiter(limit, window_s))

    async def hit(self, rule: str, key: str) -> float | None:
        """Count one hit of `rule` for `key`: None when allowed, else the seconds until one would be."""
        return await self._limiters[rule].hit(key)

    async def aclose(self) -> None:
        if self._redis is not None:
            await self._redis.aclose()
