"""The SSE follower shared by the test runs' events and the console inbox: keep-alives while nothing comes, the
queue's items in order, an end when the source lost what it held or the client left, and no read left behind."""

from __future__ import annotations

import asyncio
from typing import Any

from widget_server.edges.live import Follower


class _Client:
    """What a Starlette request's `receive` gives: nothing until the client disconnects."""

    def __init__(self) -> None:
        self.gone = asyncio.Event()

    async def receive(self) -> dict[str, Any]:
        await self.gone.wait()
        return {"type": "http.disconnect"}


def test_keep_alives_while_idle_then_items_then_the_end_the_queue_says() -> None:
    async def run() -> list[Any]:
        client, queue = _Client(), asyncio.Queue[int | None]()
        follower = Follower(client, keep_alive_s=0.01)  # type: ignore[arg-type]
        got: list[Any] = []
        async for item in follower.follow(queue):
            got.append(item)
            if got.count(None) == 2 and not got[2:]:
                for i in (1, 2):
                    queue.put_nowait(i)
                queue.put_nowait(None)
        follower.close()
        return got

    got = asyncio.run(run())
    assert got[:2] == [None, None] and [g for g in got if g is not None] == [1, 2]


def test_a_client_that_leaves_ends_the_stream_and_no_read_is_left_pending() -> None:
    async def run() -> tuple[list[Any], int]:
        client, queue = _Client(), asyncio.Queue[int | None]()
        follower = Follower(client, keep_alive_s=0.01)  # type: ignore[arg-type]
        got: list[Any] = []
        async for item in follower.follow(queue):
            got.append(item)
            client.gone.set()
        follower.close()
        await asyncio.sleep(0)
        pending = [t for t in asyncio.all_tasks() if t is not asyncio.current_task() and not t.done()]
        return got, len(pending)

    got, pending = asyncio.run(run())
    assert got == [None] and pending == 0
