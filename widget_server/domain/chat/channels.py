"""Each live conversation on this node: its line on the conversation bus, the socket attached here, its running
replies and what its turns remember.

Frames that make up the conversation (message.accepted, reply.*, guardrail, escalation, agent.message) go through
the bus, which gives them their `seq` and keeps them for resume; a client that reconnects with `last_seq` (on this
node or any other) gets exactly what it missed, then the live stream. A conversation has one socket: a newer one,
wherever it connects, takes it over. A reply keeps running for `grace_s` after the last socket drops, so a quick
reconnect loses nothing. A channel lives while a socket or a reply needs it; then it leaves the bus.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from widget_server.backends.bus import Bus, Frame, Line, Out, Since
from widget_server.domain.chat.memory import Memory
from widget_server.ids import new_id

INTERRUPTED = "interrupted"  # the cancel message of a reply whose conversation bus was lost


@dataclass(frozen=True)
class Close:
    """Tells a socket to close: `superseded` (a newer socket took over), `gone` (the persona was deleted),
    `restart` (the bus lost what it held: resume from storage)."""

    why: str


Item = Out | Close


@dataclass(frozen=True)
class Whose:
    """The conversation a channel is of: its id, tenant and persona."""

    conversation_id: str
    tenant_id: str
    persona_id: str


@dataclass
class Attached:
    socket_id: str
    queue: asyncio.Queue[Item]


class Channel:
    def __init__(self, hub: Hub, conv: Whose, line: Line) -> None:
        self.hub = hub
        self.conv = conv
        self.line = line
        self.subscriber: Attached | None = None
        self.remote: str | None = None  # a socket of this conversation attached on another node
        self.replies: dict[str, asyncio.Task[Any]] = {}
        self.turn_lock = asyncio.Lock()  # one reply at a time per conversation on this node, in order
        self.memory: Memory | None = None
        self.joined: asyncio.Future[None] = asyncio.ensure_future(line.join(self))
        self._unlocked = asyncio.Event()
        self._grace: asyncio.TimerHandle | None = None

    @property
    def seq(self) -> int:
        return self.line.seq

    def emit(self, frame: Frame) -> None:
        self.line.emit(frame)

    # the bus's listener

    def frame(self, seq: int, text: str) -> None:
        if self.subscriber is not None:
            self.subscriber.queue.put_nowait((seq, text))

    def control(self, message: dict[str, Any]) -> None:
        if "attach" in message:
            self.remote = message["attach"]
            self._cancel_grace()
            if self.subscriber is not None and self.subscriber.socket_id != message["attach"]:
                self.subscriber.queue.put_nowait(Close("superseded"))
                self.subscriber = None
                self._maybe_idle()
        elif "detach" in message:
            if self.remote == message["detach"]:
                self.remote = None
                self._start_grace()
        elif "cancel" in message:
            self.cancel_here(str(message["cancel"]))
        elif "unlock" in message:
            self._unlocked.set()

    def lost(self) -> None:
        """The shared log is gone: the replies end (stored as `interrupted`) before the socket is told to resume,
        so that the transcript it is given on any node holds them."""
        tasks = list(self.replies.values())
        for task in tasks:
            task.cancel(INTERRUPTED)
        if not tasks:
            self.close(Close("restart"))
            return

        async def close_after() -> None:
            await asyncio.wait(tasks)
            self.close(Close("restart"))
        self.hub.hold(asyncio.get_running_loop().create_task(close_after()))

    def close(self, why: Close, cancel_message: str | None = None) -> None:
        """Close this node's socket of the conversation and stop its replies."""
        if self.subscriber is not None:
            self.subscriber.queue.put_nowait(why)
            self.subscriber = None
        for task in list(self.replies.values()):
            task.cancel(cancel_message)
        self.hub.drop(self)

    # sockets

    async def attach(self, last_seq: int | None) -> tuple[Attached, Since]:
        """Subscribe a socket, superseding any other; returns it with what the log holds after `last_seq`. The
        socket listens before the log is read, so nothing falls between; it drops what it sent, by seq."""
        await asyncio.shield(self.joined)
        if self.subscriber is not None:
            self.subscriber.queue.put_nowait(Close("superseded"))
        self._cancel_grace()
        attached = self.subscriber = Attached(new_id("sock"), asyncio.Queue())
        self.line.control({"attach": attached.socket_id})
        return attached, await self.line.since(last_seq)

    def detach(self, attached: Attached) -> None:
        if self.subscriber is not attached:
            return
        self.subscriber = None
        self.line.control({"detach": attached.socket_id})
        self._start_grace()
        self._maybe_idle()

    def _start_grace(self) -> None:
        if self.replies and self.subscriber is None and self.remote is None and self._grace is None:
            self._grace = asyncio.get_running_loop().call_later(self.hub.grace_s, self._abandon)

    def _cancel_grace(self) -> None:
        if self._grace is not None:
            self._grace.cancel()
            self._grace = None

    def _abandon(self) -> None:
        # Nobody came back for the reply: stop paying the provider for it.
        self._grace = None
        if self.subscriber is None and self.remote is None:
            for task in list(self.replies.values()):
                task.cancel()

    # replies

    def cancel(self, message_id: str) -> None:
        """Cancel a reply, on this node or the one that runs it."""
        if not self.cancel_here(message_id):
            self.line.cancel(message_id)

    def cancel_here(self, message_id: str) -> bool:
        task = self.replies.get(message_id)
        if task is not None:
            task.cancel()
        return task is not None

    async def wait_unlocked(self) -> None:
        """Wait until another node's reply of this conversation ends (or its lease would have lapsed)."""
        self._unlocked.clear()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(self.hub.lease_s):
                await self._unlocked.wait()

    def reply_done(self, key: str) -> None:
        self.replies.pop(key, None)
        self._maybe_idle()

    def _maybe_idle(self) -> None:
        if self.subscriber is None and not self.replies and not self.turn_lock.locked():
            self.hub.drop(self)


