"""Per-key sliding-window rate limits, in process (one machine). A Redis version shares them across nodes."""

from __future__ import annotations

import time
from collections import deque


class MemoryRateLimiter:
    def __init__(self, limit: int, window_s: float) -> None:
        self.limit = limit
        self.window_s = window_s
        self._hits: dict[str, deque[float]] = {}

    def hit(self, key: str) -> float | None:
        """Count one hit; `None` when allowed, else the seconds until the next one would be."""
        stamp = time.monotonic()
        hits = self._hits.setdefault(key, deque())
        while hits and hits[0] <= stamp - self.window_s:
            hits.popleft()
        if len(hits) >= self.limit:
            return round(hits[0] + self.window_s - stamp, 3)
        hits.append(stamp)
        if len(self._hits) > 100_000:  # forget idle visitors
            self._hits = {k: v for k, v in self._hits.items() if v and v[-1] > stamp - self.window_s}
        return None
