"""The conversation bus of one process: each line's log in a bounded deque, delivered to its listeners at once.

Nothing is shared, so there is no lease to hold and no other node to tell. A line nobody listens to is forgotten
after `ttl_s`; a client resuming it then gets the stored transcript, as after a restart.
"""

from __future__ import annotations

import secrets
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from widget_server.backends.bus import Frame, Listener, Out, Since, Wait, encode


class MemoryLine:
    def __init__(self, conversation_id: str, max_frames: int) -> None:
        self.conversation_id = conversation_id
        self.seq = 0
        self.epoch: str | None = secrets.token_hex(6)
        self.log: deque[Out] = deque(maxlen=max_frames)
        self.listeners: set[Listener] = set()
        self.used = time.monotonic()
        self.known = False  # whether a client has seen the line before (its epoch is worth resuming)
        self._client_ids: deque[str] = deque(maxlen=256)
        self._token = ""

    def emit(self, frame: Frame) -> None:
        self.seq += 1
        text = encode({"seq": self.seq, **frame})
        self.log.append((self.seq, text))
        self.used = time.monotonic()
        for listener in list(self.listeners):
            listener.frame(self.seq, text)

    def control(self, message: dict[str, Any]) -> None:
        return None  # no other node

    async def join(self, listener: Listener) -> None:
        self.listeners.add(listener)

    async def leave(self, listener: Listener) -> None:
        self.listeners.discard(listener)
        self.used = time.monotonic()

    async def since(self, last_seq: int | None) -> Since:
        known, self.known = self.known, True
        assert self.epoch is not None
        if last_seq is None or not known or not self._covers(last_seq):
            return Since(known, self.epoch, self.seq, None)
        return Since(True, self.epoch, self.seq, [f for f in self.log if f[0] > last_seq])

    def _covers(self, last_seq: int) -> bool:
        if last_seq > self.seq or last_seq < 0:
            return False
        return last_seq == self.seq or (bool(self.log) and self.log[0][0] <= last_seq + 1)

    async def first_time(self, client_id: str) -> bool:
        if client_id in self._client_ids:
            return False
        self._client_ids.append(client_id)
        return True

    async def lock(self, info: Callable[[], dict[str, Any]], wait: Wait) -> tuple[str, dict[str, Any] | None]:
        info()
        return self._token, None  # the channel's own lock orders this node's replies; there is no other node

    async def unlock(self, token: str) -> None:
        self._token = token

    def cancel(self, message_id: str) -> None:
        return None  # a reply of this conversation can only run here


class MemoryBus:
    shared = False
    kind = "memory"
    available = True

    def __init__(self, node: str, *, max_frames: int, ttl_s: float) -> None:
        self.node = node
        self.max_frames = max_frames
        self.ttl_s = ttl_s
        self._lines: dict[str, MemoryLine] = {}
        self._swept = time.monotonic()

    def line(self, conversation_id: str) -> MemoryLine:
        self._sweep()
        line = self._lines.get(conversation_id)
        if line is None:
            line = self._lines[conversation_id] = MemoryLine(conversation_id, self.max_frames)
        return line

    def _sweep(self) -> None:
        stamp = time.monotonic()
        if stamp - self._swept < 30:
            return
        self._swept = stamp
        for cid, line in list(self._lines.items()):
            if not line.listeners and stamp - line.used > self.ttl_s:
                del self._lines[cid]

    def broadcast(self, message: dict[str, Any]) -> None:
        return None

    def on_broadcast(self, handler: Callable[[dict[str, Any]], None]) -> None:
        return None

    def on_cancel(self, handler: Callable[[str, str], None]) -> None:
        return None

    async def lapsed(self) -> list[dict[str, Any]]:
        return []

    async def start(self) -> None:
        return None

    async def aclose(self) -> None:
        return None
