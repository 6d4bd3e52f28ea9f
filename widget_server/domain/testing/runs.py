"""Test runs: a suite run in the background for a tenant (`POST /v1/test-runs`, the console's Tests page), stored
with its results, its progress told on the conversation bus (`testrun:<id>`) to whoever follows it, on any node.

A node runs at most `MOST_AT_ONCE` runs of a tenant at a time (more wait, `queued`); a run writes `beat_at` after
each case, so a run whose node stopped (a `kill -9`) is seen as `error` once it has been silent `STALE_S`; a node
that shuts down ends its runs as `error` ("interrupted"). A run's own failure never fails the node.
"""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any

from widget_server.clock import now
from widget_server.domain.chat.deps import Deps
from widget_server.ids import new_id

log = logging.getLogger(__name__)
MOST_AT_ONCE = 2
STALE_S = 120
ENDED = frozenset({"passed", "failed", "error"})
# (deps, tenant_id, suite document, options, progress) → the result: {"summary": {...}, ...}
Runner = Callable[[Deps, str, dict[str, Any], dict[str, Any], Callable[[dict[str, Any]], None]],
                  Awaitable[dict[str, Any]]]


def run_line(run_id: str) -> str:
    return f"testrun:{run_id}"


def stale(row: dict[str, Any]) -> bool:
    """A run that says it is running (or queued) but whose node has not written for `STALE_S`."""
    last = row.get("beat_at") or row["created_at"]
    return row["status"] not in ENDED and now() - last > timedelta(seconds=STALE_S)


class TestRuns:
    __test__ = False  # (not a pytest class)

    def __init__(self, deps: Deps, runner: Runner) -> None:
        self.deps = deps
        self.runner = runner
        self.tasks: set[asyncio.Task[None]] = set()
        self.slots: defaultdict[str, asyncio.Semaphore] = defaultdict(lambda: asyncio.Semaphore(MOST_AT_ONCE))

    async def start(self, tenant_id: str, suite: dict[str, Any], options: dict[str, Any], *, source: str,
                    created_by: str | None = None) -> dict[str, Any]:
        """Store the run (queued) and start it; returns the stored row."""
        row = {"id": new_id("run"), "tenant_id": tenant_id, "suite_name": str(suite.get("suite") or "suite")[:200],
               "source": source, "status": "queued", "suite": suite, "options": options, "summary": None,
               "result": None, "error": None, "created_by": created_by, "created_at": now(), "started_at": None,
               "finished_at": None, "beat_at": now()}
        await self.deps.storage.test_runs.add(row)
        task = asyncio.create_task(self._run(row))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)
        return row

    async def get(self, tenant_id: str, run_id: str) -> dict[str, Any] | None:
        row = await self.deps.storage.test_runs.get(tenant_id, run_id)
        if row is not None and stale(row):
            await self._end(row, "error", error="interrupted: the node running it stopped")
            row = await self.deps.storage.test_runs.get(tenant_id, run_id)
        return row

    async def _end(self, row: dict[str, Any], status: str, **values: Any) -> None:
        done = await self.deps.storage.test_runs.update(
            row["tenant_id"], row["id"], {"status": status, "finished_at": now(), **values},
            from_status=("queued", "running"))
        if done:
            self.deps.hub.emit(run_line(row["id"]), {"type": "done", "status": status,
                                                     "summary": values.get("summary"), "error": values.get("error")})

    async def _run(self, row: dict[str, Any]) -> None:
        store, tenant_id, run_id = self.deps.storage.test_runs, row["tenant_id"], row["id"]
        line = run_line(run_id)
        beats: set[asyncio.Task[bool]] = set()

        def progress(step: dict[str, Any]) -> None:
            self.deps.hub.emit(line, {"type": "progress", **step})
            beat = asyncio.ensure_future(store.update(tenant_id, run_id, {"beat_at": now()}))
            beats.add(beat)
            beat.add_done_callback(beats.discard)

        try:
            # The run's line is known from its start, so that a follower joining late reads all it told.
            await self.deps.hub.bus.line(line).since(None)
            async with self.slots[tenant_id]:
                await store.update(tenant_id, run_id, {"status": "running", "started_at": now(), "beat_at": now()})
                self.deps.hub.emit(line, {"type": "status", "status": "running"})
                result = await self.runner(self.deps, tenant_id, row["suite"], row["options"], progress)
                await asyncio.gather(*beats, return_exceptions=True)
                summary = result.get("summary") or {}
                status = "passed" if not summary.get("failed") and not summary.get("errors") else "failed"
                await self._end(row, status, summary=summary, result=result)
        except asyncio.CancelledError:
            await asyncio.shield(self._end(row, "error", error="interrupted: the server stopped"))
            raise
        except Exception as exc:  # a suite that could not run: the run says why; the node goes on
            log.warning("test run failed", exc_info=True, extra={"run_id": run_id})
            await self._end(row, "error", error=f"{type(exc).__name__}: {exc}"[:500])

    async def aclose(self) -> None:
        tasks = list(self.tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
