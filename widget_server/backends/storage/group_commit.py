"""Group commit: rows written by concurrent callers share one transaction.

A caller awaits its row's commit. While one commit is in flight, new rows queue and go together in the next,
so under load many turns pay for one round trip, and a lone write is not delayed at all.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Any

log = logging.getLogger(__name__)
Rows = list[dict[str, Any]]


class GroupCommit:
    def __init__(self, flush: Callable[[Rows], Awaitable[None]], max_batch: int = 32) -> None:
        self._flush = flush
        self._max = max_batch
        self._queue: list[tuple[dict[str, Any], asyncio.Future[None]]] = []
        self._task: asyncio.Task[None] | None = None

    async def add(self, row: dict[str, Any]) -> None:
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._queue.append((row, future))
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._drain())
        await future

    async def _drain(self) -> None:
        while self._queue:
            batch, self._queue = self._queue[: self._max], self._queue[self._max :]
            try:
                await self._flush([row for row, _ in batch])
                results: list[BaseException | None] = [None] * len(batch)
            except Exception:
                results = await self._one_by_one(batch)  # one bad row must not fail its neighbours
            for (_, future), error in zip(batch, results, strict=True):
                if future.done():
                    continue
                if error is None:
                    future.set_result(None)
                else:
                    future.set_exception(error)

    async def _one_by_one(self, batch: list[tuple[dict[str, Any], asyncio.Future[None]]]) -> list[BaseException | None]:
        results: list[BaseException | None] = []
        for row, _ in batch:
            try:
                await self._flush([row])
                results.append(None)
            except Exception as exc:
                results.append(exc)
        return results

    async def aclose(self) -> None:
        if self._task is not None:
            with contextlib.suppress(Exception):
                await self._task
