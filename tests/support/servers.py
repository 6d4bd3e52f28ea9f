"""Real servers for tests: any ASGI app under uvicorn on a free loopback port, in a thread or a process."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import uvicorn


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def serve_in_thread(app: Any, **config: Any) -> Iterator[str]:
    """Yields the base URL (`http://127.0.0.1:PORT`) while uvicorn serves `app`."""
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning",
                                           ws_max_size=64 * 1024, **config))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("test server did not start")
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=15)


def dies_with_parent() -> None:
    """A `preexec_fn`: the child gets SIGTERM when the test process ends, however it ends (Linux `prctl`), so a
    killed test run leaves no server, Redis or balancer behind."""
    import ctypes
    import signal

    ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def serve_process(env: dict[str, str]) -> tuple[subprocess.Popen[bytes], str]:
    """`widget-server serve` in its own process with these `WIDGET_*` settings; returns it once `/health` answers."""
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "widget_server", "serve", "--port", str(port)],
                            env={**os.environ, **env}, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    url = f"http://127.0.0.1:{port}"
    wait_healthy(proc, url, 30)
    return proc, url


def wait_healthy(proc: subprocess.Popen[bytes], url: str, timeout: float, log: Path | None = None) -> None:
    """Poll `/health` until the server at `url` answers (200, or 503 while a backend is still down); fail with the
    server's stderr (or the end of its `log`) if it exits or does not answer within `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            if httpx.get(url + "/health").status_code in (200, 503):
                return
        except httpx.TransportError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            said = log.read_text(errors="replace") if log else proc.communicate()[1].decode()
            raise AssertionError(f"the server did not start: {said[-2000:]}")
        time.sleep(0.1)  # the poll's interval: the loop waits for /health itself
