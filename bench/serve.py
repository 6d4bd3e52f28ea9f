"""Each app of the benchmark in a process of its own: uvicorn on a loopback socket, the way tests serve apps.

Separate processes keep the load generator, the fake upstream and the server under test from sharing one GIL and
one event loop, so a figure measured for one of them is not the cost of another. A process may also run a
*ticker* in the event loop that serves the app: it sleeps `tick_ms` again and again and records how late each
wake-up is (loop lag). `time.monotonic()` is system-wide on Linux, so the parent can cut those samples into
the time windows it measured itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing
import os
import socket
import time
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from pathlib import Path
from types import TracebackType
from typing import Any, Literal

import uvicorn

Lag = tuple[float, float]  # (monotonic time of the wake-up, seconds late)


@dataclass(frozen=True)
class AppSpec:
    kind: Literal["upstream", "server", "bare"]
    settings: dict[str, Any] = field(default_factory=dict)  # server: Settings(**settings)
    upstream_base_url: str = ""  # bare: where it streams from
    tick_ms: float = 0.0  # > 0: measure the event-loop lag of this process


def _build(spec: AppSpec) -> Any:
    if spec.kind == "upstream":
        from tests.support.upstream import Upstream

        return Upstream().app()
    if spec.kind == "server":
        from widget_server.app import create_app
        from widget_server.settings import Settings

        return create_app(Settings(**spec.settings))
    from bench.bare import bare_app

    return bare_app(spec.upstream_base_url)


async def _tick(period_s: float, samples: list[Lag]) -> None:
    while True:
        asleep = time.monotonic()
        await asyncio.sleep(period_s)
        woke = time.monotonic()
        samples.append((woke, max(0.0, woke - asleep - period_s)))


async def _serve(spec: AppSpec, conn: Connection) -> None:
    # proto must be spelled out: asyncio sets TCP_NODELAY only on sockets whose proto is IPPROTO_TCP, and with
    # Nagle left on, a small response write waits ~40 ms for the peer's delayed ACK.
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(_build(spec), log_level="warning", ws_max_size=64 * 1024))
    serving = asyncio.create_task(server.serve(sockets=[sock]))
    samples: list[Lag] = []
    ticker = asyncio.create_task(_tick(spec.tick_ms / 1000, samples)) if spec.tick_ms > 0 else None
    while not server.started:
        if serving.done():
            serving.result()
            raise RuntimeError("uvicorn stopped before it started")
        await asyncio.sleep(0.01)
    conn.send(f"http://127.0.0.1:{port}")
    await asyncio.to_thread(conn.recv)  # the parent says stop
    if ticker is not None:
        ticker.cancel()
    server.should_exit = True
    await serving
    conn.send(samples)


def _child(spec: AppSpec, conn: Connection) -> None:
    asyncio.run(_serve(spec, conn))


class Served:
    """`with Served(spec) as app: app.url …`; `app.stop()` returns the loop-lag samples (when ticking)."""

    def __init__(self, spec: AppSpec, start_timeout_s: float = 90.0) -> None:
        ctx = multiprocessing.get_context("spawn")
        self._conn, child_conn = ctx.Pipe()
        self._proc = ctx.Process(target=_child, args=(spec, child_conn), name=f"bench-{spec.kind}", daemon=True)
        self._timeout = start_timeout_s
        self._stopped = False
        self.url = ""

    def __enter__(self) -> Served:
        self._proc.start()
        if not self._conn.poll(self._timeout):
            self._proc.terminate()
            raise RuntimeError(f"{self._proc.name} did not start")
        self.url = str(self._conn.recv())
        return self

    def cpu_seconds(self) -> float:
        """CPU time (user + system, all threads) the process has used so far; Linux `/proc`."""
        fields = Path(f"/proc/{self._proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def stop(self) -> list[Lag]:
        if self._stopped:
            return []
        self._stopped = True
        self._conn.send("stop")
        samples: list[Lag] = self._conn.recv() if self._conn.poll(30) else []
        self._proc.join(timeout=15)
        return samples

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        with contextlib.suppress(Exception):
            self.stop()
        if self._proc.is_alive():
            self._proc.terminate()  # only this process, which we started
            self._proc.join(timeout=5)