class Hub:
    """This node's live channels, over the conversation bus."""

    def __init__(self, bus: Bus, grace_s: float, lease_s: float) -> None:
        self.bus = bus
        self.grace_s = grace_s
        self.lease_s = lease_s
        self._channels: dict[str, Channel] = {}
        self._leaving: set[asyncio.Task[None]] = set()  # see hold()
        self._on_changed: list[Callable[[str, list[str]], None]] = []
        bus.on_broadcast(self._broadcast)
        bus.on_cancel(self._cancel_flag)

    async def open(self, conv: Whose) -> Channel:
        channel = self._channels.get(conv.conversation_id)
        if channel is None:
            line = self.bus.line(conv.conversation_id)
            channel = self._channels[conv.conversation_id] = Channel(self, conv, line)
        try:
            await asyncio.shield(channel.joined)
        except BaseException:
            self.drop(channel)
            raise
        return channel

    def drop(self, channel: Channel) -> None:
        if self._channels.get(channel.conv.conversation_id) is channel:
            del self._channels[channel.conv.conversation_id]
            if channel.joined.done() and not channel.joined.cancelled() and channel.joined.exception() is None:
                self.hold(asyncio.get_running_loop().create_task(channel.line.leave(channel)))

    def hold(self, task: asyncio.Task[None]) -> None:
        """Keep a task of the hub's until it is done (the loop keeps only weak references to tasks)."""
        self._leaving.add(task)
        task.add_done_callback(self._leaving.discard)

    def emit(self, conversation_id: str, frame: Frame) -> None:
        """A frame to a conversation, wherever its socket is."""
        channel = self._channels.get(conversation_id)
        (channel.line if channel is not None else self.bus.line(conversation_id)).emit(frame)

    def persona_deleted(self, tenant_id: str, persona_id: str) -> None:
        """Close every socket of the persona's conversations, on every node, and stop their replies."""
        message = {"persona_deleted": [tenant_id, persona_id]}
        self._broadcast(message)
        self.bus.broadcast(message)

    def changed(self, kind: str, key: list[str]) -> None:
        """Something nodes cache changed (a tenant's policy, a persona): every node, this one first, is told."""
        message = {"changed": [kind, key]}
        self._broadcast(message)
        self.bus.broadcast(message)

    def on_changed(self, handler: Callable[[str, list[str]], None]) -> None:
        self._on_changed.append(handler)

    def _broadcast(self, message: dict[str, Any]) -> None:
        if isinstance(changed := message.get("changed"), list) and len(changed) == 2:
            for handler in self._on_changed:
                handler(str(changed[0]), [str(k) for k in changed[1]])
        if "persona_deleted" in message:
            tenant_id, persona_id = message["persona_deleted"]
            for handler in self._on_changed:
                handler("persona", [tenant_id, persona_id])
            for channel in list(self._channels.values()):
                if channel.conv.tenant_id == tenant_id and channel.conv.persona_id == persona_id:
                    channel.close(Close("gone"))

    def _cancel_flag(self, conversation_id: str, message_id: str) -> None:
        if (channel := self._channels.get(conversation_id)) is not None:
            channel.cancel_here(message_id)

    def running(self) -> list[asyncio.Task[Any]]:
        """The replies this node runs."""
        return [t for c in self._channels.values() for t in c.replies.values()]

    def cancel_all(self) -> list[asyncio.Task[Any]]:
        """Shutdown: every running reply ends as `interrupted` (the visitor did not cancel it)."""
        tasks = self.running()
        for task in tasks:
            task.cancel(INTERRUPTED)
        return tasks

    @property
    def live(self) -> int:
        return len(self._channels)
