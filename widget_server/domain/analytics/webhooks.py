"""Webhook deliveries from the outbox: due rows of `webhook_deliveries` claimed, signed, POSTed, retried with backoff.

- Deliveries are written in the transaction that stores their events (`backends/storage/deliveries.py`), so a
  restart or a crash loses none. `submit` (the event writer's after-commit hook) only wakes the worker, which also
  looks every `webhook_poll_s` (for work left by a restart or another node) and when a retry of its own falls due.
- The worker claims due deliveries for a lease and runs each as a task: one try, then, in one transaction, its
  attempt row and the delivery's next try (`webhook_backoff_s`, doubling, with jitter) or its removal. A try cut
  short by a crash leaves a claim that expires after the lease; whichever worker looks next retries it.
- Bounded: at most `MAX_CONCURRENCY` tries in flight per node and `PER_WEBHOOK` to any one webhook; the worker
  claims only what it can start at once, so a slow receiver delays only its own deliveries, never a turn or the
  event writer.
- `PER_WEBHOOK` holds across nodes when the slots are shared (`backends/slots.py`, Redis): a try takes a slot of
  its webhook before it starts. A delivery refused one goes back to the table, not counted as a try, and this node
  leaves that webhook alone until one of its own tries to it ends or the next poll, so a receiver kept busy by
  other nodes costs one refused claim per poll, not a loop. Without Redis (or while it is unreachable) the
  limit is per node.
- Shutdown: running tries get `GRACE_S`; those cut short are given back (claim cleared, not counted as a try) for
  the next process or another node.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import logging
import random
import time
from collections import Counter
from collections.abc import Sequence
from datetime import timedelta
from typing import Any

from widget_server.backends.slots import MemorySlots, Slots
from widget_server.backends.storage import Storage
from widget_server.backends.storage.rows import Row
from widget_server.clock import now
from widget_server.domain.analytics.delivery import Hook, Sender, Try, delivery_body
from widget_server.domain.analytics.signing import derive_secret
from widget_server.domain.events import Event
from widget_server.ids import new_id
from widget_server.metrics import Metrics
from widget_server.settings import Settings

log = logging.getLogger(__name__)
MAX_CONCURRENCY = 16
PER_WEBHOOK = 4
GRACE_S = 2.0
LEASE_MARGIN_S = 30.0  # a claim lasts the try's timeout plus this, which covers recording the try under load
MAX_IDLE_S = 30.0  # the longest wait between claims while the database keeps failing


def slot_key(webhook_id: str) -> str:
    """The shared slots of one webhook: `PER_WEBHOOK` of them, whichever nodes hold them."""
    return f"webhook:{webhook_id}"


class WebhookDispatcher:
    """Delivers the outbox's due deliveries to the tenants' webhooks, never blocking a turn or the writer."""

    def __init__(self, storage: Storage, settings: Settings, metrics: Metrics, server_secret: str,
                 slots: Slots | None = None) -> None:
        self.storage = storage
        self.settings = settings
        self.metrics = metrics
        self._secret = server_secret
        self.node = new_id("node")  # whose claims these are
        self._sender = Sender(timeout_s=settings.webhook_timeout_s, allow_private=settings.webhook_allow_private,
                              max_connections=MAX_CONCURRENCY)
        self._slots = slots or MemorySlots()  # handed over: closed by `aclose`
        self._wake = asyncio.Event()
        # Set while the worker waits with nothing it could claim now; cleared whenever it is woken. With no
        # tries in flight it means: this node will make no delivery until new work is due (tests wait for it).
        self.idle = asyncio.Event()
        self._worker: asyncio.Task[None] | None = None
        self._tries: set[asyncio.Task[None]] = set()
        self._recording: set[asyncio.Future[None]] = set()
        self._per_hook: Counter[str] = Counter()  # tries in flight per webhook
        self._full: dict[str, float] = {}  # webhooks whose shared slots other nodes hold → when refused (monotonic)
        self._due: list[float] = []  # when this node's scheduled retries fall due (monotonic), a heap
        self._backlog = False  # the last claim may have left due deliveries behind: a freed slot looks again
        self._closing = False

    @property
    def _lease_s(self) -> float:
        return self.settings.webhook_timeout_s + LEASE_MARGIN_S

    def secret_for(self, webhook_id: str, salt: str) -> str:
        return derive_secret(self._secret, webhook_id, salt)

    def start(self) -> None:
        """Start the worker: deliveries left pending by an earlier process go out now."""
        if self._worker is None:
            self._worker = asyncio.get_running_loop().create_task(self._work())

    def submit(self, events: Sequence[Event]) -> None:
        """The writer committed `events` and their deliveries with them: look for due ones now. Never raises."""
        if events and not self._closing:
            self._wake_up()

    def _wake_up(self) -> None:
        self.idle.clear()
        self._wake.set()

    async def _work(self) -> None:
        failures = 0
        while not self._closing:
            self._wake.clear()
            looked = time.monotonic()
            try:
                again = await self._claim()
                failures = 0
            except Exception as exc:
                again = False
                failures += 1
                log.warning("webhook deliveries not claimed; retrying", extra={"error": type(exc).__name__})
            if again:
                continue
            while self._due and self._due[0] <= looked:
                heapq.heappop(self._due)
            poll = self.settings.webhook_poll_s
            wait = min(poll * 2 ** min(failures, 10), max(MAX_IDLE_S, poll))
            if self._due:
                wait = min(wait, max(self._due[0] - time.monotonic(), 0.0))
            if not self._wake.is_set():
                self.idle.set()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(wait):
                    await self._wake.wait()
            self.idle.clear()

    async def _claim(self) -> bool:
        """Claim what can start now and start it; True when more may be due and there is room to take it."""
        free = MAX_CONCURRENCY - len(self._tries)
        if free <= 0:
            self._backlog = True
            return False
        poll, looked = self.settings.webhook_poll_s, time.monotonic()
        self._full = {hook_id: at for hook_id, at in self._full.items() if at + poll > looked}
        busy = [hook_id for hook_id, n in self._per_hook.items() if n >= PER_WEBHOOK] + list(self._full)
        rows = await self.storage.deliveries.claim(self.node, limit=free, lease_s=self._lease_s, skip=busy)
        extra = []
        for row in rows:
            if not await self._take_slot(row):
                extra.append(row["id"])  # back to the table, for this node or another to claim later
        if extra:
            await self.storage.deliveries.release(self.node, extra)
        self._backlog = len(rows) == free or bool(busy) or bool(extra)
        return len(rows) == free and len(extra) < len(rows) and not self._closing

    async def _take_slot(self, row: Row) -> bool:
        """Start `row`'s try if its webhook has a slot free, on this node and across nodes; else False."""
        hook_id = row["webhook_id"]
        if self._per_hook[hook_id] >= PER_WEBHOOK or hook_id in self._full:
            return False  # its slots filled up within this batch
        holder = f"{self.node}:{row['id']}"
        if not await self._slots.acquire(slot_key(hook_id), holder, limit=PER_WEBHOOK, lease_s=self._lease_s):
            self._full[hook_id] = time.monotonic()  # held by other nodes: left alone until one of ours ends or the poll
            return False
        self._start(row, holder)
        return True

    def _start(self, row: Row, holder: str) -> None:
        hook_id = row["webhook_id"]
        self._per_hook[hook_id] += 1
        self.metrics.webhook_in_flight.inc()
        task = asyncio.get_running_loop().create_task(self._hold(row, holder))
        self._tries.add(task)
        task.add_done_callback(lambda t: self._done(t, hook_id))

    async def _hold(self, row: Row, holder: str) -> None:
        """One try, holding its webhook's slot (which lapses with the claim, should this node die first)."""
        try:
            await self._try(row)
        finally:
            await self._slots.release(slot_key(row["webhook_id"]), holder)

    def _done(self, task: asyncio.Task[None], hook_id: str) -> None:
        self._tries.discard(task)
        self.metrics.webhook_in_flight.dec()
        self._per_hook[hook_id] -= 1
        if self._per_hook[hook_id] <= 0:
            del self._per_hook[hook_id]
        self._full.pop(hook_id, None)  # a slot of it just freed, and this node can take it
        if not task.cancelled() and (exc := task.exception()) is not None:
            log.error("webhook try failed", exc_info=exc, extra={"webhook_id": hook_id})
        if self._backlog and not self._closing:
            self._wake_up()

    async def _try(self, row: Row) -> None:
        if row["event"] is None:  # erased or purged since: it is not ours to send any more
            with contextlib.suppress(Exception):  # else its claim expires and it is dropped next time
                await self.storage.deliveries.drop(row["id"], self.node)
            return
        hook = Hook(row["webhook_id"], row["tenant_id"], row["url"], self.secret_for(row["webhook_id"], row["salt"]))
        attempt = row["attempts"] + 1
        tried = await self._sender.post(hook, row["event_id"], delivery_body(row["event"]), attempt)
        last = attempt >= self.settings.webhook_attempts
        outcome = "delivered" if tried.delivered else "failed" if last else "retrying"
        self.metrics.webhook_deliveries.labels(outcome).inc()
        retry_in = None if outcome != "retrying" else self._delay(attempt + 1)
        # the try has its answer: a shutdown from here on must not lose it
        recording = asyncio.ensure_future(self._record(row, attempt, outcome, tried, retry_in))
        self._recording.add(recording)
        recording.add_done_callback(self._recording.discard)
        await asyncio.shield(recording)

    def _delay(self, attempt: int) -> float:
        """Before try `attempt` (2, 3, …): backoff, doubled each time, plus up to 20 % jitter."""
        return float(self.settings.webhook_backoff_s * 2 ** (attempt - 2) * random.uniform(1.0, 1.2))

    async def _record(self, row: Row, attempt: int, outcome: str, tried: Try, retry_in: float | None) -> None:
        """The attempt row, and the delivery's next try or its removal, in one transaction."""
        stamp = now()
        attempt_row = {"id": new_id("wha"), "tenant_id": row["tenant_id"], "webhook_id": row["webhook_id"],
                       "event_id": row["event_id"], "event_type": row["event_type"], "attempt": attempt,
                       "outcome": outcome, "status_code": tried.status,
                       "error": tried.error[:300] if tried.error else None, "duration_ms": tried.ms,
                       "created_at": stamp}
        retry_at = stamp + timedelta(seconds=retry_in) if retry_in is not None else None
        context: dict[str, Any] = {"tenant_id": row["tenant_id"], "webhook_id": row["webhook_id"],
                                   "event_id": row["event_id"], "attempt": attempt}
        try:
            stored = await self.storage.deliveries.finish(row["id"], self.node, attempt_row, retry_at)
        except Exception as exc:  # the claim expires and the try is made again, with the same number
            log.warning("webhook attempt not recorded", extra={**context, "error": type(exc).__name__})
            return
        if not stored:
            return  # the webhook was deleted meanwhile
        if retry_in is not None:
            heapq.heappush(self._due, time.monotonic() + retry_in)
            self._wake_up()  # the worker's next wait ends when this retry falls due
        elif outcome == "failed":
            log.warning("webhook delivery failed", extra=context)

    async def aclose(self) -> None:
        """Stop claiming, give running tries `GRACE_S`, record what finished and give back the rest."""
        self._closing = True
        self._wake.set()
        deadline = time.monotonic() + GRACE_S
        if self._worker is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(self._worker), GRACE_S)
            self._worker.cancel()
            with contextlib.suppress(BaseException):
                await self._worker
        if running := set(self._tries):
            _, late = await asyncio.wait(running, timeout=max(deadline - time.monotonic(), 0.05))
            for task in late:
                task.cancel()
            await asyncio.gather(*late, return_exceptions=True)
        if self._recording:
            await asyncio.wait(set(self._recording), timeout=GRACE_S)
        try:
            released = await self.storage.deliveries.release(self.node)
        except Exception as exc:  # their claims expire after the lease instead
            log.warning("webhook claims not given back at shutdown", extra={"error": type(exc).__name__})
        else:
            if released:
                log.info("webhook deliveries given back at shutdown", extra={"count": released})
        await self._sender.aclose()
        await self._slots.aclose()
