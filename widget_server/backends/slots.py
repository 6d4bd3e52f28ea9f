"""Counted slots with leases: at most N holders of a key at once, in process (one node) or in Redis (shared).

A limit that must hold across nodes (webhook tries in flight to one receiver) cannot be a counter in each
process: three nodes each keeping their own 4 send 12. In Redis a key is a sorted set of holder id → lease
expiry, and one Lua script acquires (drop lapsed leases, refuse when full, add), so two nodes never both take
the last slot. A holder that dies without releasing frees its slot when its lease lapses; acquiring again as
the same holder renews its lease, for holds longer than one lease.

The backend is chosen by `WIDGET_REDIS_URL`, imported only when used. When Redis is unreachable, `acquire`
grants the slot (and logs once until Redis answers again): the caller's own per-node bound is then the only
limit, as it is on one node, which for webhooks means up to the per-node limit from each node rather than no
deliveries at all. `release` never raises; a slot it could not free lapses with its lease.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any, Protocol

from widget_server.backends.redis_client import open_redis

log = logging.getLogger(__name__)


class Slots(Protocol):
    async def acquire(self, key: str, holder: str, *, limit: int, lease_s: float) -> bool:
        """Take one of `limit` slots of `key` for `lease_s` (renewed if `holder` has one); False when all are held."""
        ...

    async def release(self, key: str, holder: str) -> None:
        """Free `holder`'s slot of `key`, if it still has one. Never raises."""
        ...

    async def aclose(self) -> None: ...


class MemorySlots:
    """Slots of this process only: the single-node default, and the twin the tests compare with Redis."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self._held: dict[str, dict[str, float]] = {}  # key → holder → lease expiry

    async def acquire(self, key: str, holder: str, *, limit: int, lease_s: float) -> bool:
        stamp = self.clock()
        held = {h: until for h, until in self._held.get(key, {}).items() if until > stamp}
        if holder not in held and len(held) >= limit:
            self._held[key] = held
            return False
        held[holder] = stamp + lease_s
        self._held[key] = held
        return True

    async def release(self, key: str, holder: str) -> None:
        held = self._held.get(key)
        if held is not None:
            held.pop(holder, None)
            if not held:
                del self._held[key]

    async def aclose(self) -> None:
        return None


# Atomic: drop lapsed leases, refuse a new holder when full, else add (or renew) this one. The key expires
# with its longest lease, so a key nobody holds any more does not stay in Redis.
ACQUIRE = """
local now, lease, limit = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if not redis.call('ZSCORE', KEYS[1], ARGV[4]) and redis.call('ZCARD', KEYS[1]) >= limit then
  return 0
end
redis.call('ZADD', KEYS[1], now + lease, ARGV[4])
if redis.call('PTTL', KEYS[1]) < lease then
  redis.call('PEXPIRE', KEYS[1], lease)
end
return 1
"""


class RedisSlots:
    """Slots shared by every node on one Redis."""

    def __init__(self, url: str, prefix: str = "widget:slots:", clock: Callable[[], float] = time.time,
                 client: Any = None) -> None:
        self.clock = clock  # Unix seconds: leases are compared across nodes, whose clocks must agree
        self._owned = client is None  # a client handed in belongs to whoever made it
        self._redis: Any = client if client is not None else open_redis(url, timeout_s=1)
        self._script = self._redis.register_script(ACQUIRE)
        self.prefix = prefix
        self._down = False  # Redis failed last time: say so once, not at every try

    async def acquire(self, key: str, holder: str, *, limit: int, lease_s: float) -> bool:
        try:
            got = await self._script(keys=[self.prefix + key],
                                     args=[int(self.clock() * 1000), int(lease_s * 1000), limit, holder])
        except Exception as exc:
            self._unavailable(exc)
            return True  # the caller's per-node bound still holds
        self._back()
        return bool(got)

    async def release(self, key: str, holder: str) -> None:
        try:
            await self._redis.zrem(self.prefix + key, holder)
        except Exception as exc:  # the slot lapses with its lease
            self._unavailable(exc)
        else:
            self._back()

    def _unavailable(self, exc: Exception) -> None:
        if not self._down:
            log.warning("shared slots unavailable: each node keeps only its own limit", extra={"error": repr(exc)})
        self._down = True

    def _back(self) -> None:
        if self._down:
            log.info("shared slots available again")
        self._down = False

    async def aclose(self) -> None:
        if self._owned:
            await self._redis.aclose()


def open_slots(redis_url: str | None, *, client: Any = None) -> Slots:
    """Slots in Redis when `redis_url` is set (on `client`, if one is shared with other users), else in process."""
    return RedisSlots(redis_url, client=client) if redis_url else MemorySlots()
