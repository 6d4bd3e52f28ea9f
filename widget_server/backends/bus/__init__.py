"""The conversation bus: each conversation's frame log (`seq` and an epoch), its live frames and control messages,
and the lease of the node running its reply. In process for one node, in Redis for several (DESIGN.md, "Several
nodes"); chosen by `WIDGET_REDIS_URL` like the rate limits, the Redis version imported only when used.

A `Line` is one conversation as this node sees it. Frames go in with `emit` and reach every node's listeners of
that line in `seq` order, as `(seq, text)`: the frame as JSON with its `seq`, ready to send as it is. A reply streams
inside the node that runs it; only its coalesced frames cross the bus, never single tokens.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol

Frame = dict[str, Any]
Out = tuple[int, str]  # a frame's seq and its JSON text (which holds the seq too)
Wait = Callable[[], Awaitable[None]]


class BusUnavailable(Exception):
    """The bus cannot be reached (Redis down): a socket is told to come back later."""


def encode(frame: Frame) -> str:
    """A frame as compact JSON; a lone surrogate that slipped through goes out escaped rather than failing."""
    text = json.dumps(frame, separators=(",", ":"), ensure_ascii=False)
    try:
        text.encode()
    except UnicodeEncodeError:
        return json.dumps(frame, separators=(",", ":"))
    return text


@dataclass(frozen=True)
class Since:
    """What a node can tell a resuming client: whether the log knew the conversation before (`known`), its epoch and
    last seq, and the frames after the client's `last_seq` (None when the log no longer covers it)."""

    known: bool
    epoch: str
    seq: int
    frames: list[Out] | None


class Listener(Protocol):
    """What hears a line on this node (the conversation's channel)."""

    def frame(self, seq: int, text: str) -> None: ...

    def control(self, message: dict[str, Any]) -> None:
        """A control message another node sent on this line: attach, detach, cancel, unlock."""

    def lost(self) -> None:
        """The shared log was lost (Redis restarted, the key expired): what this node holds of it is stale."""


class Line(Protocol):
    conversation_id: str
    seq: int  # the highest seq this node has seen on the line
    epoch: str | None

    def emit(self, frame: Frame) -> None:
        """Append a frame (its seq is given by the log) and deliver it to every node's listeners, in order."""

    def control(self, message: dict[str, Any]) -> None:
        """Tell the other nodes' listeners of this line (fire and forget)."""

    async def join(self, listener: Listener) -> None:
        """Start hearing the line; returns once every frame emitted from now on will reach `listener`."""

    async def leave(self, listener: Listener) -> None: ...

    async def since(self, last_seq: int | None) -> Since: ...

    async def first_time(self, client_id: str) -> bool:
        """Whether this client message id is new on the conversation, whichever node saw it before."""

    async def lock(self, info: Callable[[], dict[str, Any]], wait: Wait) -> tuple[str, dict[str, Any] | None]:
        """Take the conversation's reply lease (one reply at a time across nodes), its info made by `info()` at
        each try, calling `wait` while another live node holds it. Returns the memory token the last reply left, and
        the info of a reply whose node died holding the lease (for the caller to end), or None."""

    async def unlock(self, token: str) -> None:
        """Give the lease back, leaving `token` for the next reply to know whether its memory is still fresh."""

    def cancel(self, message_id: str) -> None:
        """Cancel a reply that another node runs: a control message, backed by a durable flag on its lease."""


class Bus(Protocol):
    node: str
    shared: bool  # whether other nodes may hold this conversation's sockets and replies
    kind: str  # "memory" or "redis", as /health shows it

    @property
    def available(self) -> bool:
        """Whether new sockets can join conversations now (False while Redis is away)."""

    def line(self, conversation_id: str) -> Line: ...

    def broadcast(self, message: dict[str, Any]) -> None:
        """Tell every other node (persona deleted)."""

    def on_broadcast(self, handler: Callable[[dict[str, Any]], None]) -> None: ...

    def on_cancel(self, handler: Callable[[str, str], None]) -> None:
        """`handler(conversation_id, message_id)` for a durable cancel flag found on a lease this node holds."""

    async def lapsed(self) -> list[dict[str, Any]]:
        """The infos of replies whose node stopped renewing their lease, each given to exactly one caller."""

    async def start(self) -> None: ...

    async def aclose(self) -> None: ...


def open_bus(redis_url: str | None, node: str, *, max_frames: int, ttl_s: float, lease_s: float) -> Bus:
    if redis_url:
        from widget_server.backends.bus.redis import RedisBus

        return RedisBus(redis_url, node, max_frames=max_frames, ttl_s=ttl_s, lease_s=lease_s)
    from widget_server.backends.bus.memory import MemoryBus

    return MemoryBus(node, max_frames=max_frames, ttl_s=ttl_s)


__all__ = ["Bus", "BusUnavailable", "Frame", "Line", "Listener", "Out", "Since", "Wait", "encode", "open_bus"]
