"""The conversation bus across nodes, in Redis: a log per conversation, its frames published as they are appended,
control messages, and reply leases (scripts in `redis_scripts.py`).

- A frame is appended and published by one script, which gives it its seq, and which publishes it to the channel of
  each other node listening to the conversation (a set per conversation; each node subscribes to its own channel
  once). A node delivers its own frames from what the script returns, so they never make a round trip through
  pub/sub, and a frame reaches a client only once it is in the log. Frames reach a node's listeners in seq order:
  one that arrives before the one it follows (the two came on different connections) waits for it, and a gap that
  lasts `GAP_S` counts as a loss. A line's frames are sent by one task per line, pipelined, so emitting never waits.
- Resume, as Centrifugo's recovery: join first (the node is in the conversation's set, and Redis says which seq it
  hears every frame after), then read the log after the client's seq; the socket drops what it already sent, by
  seq. The log has an epoch, made when the log is: a
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
GAP_S = 2.0  # how long a frame that came before the one it follows waits for it


class RedisLine:
    def __init__(self, bus: RedisBus, conversation_id: str) -> None:
        self.bus = bus
        self.conversation_id = conversation_id
        self.seq = 0
        self.epoch: str | None = None
        self.listeners: set[Listener] = set()
        self.key = f"{PREFIX}c:{conversation_id}"
        self.dead = False  # lost: frames of what ran before the loss must not start the new log
        # Delivery in seq order: this node's own frames come back from APPEND, other nodes' through pub/sub, on
        # separate connections, so a frame may arrive before the one it follows; it waits for it, for up to GAP_S.
        self.delivered: int | None = None  # the seq after which every frame reaches this node (None: not joined)
        self._early: dict[int, str] = {}
        self._gap: asyncio.TimerHandle | None = None
        self._member: str | None = None  # `token|node` in the conversation's set of listening nodes

    # frames

    def emit(self, frame: Frame) -> None:
        if self.dead:
            return  # the reply that emits it is stored; a client resuming in the new epoch reads it from storage
        self.bus.send(self, encode(frame))

    def appended(self, body: str, seq: int, epoch: str) -> bool:
        """What APPEND returned for a frame of this line: hand it to this node's listeners; False when the log was
        not the one this line expected (lost)."""
        if self.dead:
            return False
        if not seq or not self._seen(seq, epoch):
            self.lost()
            return False
        here = self.bus.lines.get(self.conversation_id)  # the line this node's listeners hear (maybe this one)
        if here is not None:
            here.deliver(epoch, f'{{"seq":{seq},{body[1:]}', seq)  # as APPEND wrote it
        return True

    def _seen(self, seq: int, epoch: str) -> bool:
        """Take note of a frame of the log; False when it is of another epoch (the log was lost)."""
        if self.epoch is None:
            self.epoch = epoch
        elif epoch != self.epoch:
            self.lost()
            return False
        self.seq = max(self.seq, seq)
        return True

    def deliver(self, epoch: str, payload: str, seq: int | None = None) -> None:
        if seq is None:
            seq = int(payload[7:payload.index(",", 7)])  # the payload starts with {"seq":N,
        if self.dead or not self._seen(seq, epoch):
            return
        if self.delivered is not None and seq <= self.delivered:
            return  # already delivered (a line of this node being dropped had it sent here too)
        if self.delivered is None or seq > self.delivered + 1:
            self._early[seq] = payload
            if self._gap is None:
                self._gap = asyncio.get_running_loop().call_later(GAP_S, self._gap_lasted)
            return
        self._hand(seq, payload)
        self._drain()

    def _hand(self, seq: int, payload: str) -> None:
        self.delivered = seq
        for listener in list(self.listeners):
            listener.frame(seq, payload)

    def _drain(self) -> None:
        assert self.delivered is not None
        while (payload := self._early.pop(self.delivered + 1, None)) is not None:
            self._hand(self.delivered + 1, payload)
        for seq in [s for s in self._early if s <= self.delivered]:
            del self._early[seq]
        if not self._early and self._gap is not None:
            self._gap.cancel()
            self._gap = None

    def _gap_lasted(self) -> None:
        # A frame never came (its pub/sub message was lost): what this node holds is no longer whole.
        self._gap = None
        if self.delivered is None:  # not joined yet: what came early waits for the join
            self._gap = asyncio.get_running_loop().call_later(GAP_S, self._gap_lasted)
        elif self._early:
            log.warning("conversation bus: a frame is missing", extra={"conversation_id": self.conversation_id,
                                                                        "after_seq": self.delivered})
            self.lost()

    def lost(self) -> None:
        listeners, self.listeners = list(self.listeners), set()
        self.dead = True
        self._early.clear()
        if self._gap is not None:
            self._gap.cancel()
            self._gap = None
        self.bus.forget(self)
        for listener in listeners:
            listener.lost()

    # control

    def control(self, message: dict[str, Any]) -> None:
        b = self.bus
        b.spawn(b.fan_out(keys=[f"{self.key}:nodes"],
                          args=[b.node_prefix, b.node, self.conversation_id, json.dumps(message)]))

    def cancel(self, message_id: str) -> None:
        self.control({"cancel": message_id})
        self.bus.spawn(self.bus.cancel_flag(keys=[f"{self.key}:reply"], args=[message_id]))

    # listening

    async def join(self, listener: Listener) -> None:
        """Add this node to the conversation's listening nodes (a fresh member each time, so that a member still
        being removed never removes a newer one) and learn the seq after which every frame reaches it."""
        first = not self.listeners
        self.listeners.add(listener)
        self.bus.lines[self.conversation_id] = self
        if not first:
            return
        b = self.bus
        self._member = member = f"{secrets.token_hex(lua.TOKEN_CHARS // 2)}|{b.node}"
        try:
            if not b.available:
                raise BusUnavailable("the bus is reconnecting to Redis")
            seq, epoch = await b.join(keys=[f"{self.key}:m", f"{self.key}:nodes"], args=[member, b.ttl_ms])
        except BaseException as exc:
            self.listeners.discard(listener)
            if not self.listeners:
                self._unlist()
            if isinstance(exc, Exception) and not isinstance(exc, BusUnavailable):
                raise BusUnavailable(repr(exc)) from exc
            raise
        if epoch and not self._seen(int(seq), epoch.decode()):
            return
        self.delivered = max(self.delivered or 0, int(seq))
        self._drain()

    async def leave(self, listener: Listener) -> None:
        self.listeners.discard(listener)
        if not self.listeners:
            self._unlist()
            member, self._member = self._member, None
            if member is not None:
                with contextlib.suppress(Exception):
                    await self.bus.client.srem(f"{self.key}:nodes", member)

    def _unlist(self) -> None:
        if self.bus.lines.get(self.conversation_id) is self:
            del self.bus.lines[self.conversation_id]

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
            await b.release(keys=[f"{self.key}:lease", f"{self.key}:reply", f"{self.key}:m", f"{PREFIX}leases",
                                  f"{self.key}:nodes"],
                            args=[b.node, token, self.conversation_id, b.node_prefix, b.ttl_ms])
        except Exception as exc:  # the lease lapses by itself; a sweeper then finds the reply ended
            log.warning("conversation bus: lease not released", extra={"error": repr(exc)})


class RedisBus:
    shared = True
    kind = "redis"

    def __init__(self, url: str, node: str, *, max_frames: int, ttl_s: float, lease_s: float) -> None:
        self.url = url
        # Unique per process even where names repeat (every container's server may be pid 1): leases, members and
        # channels are this id's. No `|`, which separates it from what follows in messages.
        self.node = f"{node.replace('|', '_')}~{secrets.token_hex(4)}"
        self.max_frames = max_frames
        self.ttl_ms = int(ttl_s * 1000)
        self.lease_s = lease_s
        self.lease_ms = int(lease_s * 1000)
        self.client: Any = open_redis(url, timeout_s=2)
        # The pub/sub connection on a client of its own that never reconnects by itself: a dropped connection is an
        # error `_listen` sees, so the bus is `available` only once it has subscribed again (see `_open_pubsub`).
        self._sub_client: Any = open_redis(url, timeout_s=2, max_connections=4, retry=False)
        self.append = self.client.register_script(lua.APPEND)
        self.since = self.client.register_script(lua.SINCE)
        self.acquire = self.client.register_script(lua.ACQUIRE)
        self.release = self.client.register_script(lua.RELEASE)
        self.renew = self.client.register_script(lua.RENEW)
        self.cancel_flag = self.client.register_script(lua.CANCEL)
        self.take_lapsed = self.client.register_script(lua.LAPSED)
        self.join = self.client.register_script(lua.JOIN)
        self.fan_out = self.client.register_script(lua.CONTROL)
        self.node_prefix = f"{PREFIX}n:"
        self.lines: dict[str, RedisLine] = {}  # by conversation id: the lines this node listens to
        self.held: set[str] = set()  # conversations whose reply lease this node holds
        self._outbox: list[tuple[RedisLine, str]] = []  # frames to append, in order, every line's
        self._sender: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._pubsub: Any = None
        self._run_id: str | None = None
        self._broadcast: Callable[[dict[str, Any]], None] = lambda message: None
        self._cancel: Callable[[str, str], None] = lambda conversation_id, message_id: None
        self._nodes = f"{PREFIX}nodes"
        self._nodes_b = self._nodes.encode()
        self._own = f"{self.node_prefix}{self.node}"  # frames and control of the lines this node listens to
        self._loops: list[asyncio.Task[None]] = []

    @property
    def available(self) -> bool:
        return self._pubsub is not None  # None while the pub/sub connection is being opened again

    def line(self, conversation_id: str) -> RedisLine:
        return self.lines.get(conversation_id) or RedisLine(self, conversation_id)

    # start and stop

    async def start(self) -> None:
        try:
            await self._open_pubsub()
        except Exception as exc:
            await self.client.aclose()
            await self._sub_client.aclose()
            raise BusUnavailable(f"cannot reach Redis: {exc}") from exc
        self._loops = [asyncio.create_task(self._listen()), asyncio.create_task(self._maintain())]

    async def aclose(self) -> None:
        for task in self._loops:
            task.cancel()
        for task in [*self._loops, *([self._sender] if self._sender else []), *self._tasks]:
            with contextlib.suppress(BaseException):
                await task
        if self._pubsub is not None:
            with contextlib.suppress(Exception):
                await self._pubsub.aclose()
        await self.client.aclose()
        await self._sub_client.aclose()

    # frames

    def send(self, line: RedisLine, body: str) -> None:
        self._outbox.append((line, body))
        if self._sender is None or self._sender.done():
            self._sender = asyncio.get_running_loop().create_task(self._send())

    async def _send(self) -> None:
        """Append the frames of every line in one pipeline at a time: what comes meanwhile waits for the next, so
        a busy node sends few large pipelines (a round trip and a pool checkout for many frames), in order."""
        while self._outbox:
            batch, self._outbox = self._outbox, []
            try:
                async with self.client.pipeline(transaction=False) as pipe:
                    for line, body in batch:
                        key = line.key
                        await self.append(keys=[f"{key}:m", f"{key}:log", f"{key}:nodes"],
                                          args=[body, secrets.token_hex(6), self.max_frames, self.ttl_ms,
                                                self.node_prefix, line.epoch or "", self.node, line.conversation_id],
                                          client=pipe)
                    results = await pipe.execute()
            except Exception as exc:
                log.warning("conversation bus: frames not appended", extra={"error": repr(exc)})
                for line in {line for line, _ in batch}:
                    line.lost()
                continue
            failed: set[RedisLine] = set()
            for (line, body), (seq, epoch) in zip(batch, results, strict=True):
                if line not in failed and not line.appended(body, int(seq), epoch.decode()):
                    failed.add(line)

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
        pubsub = self._sub_client.pubsub()
        await pubsub.subscribe(self._nodes, self._own)
        # wait for Redis to confirm both, so that a line joined from now on hears every frame sent to this node
        confirmed: set[str] = set()
        async with asyncio.timeout(SUBSCRIBE_TIMEOUT_S):
            while len(confirmed) < 2:
                message = await pubsub.get_message(timeout=SUBSCRIBE_TIMEOUT_S)
                if message is not None and message["type"] == "subscribe":
                    confirmed.add(message["channel"].decode())
        # Its client does not retry, but a failed read still reconnects once before it raises: messages sent
        # meanwhile are gone, so a reconnect is a loss (and `_listen` then opens a fresh one).
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

    def forget(self, line: RedisLine) -> None:
        line._unlist()
        member, line._member = line._member, None
        if member is not None:
            self.spawn(self.client.srem(f"{line.key}:nodes", member))

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
        if message["type"] != "message":
            return
        data: str = message["data"].decode()
        if message["channel"] == self._nodes_b:  # `!node|{…}`, to every node
            node, _, body = data[1:].partition("|")
            if node != self.node:
                self._broadcast(json.loads(body))
            return
        conversation_id, _, rest = data[1:].partition("|")
        line = self.lines.get(conversation_id)
        if line is None:
            return
        if data[0] == "f":
            epoch, _, payload = rest.partition("|")
            line.deliver(epoch, payload)
        elif data[0] == "c":
            control = json.loads(rest)
            for listener in list(line.listeners):
                listener.control(control)

    def lose_all(self, why: str) -> None:
        if self.lines:
            log.warning("conversation bus: lost what it held, clients will resume from storage", extra={"why": why})
        for line in list(self.lines.values()):
            line.lost()
        self.lines.clear()

    # leases

    async def _maintain(self) -> None:
        """Renew this node's leases (reading their cancel flags) and its place among the listeners of its lines, and
        notice a restarted Redis."""
        loop = asyncio.get_running_loop()
        listed = loop.time()
        while True:
            await asyncio.sleep(self.lease_s / 3)
            try:
                await self._note_run("Redis restarted")
                await self._renew()
                if loop.time() - listed > self.ttl_ms / 2000:
                    listed = loop.time()
                    await self._relist()
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

    async def _relist(self) -> None:
        # A line nobody wrote to for a long while keeps hearing it: were its set to expire, a frame of a new log
        # (which the line would take for a loss) would not reach it.
        lines = [line for line in self.lines.values() if line._member is not None]
        async with self.client.pipeline(transaction=False) as pipe:
            for line in lines:
                pipe.sadd(f"{line.key}:nodes", line._member)
                pipe.pexpire(f"{line.key}:nodes", self.ttl_ms * 2)
            await pipe.execute()

    async def lapsed(self) -> list[dict[str, Any]]:
        try:
            infos = await self.take_lapsed(keys=[f"{PREFIX}leases"], args=[f"{PREFIX}c:", 20])
        except Exception as exc:
            log.warning("conversation bus: cannot look for lapsed replies", extra={"error": repr(exc)})
            return []
        return [json.loads(info) for info in infos]
