"""Coalescing of streamed deltas: at most one frame per interval per reply, the first one at once."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable


class Coalescer:
    def __init__(self, send: Callable[[str], None], interval_s: float) -> None:
        self._send = send
        self._interval = interval_s
        self._buf: list[str] = []
        self._last = 0.0
        self._timer: asyncio.TimerHandle | None = None

    def add(self, text: str) -> None:
        if not text:
            return
        self._buf.append(text)
        if self._timer is not None:
            return
        wait = self._last + self._interval - time.monotonic()
        if wait <= 0:
            self.flush()
        else:
            self._timer = asyncio.get_running_loop().call_later(wait, self.flush)

    def flush(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._buf:
            text = "".join(self._buf)
            self._buf.clear()
            self._last = time.monotonic()
            self._send(text)
