"""The analytics writer: events go into a buffer at once and reach the database in batches, off the reply path.

- A batch is written when `batch` events wait or the oldest has waited `flush_s`; one transaction per batch.
- When the database is unavailable, events stay in the buffer and the write is retried with backoff; past
  `max_buffer` the oldest are appended to a spill file in the data dir, and replayed once writes succeed again
  (also at the next start). An event is stored at most once: rows are keyed by the event's id.
- `aclose` (the app's shutdown, so SIGTERM under uvicorn) writes everything; what still cannot be written is spilled.
- An event the database refuses for its values (not because it is away) would be refused again and hold up every
  later one: the batch is split until that event is alone, and it is set aside in `events-rejected.jsonl` in the
  data dir (counted in `widget_events_rejected_total`, logged), while the rest are written.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import itertools
import json
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime
from pathlib import Path
from typing import IO, Any

from widget_server.backends.storage.analytics import RowsRefused
from widget_server.domain.events import Event
from widget_server.metrics import Metrics
from widget_server.private_files import private_file

log = logging.getLogger(__name__)
# Writes a batch; may return how many webhook deliveries it enqueued with it (0: `on_written` is not called, so the
# webhook worker is not woken to look for deliveries there are none of: a claim query saved per batch).
Write = Callable[[Sequence[dict[str, Any]]], Awaitable[int | None]]
Written = Callable[[Sequence[Event]], None]


def event_row(event: Event) -> dict[str, Any]:
    return {"id": event.id, "ts": event.ts, "tenant_id": event.tenant_id, "persona_id": event.persona_id,
            "conversation_id": event.conversation_id, "visitor_id": event.visitor_id, "channel": event.channel,
            "type": event.type, "schema_version": event.schema_version, "attributes": event.attributes}


def _spill_line(event: Event) -> str:
    return json.dumps({**event_row(event), "ts": event.ts.isoformat()}, separators=(",", ":"), default=str) + "\n"


def _from_spill(line: str) -> Event:
    d = json.loads(line)
    return Event(d["type"], d["tenant_id"], d["persona_id"], d["conversation_id"], d["visitor_id"], d["channel"],
                 d["attributes"], d["id"], datetime.fromisoformat(d["ts"]), d["schema_version"])


def claim_spill(data_dir: Path) -> tuple[Path, IO[str]]:
    """This process's spill file: the first of `events-spill.jsonl`, `events-spill-1.jsonl`, … whose lock no other
    live process holds, and the open lock (closing it, or the process ending, frees the slot). Workers sharing a
    data dir each append to and replay only their own file; a worker that starts later takes a free slot, and with
    it any events the slot's last holder left."""
    for k in itertools.count():
        stem = "events-spill" + (f"-{k}" if k else "")
        lock = private_file(data_dir / f"{stem}.lock").open("a")
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            lock.close()
            continue
        return data_dir / f"{stem}.jsonl", lock
    raise AssertionError("unreachable")


