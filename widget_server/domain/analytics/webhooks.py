"""Webhook deliveries: each committed event, signed and POSTed to the tenant's matching webhooks, retried with backoff.

- `submit` (the event writer's after-commit hook) only appends to a bounded intake. A router task matches events
  to webhooks (cached per tenant for `CACHE_TTL_S`; this node drops its entry at once on create and delete) and
  starts one task per delivery, which makes up to `webhook_attempts` tries `webhook_backoff_s` apart (doubling,
  with jitter) and records each try in `webhook_attempts`.
- Bounded: at most `max_pending` deliveries exist at once (waiting, retrying or in flight; past that a delivery
  is dropped and recorded as a failed attempt), at most `MAX_CONCURRENCY` requests are in flight and
  `PER_WEBHOOK` to any one webhook, so a slow receiver delays only its own deliveries, never a turn.
- Deliveries live in memory: at shutdown, those still running get `GRACE_S`, then are recorded as failed.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
import time
from collections import Counter, deque
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Any

import httpx

from widget_server import __version__
from widget_server.backends.storage import Storage
from widget_server.backends.storage.rows import Row, now
from widget_server.domain.analytics.destinations import UnsafeURL, resolve
from widget_server.domain.analytics.query import event_json
from widget_server.domain.analytics.signing import derive_secret, sign
from widget_server.domain.analytics.writer import event_row
from widget_server.domain.events import Event
from widget_server.ids import new_id
from widget_server.metrics import Metrics
from widget_server.settings import Settings

log = logging.getLogger(__name__)
CACHE_TTL_S = 5.0  # how long another node may keep delivering to a webhook deleted elsewhere
MAX_PENDING = 10_000
MAX_INTAKE = 50_000
MAX_CONCURRENCY = 16
PER_WEBHOOK = 4
GRACE_S = 2.0
USER_AGENT = f"widget_server/{__version__}"


@dataclass(frozen=True)
class Hook:
    id: str
    tenant_id: str
    url: str
    types: frozenset[str]
    secret: str

    def wants(self, event_type: str) -> bool:
        return "*" in self.types or event_type in self.types


def delivery_body(event: Event) -> bytes:
    """The JSON a receiver gets: the event exactly as `GET /v1/analytics/events` shows it, under `data`."""
    data = event_json(event_row(event))
    envelope = {"id": event.id, "type": event.type, "created": data["ts"], "data": data}
    return json.dumps(envelope, separators=(",", ":"), ensure_ascii=False, default=str).encode()


class WebhookDispatcher:
    """Takes events once they are committed and delivers them to the tenant's webhooks, never blocking a turn."""

    def __init__(self, storage: Storage, settings: Settings, metrics: Metrics, server_secret: str) -> None:
        self.storage = storage
        self.settings = settings
        self.metrics = metrics
        self._secret = server_secret
        self.max_pending = MAX_PENDING
        self._intake: deque[Event] = deque()
        self._wake = asyncio.Event()
        self._router: asyncio.Task[None] | None = None
        self._cache: dict[str, tuple[float, list[Hook]]] = {}
        self._generation = 0  # bumped by `invalidate`, so a lookup that raced a delete does not cache stale rows
        self._deliveries: set[asyncio.Task[None]] = set()
        self._slots = asyncio.Semaphore(MAX_CONCURRENCY)
        self._per_hook: dict[str, asyncio.Semaphore] = {}
        self._per_hook_users: Counter[str] = Counter()
        self._orphans: list[Row] = []  # attempts cut short by shutdown, recorded by `aclose`
        self._client: httpx.AsyncClient | None = None
        self._closing = False

    def secret_for(self, webhook_id: str, salt: str) -> str:
        return derive_secret(self._secret, webhook_id, salt)

    def invalidate(self, tenant_id: str) -> None:
        """The tenant's webhooks changed: the next event reads them again."""
        self._generation += 1
        self._cache.pop(tenant_id, None)

    @property
    def pending(self) -> int:
        return len(self._deliveries)

    def submit(self, events: Sequence[Event]) -> None:
        """Queue events for delivery; returns at once and never raises (the writer calls it after each commit)."""
        try:
            wanted = [e for e in events if self._may_want(e)]
            room = MAX_INTAKE - len(self._intake)
            if len(wanted) > room:
                log.error("webhook intake full: events not delivered", extra={"dropped": len(wanted) - room})
                wanted = wanted[:max(room, 0)]
            if not wanted:
                return
            self._intake.extend(wanted)
            self._wake.set()
            if self._router is None:
                self._router = asyncio.get_running_loop().create_task(self._route())
        except Exception:
            log.exception("webhook submit failed")

    def _may_want(self, event: Event) -> bool:
        """False only when the cache already knows that no webhook of the tenant wants this type."""
        hit = self._cache.get(event.tenant_id)
        if hit is None or hit[0] < time.monotonic():
            return True
        return any(h.wants(event.type) for h in hit[1])

    async def _route(self) -> None:
        while True:
            while not self._intake:
                if self._closing:
                    return
                self._wake.clear()
                await self._wake.wait()
            event = self._intake[0]
            try:
                hooks = await self._hooks(event.tenant_id)
            except Exception as exc:  # the event stays first in line
                log.warning("webhook lookup failed; retrying", extra={"error": type(exc).__name__})
                await asyncio.sleep(1.0)
                continue
            self._intake.popleft()
            await self._dispatch(event, [h for h in hooks if h.wants(event.type)])

    async def _dispatch(self, event: Event, hooks: list[Hook]) -> None:
        dropped: list[Row] = []
        for hook in hooks:
            if len(self._deliveries) >= self.max_pending:
                dropped.append(self._attempt_row(hook, event, 1, "failed", None, "dropped: delivery queue full", 0))
                self.metrics.webhook_deliveries.labels("failed").inc()
                continue
            task = asyncio.get_running_loop().create_task(self._deliver(hook, event))
            self._deliveries.add(task)
            task.add_done_callback(self._deliveries.discard)
        if dropped:
            log.error("webhook queue full: deliveries dropped", extra={
                "tenant_id": event.tenant_id, "event_id": event.id, "dropped": len(dropped)})
            await self._record(dropped)

    async def _hooks(self, tenant_id: str) -> list[Hook]:
        hit = self._cache.get(tenant_id)
        if hit is not None and hit[0] >= time.monotonic():
            return hit[1]
        generation = self._generation
        rows = await self.storage.webhooks.for_tenant(tenant_id)
        hooks = [Hook(r["id"], r["tenant_id"], r["url"], frozenset(r["event_types"]),
                      self.secret_for(r["id"], r["salt"])) for r in rows]
        if generation == self._generation:
            if len(self._cache) > 10_000:
                self._cache = {k: v for k, v in self._cache.items() if v[0] >= time.monotonic()}
            self._cache[tenant_id] = (time.monotonic() + CACHE_TTL_S, hooks)
        return hooks

    async def _still_there(self, hook: Hook) -> bool:
        try:
            return any(h.id == hook.id for h in await self._hooks(hook.tenant_id))
        except Exception:
            return True  # the database is briefly away: keep trying; recording the attempt will tell

    async def _deliver(self, hook: Hook, event: Event) -> None:
        body = delivery_body(event)
        tries = self.settings.webhook_attempts
        upcoming = 1  # the try that a shutdown would cut short
        try:
            for attempt in range(1, tries + 1):
                if attempt > 1:
                    await asyncio.sleep(self._delay(attempt))
                    if not await self._still_there(hook):
                        return
                async with self._limit(hook.id):
                    status, error, ms = await self._post(hook, event, body, attempt)
                delivered = status is not None and 200 <= status < 300
                outcome = "delivered" if delivered else "failed" if attempt == tries else "retrying"
                self.metrics.webhook_deliveries.labels(outcome).inc()
                upcoming = tries + 1 if delivered else attempt + 1
                row = self._attempt_row(hook, event, attempt, outcome, status, error, ms)
                stored = await asyncio.shield(self._record([row]))
                if delivered or not stored:  # not stored: the webhook was deleted meanwhile
                    return
            log.warning("webhook delivery failed", extra={
                "tenant_id": hook.tenant_id, "webhook_id": hook.id, "event_id": event.id, "attempts": tries})
        except asyncio.CancelledError:
            if upcoming <= tries:
                self._orphans.append(self._attempt_row(hook, event, upcoming, "failed", None,
                                                       "cancelled: the server shut down", 0))
                self.metrics.webhook_deliveries.labels("failed").inc()
            raise

    def _delay(self, attempt: int) -> float:
        """Before try `attempt` (2, 3, …): backoff, doubled each time, plus up to 20 % jitter."""
        return float(self.settings.webhook_backoff_s * 2 ** (attempt - 2) * random.uniform(1.0, 1.2))

    @contextlib.asynccontextmanager
    async def _limit(self, webhook_id: str) -> AsyncIterator[None]:
        """A slot of this webhook first, then a global one: a slow webhook's backlog waits without holding slots."""
        sem = self._per_hook.setdefault(webhook_id, asyncio.Semaphore(PER_WEBHOOK))
        self._per_hook_users[webhook_id] += 1
        try:
            async with sem, self._slots:
                yield
        finally:
            self._per_hook_users[webhook_id] -= 1
            if not self._per_hook_users[webhook_id]:
                del self._per_hook_users[webhook_id]
                del self._per_hook[webhook_id]

    async def _post(self, hook: Hook, event: Event, body: bytes, attempt: int) -> tuple[int | None, str | None, int]:
        """One try: (status code, error, milliseconds), within `webhook_timeout_s` in all (DNS included).
        Redirects are not followed and the response body is not read."""
        started = time.monotonic()
        status: int | None = None
        error: str | None = None
        try:
            async with asyncio.timeout(self.settings.webhook_timeout_s):
                status = await self._send(hook, event, body, attempt)
            if not 200 <= status < 300:
                error = f"HTTP {status}"
        except TimeoutError:
            error = f"timed out after {self.settings.webhook_timeout_s:g} s"
        except UnsafeURL as exc:
            error = f"refused: {exc}"
        except httpx.HTTPError as exc:
            error = f"{type(exc).__name__}: {exc}"
        except Exception as exc:  # whatever else a receiver provokes is its attempt's error, not our crash
            log.warning("webhook attempt raised", exc_info=True, extra={"webhook_id": hook.id})
            error = f"{type(exc).__name__}: {exc}"
        return status, error, round((time.monotonic() - started) * 1000)

    async def _send(self, hook: Hook, event: Event, body: bytes, attempt: int) -> int:
        url = httpx.URL(hook.url)
        address = await resolve(url, allow_private=self.settings.webhook_allow_private)
        headers = {"Content-Type": "application/json", "User-Agent": USER_AGENT, "Widget-Event-Id": event.id,
                   "Widget-Delivery-Attempt": str(attempt), "Widget-Signature": sign(hook.secret, body)}
        extensions: dict[str, Any] = {}
        if address is not None:  # connect to the address that was checked, not to whatever DNS says next
            headers["Host"] = url.netloc.decode("ascii")
            if url.scheme == "https":
                extensions["sni_hostname"] = url.raw_host.decode("ascii")  # the certificate is checked against it
            url = url.copy_with(host=address)
        async with self._http().stream("POST", url, content=body, headers=headers, extensions=extensions) as resp:
            return resp.status_code

    def _http(self) -> httpx.AsyncClient:
        if self._client is None:
            limits = httpx.Limits(max_connections=MAX_CONCURRENCY, max_keepalive_connections=MAX_CONCURRENCY)
            self._client = httpx.AsyncClient(timeout=self.settings.webhook_timeout_s, follow_redirects=False,
                                             trust_env=False, limits=limits)
        return self._client

    def _attempt_row(self, hook: Hook, event: Event, attempt: int, outcome: str, status: int | None,
                     error: str | None, ms: int) -> Row:
        return {"id": new_id("wha"), "tenant_id": hook.tenant_id, "webhook_id": hook.id, "event_id": event.id,
                "event_type": event.type, "attempt": attempt, "outcome": outcome, "status_code": status,
                "error": error[:300] if error else None, "duration_ms": ms, "created_at": now()}

    async def _record(self, rows: list[Row]) -> int:
        """Store attempts; returns how many were stored (those of a deleted webhook are not)."""
        try:
            return await self.storage.webhooks.record_attempts(rows)
        except Exception as exc:
            log.warning("webhook attempts not recorded", extra={"count": len(rows), "error": type(exc).__name__})
            return len(rows)

    async def aclose(self) -> None:
        """Route what is queued, give running deliveries `GRACE_S`, then cancel the rest and record them."""
        self._closing = True
        self._wake.set()
        deadline = time.monotonic() + GRACE_S
        if self._router is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(self._router), GRACE_S)
            self._router.cancel()
            with contextlib.suppress(BaseException):
                await self._router
        if running := set(self._deliveries):
            _, late = await asyncio.wait(running, timeout=max(deadline - time.monotonic(), 0.05))
            for task in late:
                task.cancel()
            await asyncio.gather(*late, return_exceptions=True)
        if self._orphans:
            log.warning("webhook deliveries cut short by shutdown", extra={"count": len(self._orphans)})
            await self._record(self._orphans)
            self._orphans = []
        if self._client is not None:
            await self._client.aclose()
