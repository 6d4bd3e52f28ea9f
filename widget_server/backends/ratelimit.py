"""Per-key sliding-window rate limits: in process (one machine) or in Redis (several nodes share them).

The backend is chosen by `WIDGET_REDIS_URL`, imported only when used. A limiter whose Redis is unreachable
lets traffic through and logs it: limiting abuse must not take the chat down with it.

Each check answers a `Verdict` (the quota, what is left of it, when the next unit comes back), and the verdicts of
one request are collected in `checked` (a context variable the HTTP edge opens per request), so that the
`RateLimit` headers report every limit the request was counted against wherever in the floors it was counted.
"""

from __future__ import annotations

import logging
import math
import secrets
import time
from collections import deque
from collections.abc import Callable
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any, Protocol

from widget_server.backends.redis_client import open_redis
from widget_server.errors import RateLimited

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Verdict:
    """One check of one limit: `remaining` hits left in the window after this one, `reset_s` until the oldest
    counted hit leaves the window (when one more is allowed: the wait of a refused hit)."""

    rule: str
    quota: int
    window_s: float
    remaining: int
    reset_s: float
    allowed: bool

    @property
    def wait_s(self) -> float | None:
        return None if self.allowed else self.reset_s


# The verdicts of the request being served (None outside one): a list the edge opens, every check appends to.
checked: ContextVar[list[Verdict] | None] = ContextVar("ratelimit_checked", default=None)


class RateLimiter(Protocol):
    async def check(self, key: str, rule: str = "") -> Verdict:
        """Count one hit (when allowed) and say what is left."""
        ...

    async def aclose(self) -> None: ...


class MemoryRateLimiter:
    def __init__(self, limit: int, window_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.limit = limit
        self.window_s = window_s
        self.clock = clock
        self._hits: dict[str, deque[float]] = {}

    async def check(self, key: str, rule: str = "") -> Verdict:
        stamp = self.clock()
        hits = self._hits.setdefault(key, deque())
        while hits and hits[0] <= stamp - self.window_s:
            hits.popleft()
        allowed = len(hits) < self.limit
        if allowed:
            hits.append(stamp)
        if len(self._hits) > 100_000:  # forget idle visitors
            self._hits = {k: v for k, v in self._hits.items() if v and v[-1] > stamp - self.window_s}
        reset = round(hits[0] + self.window_s - stamp, 3)
        return Verdict(rule, self.limit, self.window_s, self.limit - len(hits), reset, allowed)

    async def hit(self, key: str) -> float | None:
        """Count one hit; `None` when allowed, else the seconds until the next one would be."""
        return (await self.check(key)).wait_s

    async def aclose(self) -> None:
        return None


# Atomic: drop hits older than the window, record this hit unless the window is full; answer whether it was
# allowed, the hits now in the window and the oldest one's time (as strings: Lua numbers lose precision).
SLIDING_WINDOW = """
local now, window, limit = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
local allowed = 0
if redis.call('ZCARD', KEYS[1]) < limit then
  redis.call('ZADD', KEYS[1], now, ARGV[4])
  redis.call('PEXPIRE', KEYS[1], window)
  allowed = 1
end
local oldest = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
return {allowed, redis.call('ZCARD', KEYS[1]), oldest[2] or tostring(now)}
"""


class RedisRateLimiter:
    def __init__(self, url: str, limit: int, window_s: float, prefix: str = "widget:rl:",
                 clock: Callable[[], float] = time.time, client: Any = None) -> None:
        self.clock = clock  # Unix seconds: the window is kept in Redis, shared by nodes whose clocks agree
        self._owned = client is None  # a client handed in belongs to whoever made it (`Limits`)
        self._redis: Any = client if client is not None else open_redis(url, timeout_s=1)
        self._script = self._redis.register_script(SLIDING_WINDOW)
        self.limit = limit
        self.window_s = window_s
        self.window_ms = int(window_s * 1000)
        self.prefix = prefix

    async def check(self, key: str, rule: str = "") -> Verdict:
        now_ms = self.clock() * 1000
        try:
            allowed, count, oldest = await self._script(
                keys=[self.prefix + key], args=[now_ms, self.window_ms, self.limit, f"{now_ms}:{secrets.token_hex(4)}"])
        except Exception as exc:
            log.warning("rate limiter unavailable, letting the request through", extra={"error": repr(exc)})
            return Verdict(rule, self.limit, self.window_s, self.limit, self.window_s, True)
        reset = round(max(0.0, float(oldest) + self.window_ms - now_ms) / 1000, 3)
        return Verdict(rule, self.limit, self.window_s, max(0, self.limit - int(count)), reset, bool(allowed))

    async def hit(self, key: str) -> float | None:
        """Count one hit; `None` when allowed, else the seconds until the next one would be."""
        return (await self.check(key)).wait_s

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

    async def check(self, rule: str, key: str) -> Verdict:
        """Count one hit of `rule` for `key` (when allowed), reported to the request being served if any."""
        verdict = await self._limiters[rule].check(key, rule)
        if (seen := checked.get()) is not None:
            seen[:] = [v for v in seen if v.rule != rule] + [verdict]  # a limit checked twice: its latest state
        return verdict

    async def hit(self, rule: str, key: str) -> float | None:
        """Count one hit of `rule` for `key`: None when allowed, else the seconds until one would be."""
        return (await self.check(rule, key)).wait_s

    async def enforce(self, rule: str, key: str, what: str) -> Verdict:
        """Count one hit, or raise the 429 that names the limit and when it allows one more."""
        verdict = await self.check(rule, key)
        if not verdict.allowed:
            raise RateLimited(f"{what}: try again in {ceil_s(verdict.reset_s)} s", details=refusal(verdict))
        return verdict

    async def aclose(self) -> None:
        if self._redis is not None:
            await self._redis.aclose()


def refusal(verdict: Verdict) -> dict[str, Any]:
    """The `details` of a 429: which limit, its quota and window, and when it allows the next request."""
    return {"limit": verdict.rule, "quota": verdict.quota, "window_s": verdict.window_s,
            "retry_after_s": verdict.reset_s, "reset_s": ceil_s(verdict.reset_s)}


def ceil_s(seconds: float) -> int:
    """Whole seconds, rounded up (a header's delay: never 0 while any wait is left)."""
    return max(0, math.ceil(seconds))
