"""A Redis server of a test's own (`redis-server` on a free loopback port, keeping nothing on disk), which a test
may kill and start again empty, as when Redis restarts in production."""

from __future__ import annotations

import signal
import subprocess
import time
from pathlib import Path

import redis

from tests.support.servers import dies_with_parent, free_port


class RedisServer:
    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        log = (self.workdir / f"redis-{self.port}.log").open("ab")
        self.proc = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             "--dir", str(self.workdir)], stdout=log, stderr=subprocess.STDOUT, preexec_fn=dies_with_parent)
        client = redis.Redis.from_url(self.url, socket_connect_timeout=1)
        deadline = time.monotonic() + 15
        try:
            while True:
                try:
                    if client.ping():
                        return
                except redis.ConnectionError:
                    if self.proc.poll() is not None or time.monotonic() > deadline:
                        raise AssertionError(f"redis-server did not start on port {self.port}") from None
                time.sleep(0.02)  # the poll's interval: the loop waits for PING itself
        finally:
            client.close()

    def stop(self, kill: bool = False) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL if kill else signal.SIGTERM)
            self.proc.wait(timeout=15)
        self.proc = None

    def restart(self, kill: bool = True) -> None:
        """Down and up again on the same port with nothing in it (a new run id): every key is gone."""
        self.stop(kill=kill)
        self.start()
