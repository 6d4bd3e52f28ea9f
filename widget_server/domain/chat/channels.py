"""The frame log of each live conversation on this node: `seq` numbers, resume, and the attached socket.

Frames that make up the conversation (message.accepted, reply.*, guardrail, escalation, agent.message) advance
`seq` and are logged, so a client that reconnects with `last_seq` gets exactly what it missed, then the live
stream. A reply keeps running for `grace_s` after its socket drops, so a quick reconnect loses nothing.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from typing import Any

from widget_server.domain.chat.frames import Frame
from widget_server.domain.chat.memory import Memory

CLOSED = {"type": "_superseded"}  # tells an older socket that a newer one took the conversation over


class Channel:
    def __init__(self, conversation_id: str, max_frames: int, grace_s: float) -> None:
        self.conversation_id = conversation_id
        self.seq = 0
        self.log: deque[Frame] = deque(maxlen=max_frames)
        self.subscriber: asyncio.Queue[Frame] | None = None
        self.replies: dict[str, asyncio.Task[Any]] = {}
        self.turn_lock = asyncio.Lock()  # one reply at a time per conversation, in order
        self.memory: Memory | None = None  # made by the first turn, kept while the channel lives
        self._client_ids: deque[str] = deque(maxlen=256)
        self.grace_s = grace_s
        self.idle_since = time.monotonic()
        self._grace: asyncio.TimerHandle | None = None

    def first_time(self, client_id: str) -> bool:
        """Whether this client message id is new: a client that resends after a drop must not double it."""
        if client_id in self._client_ids:
            return False
        self._client_ids.append(client_id)
        return True

    def emit(self, frame: Frame) -> Frame:
        self.seq += 1
        frame = {**frame, "seq": self.seq}
        self.log.append(frame)
        if self.subscriber is not None:
            self.subscriber.put_nowait(frame)
        return frame

    def covers(self, last_seq: int) -> bool:
        """Whether the log still holds every frame after `last_seq`."""
        if last_seq > self.seq or last_seq < 0:
            return False
        return last_seq == self.seq or (bool(self.log) and self.log[0]["seq"] <= last_seq + 1)

    def attach(self, last_seq: int) -> tuple[asyncio.Queue[Frame], list[Frame]]:
        """Subscribe a socket; returns its queue and the frames it missed. Atomic: nothing awaits in between."""
        if self.subscriber is not None:
            self.subscriber.put_nowait(CLOSED)
        if self._grace is not None:
            self._grace.cancel()
            self._grace = None
        queue: asyncio.Queue[Frame] = asyncio.Queue()
        self.subscriber = queue
        return queue, [f for f in self.log if f["seq"] > last_seq]

    def detach(self, queue: asyncio.Queue[Frame]) -> None:
        if self.subscriber is not queue:
            return
        self.subscriber = None
        self.idle_since = time.monotonic()
        if self.replies:
            self._grace = asyncio.get_running_loop().call_later(self.grace_s, self._abandon)

    def _abandon(self) -> None:
        # Nobody came back for the reply: stop paying the provider for it.
        self._grace = None
        if self.subscriber is None:
            for task in list(self.replies.values()):
                task.cancel()

    @property
    def idle(self) -> bool:
        return self.subscriber is None and not self.replies


class Hub:
    """All channels of this node. Idle ones are forgotten after `ttl_s`; resume then falls back to storage."""

    def __init__(self, max_frames: int, grace_s: float, ttl_s: float = 900.0) -> None:
        self.max_frames = max_frames
        self.grace_s = grace_s
        self.ttl_s = ttl_s
        self._channels: dict[str, Channel] = {}
        self._swept = time.monotonic()

    def get(self, conversation_id: str) -> Channel | None:
        self._sweep()
        return self._channels.get(conversation_id)

    def open(self, conversation_id: str, start_seq: int = 0) -> Channel:
        channel = self.get(conversation_id)
        if channel is None:
            channel = self._channels[conversation_id] = Channel(conversation_id, self.max_frames, self.grace_s)
            channel.seq = start_seq
        return channel

    def _sweep(self) -> None:
        stamp = time.monotonic()
        if stamp - self._swept < 30:
            return
        self._swept = stamp
        for cid, channel in list(self._channels.items()):
            if channel.idle and stamp - channel.idle_since > self.ttl_s:
                del self._channels[cid]

    def cancel_all(self) -> list[asyncio.Task[Any]]:
        tasks = [t for c in self._channels.values() for t in c.replies.values()]
        for task in tasks:
            task.cancel()
        return tasks
