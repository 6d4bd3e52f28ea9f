"""The conversation bus across nodes, in Redis: a log per conversation, its frames published as they are appended,
control messages, and reply leases (scripts in `redis_scripts.py`).

- A frame is appended and published by one script, which gives it its seq: every node hears a line's frames in seq
  order, its own included (a node's sockets get their frames through Redis like everyone's, so what a client saw
  is always in the log). A line's frames are sent by one task per line, pipelined, so emitting never waits.
- Resume, as Centrifugo's recovery: subscribe first (and wait for Redis to confirm), then read the log after the
  client's seq; the socket drops what it already sent, by seq. The log has an epoch, made when the log is: a
  restarted Redis or an expired key gives a new one, and a client holding the old one gets the transcript.
- A node knows its copy is stale when Redis's run id changes, its pub/sub connection drops or reconnects, or a
  frame arrives in another epoch: the lines' listeners are told (`lost`), and they close their sockets so clients
  resume from what is stored.
- Leases: the node running a reply holds `c:C:lease` and renews it every third of `lease_s`; a cancel sent from
  another node is a control message and also a flag on the lease, read at each renewal, so a lost message only
  delays it. When a lease lapses, the next sweeper (or the next reply of that conversation) takes its info, once.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import secrets
from collections.abc import Awaitable, Callable
from typing import Any

from widget_server.backends.bus import BusUnavailable, Frame, Listener, Out, Since, Wait, encode
from widget_server.backends.bus import redis_scripts as lua
from widget_server.backends.redis_client import open_redis

log = logging.getLogger(__name__)
PREFIX = "widget:bus:"
SUBSCRIBE_TIMEOUT_S = 2.0


class RedisLine:
    def __init__(self, bus: RedisBus, conversation_id: str) -> None:
        self.bus = bus
        self.conversation_id = conversation_id
        self.seq = 0
        self.epoch: str | None = None
        self.listeners: set[Listener] = set()
        self.key = f"{PREFIX}c:{conversation_id}"
        self.channel = self.key  # the pub/sub channel has the conversation's key name
        self._pending: list[str] = []
        self._pump: asyncio.Task[None] | None = None
        self._subscribed: asyncio.Event | None = None
        self.dead = False  # lost: frames of what ran before the loss must not start the new log


    # frames

    def emit(self, frame: Frame) -> None:
        if self.dead:
            return  # the reply that emits it is stored; a client resuming in the new epoch reads it from storage
        self._pending.append(encode(frame))
        if self._pump is None or self._pump.done():
            self._pump = asyncio.get_running_loop().create_task(self._send())
            self.bus.sending.add(self._pump)
            self._pump.add_done_callback(self.bus.sending.discard)

    async def _send(self) -> None:
        b = self.bus
        while self._pending:
            batch, self._pending = self._pending, []
            try:
                async with b.client.pipeline(transaction=False) as pipe:
                    for body in batch:
                        await b.append(keys=[f"{self.key}:m", f"{self.key}:log"],
                                       args=[body, secrets.token_hex(6), b.max_frames, b.ttl_ms, self.channel,
                                             self.epoch or ""], client=pipe)
                    results = await pipe.execute()
            except Exception as exc:
                log.warning("conversation bus: frames not appended", extra={"error": repr(exc),
                                                                            "conversation_id": self.conversation_id})
                self._pending.clear()
                self.lost()
                return
            if self.dead:
                return
            for seq, epoch in results:
                if not int(seq) or not self._seen(int(seq), epoch.decode()):
                    self.lost()
                    return

    def _seen(self, seq: int, epoch: str) -> bool:
        """Take note of a frame of the log; False when it is of another epoch (the log was lost)."""
        if self.epoch is None:
            self.epoch = epoch
        elif epoch != self.epoch:
            self.lost()
            return False
        self.seq = max(self.seq, seq)
        return True

    def deliver(self, epoch: str, payload: str) -> None:
        seq = int(payload[7:payload.index(",", 7)])  # the payload starts with {"seq":N,
        if self._seen(seq, epoch):
            for listener in list(self.listeners):
                listener.frame(seq, payload)

    def lost(self) -> None:
        listeners, self.listeners = list(self.listeners), set()
        self.dead = True
        self.bus.forget(self)
        for listener in listeners:
            listener.lost()

    # control

    def control(self, message: dict[str, Any]) -> None:
        self.bus.publish(self.channel, message)

    def cancel(self, message_id: str) -> None:
        self.control({"cancel": message_id})
        self.bus.spawn(self.bus.cancel_flag(keys=[f"{self.key}:reply"], args=[message_id]))

    # listening

    async def join(self, listener: Listener) -> None:
        first = not self.listeners
        self.listeners.add(listener)
        if first:
            try:
                await self.bus.subscribe(self)
            except BaseException:
                self.listeners.discard(listener)
                raise

    async def leave(self, listener: Listener) -> None:
        self.listeners.discard(listener)
        if not self.listeners:
            await self.bus.unsubscribe(self)

    async def since(self, last_seq: int | None) -> Since:
        try:
            known, epoch, seq, covered, frames = await self.bus.since(
                keys=[f"{self.key}:m", f"{self.key}:log"],
                args=[secrets.token_hex(6), self.bus.ttl_ms, -1 if last_seq is None else last_seq])
        except Exception as exc:
            raise BusUnavailable(repr(exc)) from exc
        epoch = epoch.decode()
        if self.epoch is not None and epoch != self.epoch:
            self.lost()
        self.epoch, self.seq = epoch, max(int(seq), self.seq if self.epoch == epoch else 0)
        out: list[Out] | None = None
        if covered:
            out = [(int(f[7:f.index(b",", 7)]), f.decode()) for f in frames]
        return Since(bool(known), epoch, int(seq), out)

    async def first_time(self, client_id: str) -> bool:
        try:
            return bool(await self.bus.client.set(f"{self.key}:cid:{client_id}", 1, nx=True, px=self.bus.ttl_ms))
        except Exception as exc:
            raise BusUnavailable(repr(exc)) from exc

    # the reply lease

    async def lock(self, info: Callable[[], dict[str, Any]], wait: Wait) -> tuple[str, dict[str, Any] | None]:
        b = self.bus
        while True:
            try:
                taken, token, lapsed = await b.acquire(
                    keys=[f"{self.key}:lease", f"{self.key}:reply", f"{self.key}:m", f"{PREFIX}leases"],
                    args=[b.node, b.lease_ms, json.dumps(info()), self.conversation_id])
            except Exception as exc:
                raise BusUnavailable(repr(exc)) from exc
            if taken:
                b.held.add(self.conversation_id)
                return token.decode(), json.loads(lapsed) if lapsed else None
            await wait()

    async def unlock(self, token: str) -> None:
        b = self.bus
        b.held.discard(self.conversation_id)
        try:
            await b.release(keys=[f"{self.key}:lease", f"{self.key}:reply", f"{self.key}:m", f"{PREFIX}leases"],
                            args=[b.node, token, self.conversation_id, self.channel, b.ttl_ms])
        except Exception as exc:  # the lease lapses by itself; a sweeper then finds the reply ended
            log.warning("conversation bus: lease not released", extra={"error": repr(exc)})


class RedisBus:
    shared = True
    kind = "redis"

    def __init__(self, url: str, node: str, *, max_frames: int, ttl_s: float, lease_s: float) -> None:
        self.url = url
        self.node = node
        self.max_frames = max_frames
        self.ttl_ms = int(ttl_s * 1000)
        self.lease_s = lease_s
        self.lease_ms = int(lease_s * 1000)
        self.client: Any = open_redis(url, timeout_s=2)
        self.append = self.client.register_script(lua.APPEND)
        self.since = self.client.register_script(lua.SINCE)
        self.acquire = self.client.register_script(lua.ACQUIRE)
        self.release = self.client.register_script(lua.RELEASE)
        self.renew = self.client.register_script(lua.RENEW)
        self.cancel_flag = self.client.register_script(lua.CANCEL)
        self.take_lapsed = self.client.register_script(lua.LAPSED)
        self.lines: dict[str, RedisLine] = {}  # by channel: the lines this node listens to
        self.held: set[str] = set()  # conversations whose reply lease this node holds
        self.sending: set[asyncio.Task[None]] = set()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._pubsub: Any = None
        self._run_id: str | None = None
        self._broadcast: Callable[[dict[str, Any]], None] = lambda message: None
        self._cancel: Callable[[str, str], None] = lambda conversation_id, message_id: None
        self._nodes = f"{PREFIX}nodes"
        self._loops: list[asyncio.Task[None]] = []

    @property
    def available(self) -> bool:
        return self._pubsub is not None  # None while the pub/sub connection is being opened again

    def line(self, conversation_id: str) -> RedisLine:
        return self.lines.get(f"{PREFIX}c:{conversation_id}") or RedisLine(self, conversation_id)

    # start and stop

    async def start(self) -> None:
        try:
            await self._open_pubsub()
        except Exception as exc:
            await self.client.aclose()
            raise BusUnavailable(f"cannot reach Redis: {exc}") from exc
        self._loops = [asyncio.create_task(self._listen()), asyncio.create_task(self._maintain())]

    async def aclose(self) -> None:
        for task in self._loops:
            task.cancel()
        for task in [*self._loops, *self.sending, *self._tasks]:
            with contextlib.suppress(BaseException):
                await task
        if self._pubsub is not None:
            with contextlib.suppress(Exception):
                await self._pubsub.aclose()
        await self.client.aclose()

    def spawn(self, work: Awaitable[Any]) -> None:
        async def run() -> None:
            try:
                await work
            except Exception as exc:
                log.warning("conversation bus: a write failed", extra={"error": repr(exc)})

        task = asyncio.get_running_loop().create_task(run())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # pub/sub

    async def _open_pubsub(self) -> None:
        # Read the run id as the pub/sub connection opens, so that a restart noticed here (the connection failed)
        # is not noticed again by `_maintain`, which would also drop the lines opened since, in the new run.
        await self._note_run("Redis restarted")
        pubsub = self.client.pubsub()
        await pubsub.subscribe(self._nodes)
        # redis-py reconnects and resubscribes by itself: messages sent meanwhile are gone, so a reconnect is a loss
        pubsub.connection.register_connect_callback(self._reconnected)
        self._pubsub = pubsub

    async def _reconnected(self, connection: Any) -> None:
        self.lose_all("pub/sub reconnected")
        with contextlib.suppress(Exception):
            self._run_id = (await self.client.info("server"))["run_id"]

    async def _note_run(self, why: str) -> None:
        """Take note of Redis's run id; a new one means Redis restarted and every log this node knew is gone."""
        run_id = (await self.client.info("server"))["run_id"]
        if run_id != self._run_id:
            known, self._run_id = self._run_id, run_id
            if known is not None:
                self.lose_all(why)

    def publish(self, channel: str, message: dict[str, Any]) -> None:
        self.spawn(self.client.publish(channel, f"!{self.node}|{json.dumps(message)}"))

    def broadcast(self, message: dict[str, Any]) -> None:
        self.publish(self._nodes, message)

    def on_broadcast(self, handler: Callable[[dict[str, Any]], None]) -> None:
        self._broadcast = handler

    def on_cancel(self, handler: Callable[[str, str], None]) -> None:
        self._cancel = handler

    async def subscribe(self, line: RedisLine) -> None:
        self.lines[line.channel] = line
        line._subscribed = confirmed = asyncio.Event()
        try:
            if self._pubsub is None:
                raise BusUnavailable("the bus is reconnecting to Redis")
            await self._pubsub.subscribe(line.channel)
            async with asyncio.timeout(SUBSCRIBE_TIMEOUT_S):
                await confirmed.wait()
        except Exception as exc:
            self.lines.pop(line.channel, None)
            raise BusUnavailable(repr(exc)) from exc

    async def unsubscribe(self, line: RedisLine) -> None:
        if self.lines.get(line.channel) is line:
            del self.lines[line.channel]
            if self._pubsub is not None:
                with contextlib.suppress(Exception):
                    await self._pubsub.unsubscribe(line.channel)

    def forget(self, line: RedisLine) -> None:
        if self.lines.get(line.channel) is line:
            del self.lines[line.channel]
            if self._pubsub is not None:
                self.spawn(self._pubsub.unsubscribe(line.channel))

    async def _listen(self) -> None:
        while True:
            try:
                if self._pubsub is None:
                    await self._open_pubsub()
                message = await self._pubsub.get_message(timeout=1.0)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self.lose_all(f"pub/sub failed: {exc!r}")
                await self._drop_pubsub()
                await asyncio.sleep(0.2)  # Redis is down: try again shortly
                continue
            if message is not None:
                self._dispatch(message)

    async def _drop_pubsub(self) -> None:
        pubsub, self._pubsub = self._pubsub, None
        if pubsub is not None:
            with contextlib.suppress(Exception):
                await pubsub.aclose()

    def _dispatch(self, message: dict[str, Any]) -> None:
        channel = message["channel"].decode()
        if message["type"] == "subscribe":
            line = self.lines.get(channel)
            if line is not None and line._subscribed is not None:
                line._subscribed.set()
            return
        if message["type"] != "message":
            return
        data: str = message["data"].decode()
        if data.startswith("!"):
            node, _, body = data[1:].partition("|")
            if node != self.node:
                self._control(channel, json.loads(body))
            return
        line = self.lines.get(channel)
        if line is not None:
            epoch, _, payload = data.partition("|")
            line.deliver(epoch, payload)

    def _control(self, channel: str, message: dict[str, Any]) -> None:
        if channel == self._nodes:
            self._broadcast(message)
        elif (line := self.lines.get(channel)) is not None:
            for listener in list(line.listeners):
                listener.control(message)

    def lose_all(self, why: str) -> None:
        if self.lines:
            log.warning("conversation bus: lost what it held, clients will resume from storage", extra={"why": why})
        for line in list(self.lines.values()):
            line.lost()
        self.lines.clear()

    # leases

    async def _maintain(self) -> None:
        """Renew this node's leases (reading their cancel flags) and notice a restarted Redis."""
        while True:
            await asyncio.sleep(self.lease_s / 3)
            try:
                await self._note_run("Redis restarted")
                await self._renew()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("conversation bus: Redis unreachable", extra={"error": repr(exc)})

    async def _renew(self) -> None:
        held = list(self.held)
        if not held:
            return
        async with self.client.pipeline(transaction=False) as pipe:
            for cid in held:
                key = f"{PREFIX}c:{cid}"
                await self.renew(keys=[f"{key}:lease", f"{key}:reply", f"{PREFIX}leases"],
                           args=[self.node, self.lease_ms, cid], client=pipe)
            flags = await pipe.execute()
        for cid, flag in zip(held, flags, strict=True):
            if flag:
                self._cancel(cid, flag.decode())

    async def lapsed(self) -> list[dict[str, Any]]:
        try:
            infos = await self.take_lapsed(keys=[f"{PREFIX}leases"], args=[f"{PREFIX}c:", 20])
        except Exception as exc:
            log.warning("conversation bus: cannot look for lapsed replies", extra={"error": repr(exc)})
            return []
        return [json.loads(info) for info in infos]