class EventWriter:
    """An `EventSink` that stores events in batches; `emit` never blocks and never raises."""

    def __init__(
        self, write: Write, metrics: Metrics, *, batch: int = 500, flush_s: float = 0.2, max_buffer: int = 100_000,
        spill_path: Path | None = None, on_written: Written | None = None,
    ) -> None:
        self._write = write
        self._metrics = metrics
        self._batch = batch
        self._flush_s = flush_s
        self._max_buffer = max_buffer
        self._spill = spill_path
        self._spilled = bool(spill_path and spill_path.exists() and spill_path.stat().st_size)
        self.on_written = on_written
        self._buffer: deque[Event] = deque()
        self._lock = asyncio.Lock()  # one write at a time: a batch leaves the buffer only once committed
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._closing = False
        self.healthy = True

    @property
    def pending(self) -> int:
        return len(self._buffer)

    def emit(self, event: Event) -> None:
        self._metrics.observe_event(event.type, event.attributes)
        self._buffer.append(event)
        self._metrics.events_buffered.set(len(self._buffer))
        if len(self._buffer) > self._max_buffer and self._spill is not None:
            self._spill_oldest(len(self._buffer) - self._max_buffer // 2)
        if len(self._buffer) >= self._batch:
            self._wake.set()

    def start(self) -> None:
        """Run the writing loop in the current event loop (the app's lifespan calls this once)."""
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        backoff = self._flush_s
        while not self._closing:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(backoff):
                    await self._wake.wait()
            self._wake.clear()
            if self._closing:
                return
            try:
                await self.flush()
                backoff = self._flush_s
            except Exception as exc:
                backoff = min(max(backoff * 2, 0.5), 5.0)
                log.warning("analytics events not written; retrying", extra={
                    "pending": len(self._buffer), "retry_in_s": backoff, "error": type(exc).__name__})

    async def flush(self) -> None:
        """Write everything buffered now (and any spilled events). Raises if the database refuses."""
        async with self._lock:
            try:
                while self._buffer:
                    batch = [self._buffer[i] for i in range(min(self._batch, len(self._buffer)))]
                    await self._write_isolating(batch)
                    for event in batch:  # by identity: a spill or an erasure may have taken some meanwhile
                        if self._buffer and self._buffer[0] is event:
                            self._buffer.popleft()
                    self._metrics.events_buffered.set(len(self._buffer))
                if self._spilled:
                    await self._replay_spill()
                self.healthy = True
            except Exception:
                self.healthy = False
                self._metrics.event_write_errors.inc()
                raise

    async def _write_isolating(self, batch: Sequence[Event]) -> None:
        """Write the batch; when the database refuses its values, write its halves, down to the one to set aside."""
        try:
            await self._write_batch(batch)
        except RowsRefused as exc:
            if len(batch) == 1:
                self._reject(batch[0], str(exc))
                return
            middle = len(batch) // 2
            await self._write_isolating(batch[:middle])
            await self._write_isolating(batch[middle:])

    def _reject(self, event: Event, why: str) -> None:
        self._metrics.events_rejected.inc()
        log.error("analytics event refused by the database; set aside", extra={
            "event_id": event.id, "event_type": event.type, "tenant_id": event.tenant_id, "error": why[:200]})
        if self._spill is not None:
            with private_file(self._spill.with_name("events-rejected.jsonl")).open("a") as f:
                f.write(_spill_line(event))

    async def _write_batch(self, batch: Sequence[Event]) -> None:
        enqueued = await self._write([event_row(e) for e in batch])
        self._metrics.events_written.inc(len(batch))
        if self.on_written is not None and enqueued != 0:
            try:
                self.on_written(batch)
            except Exception:
                log.exception("after-write hook failed")

    def forget(self, tenant_id: str, visitor_id: str) -> int:
        """Drop a visitor's events that are not written yet (erasure): from the buffer and the spill file."""
        keep = deque(e for e in self._buffer if not (e.tenant_id == tenant_id and e.visitor_id == visitor_id))
        dropped = len(self._buffer) - len(keep)
        self._buffer = keep
        if self._spilled and self._spill is not None:
            lines = self._spill.read_text().splitlines(keepends=True)
            kept = [line for line in lines
                    if not ((e := _from_spill(line)).tenant_id == tenant_id and e.visitor_id == visitor_id)]
            self._spill.write_text("".join(kept))
            dropped += len(lines) - len(kept)
        return dropped

    def _spill_oldest(self, n: int) -> None:
        assert self._spill is not None
        with private_file(self._spill).open("a") as f:
            for _ in range(min(n, len(self._buffer))):
                f.write(_spill_line(self._buffer.popleft()))
                self._metrics.events_spilled.inc()
        self._spilled = True
        self._metrics.events_buffered.set(len(self._buffer))

    async def _replay_spill(self) -> None:
        assert self._spill is not None
        lines = self._spill.read_text().splitlines()
        for start in range(0, len(lines), self._batch):
            await self._write_batch([_from_spill(line) for line in lines[start:start + self._batch]])
        self._spill.unlink(missing_ok=True)
        self._spilled = False
        log.info("spilled analytics events written", extra={"count": len(lines)})

    async def aclose(self, timeout_s: float = 10.0) -> None:
        """Shutdown: stop the loop, write what is left (retrying for up to `timeout_s`), spill what cannot be."""
        self._closing = True
        self._wake.set()
        if self._task is not None:
            with contextlib.suppress(BaseException):
                await self._task
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                await self.flush()
                return
            except Exception:
                if time.monotonic() >= deadline:
                    break
                await asyncio.sleep(0.5)
        if self._spill is not None and self._buffer:
            count = len(self._buffer)
            self._spill_oldest(count)
            log.error("database unavailable at shutdown: analytics events spilled to disk",
                      extra={"count": count, "path": str(self._spill)})
