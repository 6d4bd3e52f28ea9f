"""A Server-Sent Events stream that follows a queue until the client leaves: the loop the test runs' events and
the console inbox's stream share."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import TypeVar

from starlette.requests import Request

KEEP_ALIVE_S = 15.0
KEEP_ALIVE = ": keep-alive\n\n"  # a comment line: proxies keep the connection, browsers ignore it

T = TypeVar("T")


async def _gone(request: Request) -> None:
    while (await request.receive())["type"] != "http.disconnect":
        pass


class Follower:
    """Watches for the client's disconnect from the moment it is made (noticed at once, not at the next keep-alive).
    `follow` then yields what the queue gives, `None` after every `keep_alive_s` without any, and ends when the client
    left or the queue gave `None` (the source lost what it held: the client reads afresh)."""

    def __init__(self, request: Request, keep_alive_s: float = KEEP_ALIVE_S) -> None:
        self._left = asyncio.ensure_future(_gone(request))
        self._keep_alive_s = keep_alive_s

    @property
    def left(self) -> bool:
        return self._left.done()

    async def follow(self, queue: asyncio.Queue[T | None]) -> AsyncIterator[T | None]:
        while not self._left.done():
            got = asyncio.ensure_future(queue.get())
            ready = False
            try:
                await asyncio.wait({got, self._left}, timeout=self._keep_alive_s,
                                   return_when=asyncio.FIRST_COMPLETED)
                ready = got.done()
            finally:
                if not ready:
                    got.cancel()  # also when the stream is closed meanwhile: no pending get left behind
            if not ready:  # (a cancelled task is only marked so once it runs again: test what was seen)
                if not self._left.done():
                    yield None
                continue
            item = got.result()
            if item is None:
                return
            yield item

    def close(self) -> None:
        self._left.cancel()
