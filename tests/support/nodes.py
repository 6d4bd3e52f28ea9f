"""Several `widget-server serve` processes sharing one PostgreSQL database and one Redis of their own, behind
HAProxy (tests/support/balancer.py): a deployment of several nodes on one machine, which a test can kill a node
of, stop, start again, or take Redis away from."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

from tests.support.balancer import Balancer
from tests.support.redis_server import RedisServer
from tests.support.servers import dies_with_parent, free_port, wait_healthy

ROOT = Path(__file__).resolve().parents[2]
TOOLS = ("haproxy", "redis-server")


def missing_tools() -> list[str]:
    return [tool for tool in TOOLS if shutil.which(tool) is None]


def served_by(headers: Mapping[str, str]) -> str:
    """The node that answered, as the balancer tells it."""
    return headers["x-served-by"]


@dataclass
class Node:
    name: str
    port: int
    log: Path
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


@dataclass
class Cluster:
    url: str
    nodes: list[Node]
    redis: RedisServer
    lb: Balancer
    env: dict[str, str]
    workdir: Path
    workers: int = 1

    def node(self, name: str) -> Node:
        return next(n for n in self.nodes if n.name == name)

    def start(self, name: str) -> None:
        """Start the node and wait until it answers on its own port and HAProxy holds it up."""
        node = self.node(name)
        env = {**os.environ, **self.env, "WIDGET_NODE_NAME": name,
               "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep)}
        with node.log.open("ab") as log:
            node.proc = subprocess.Popen(
                [sys.executable, "-m", "widget_server", "serve", "--port", str(node.port),
                 "--workers", str(self.workers)], env=env, cwd=self.workdir, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True, preexec_fn=dies_with_parent)  # a group of its own: a kill takes its workers
        wait_healthy(node.proc, node.url, 60, log=node.log)
        self.lb.wait_status(name, "UP")

    def kill(self, name: str) -> None:
        """SIGKILL to the node and its workers: it ends at once, finishing nothing (replies, sockets, leases)."""
        node = self._running(name)
        os.killpg(node.proc.pid, signal.SIGKILL)  # type: ignore[union-attr]
        node.proc.wait(timeout=30)  # type: ignore[union-attr]

    def terminate(self, name: str) -> None:
        """SIGTERM, as a deploy sends it; the node shuts down gracefully meanwhile (`wait_exit` waits for it)."""
        self._running(name).proc.send_signal(signal.SIGTERM)  # type: ignore[union-attr]  # uvicorn tells workers

    def wait_exit(self, name: str, timeout: float = 30) -> int:
        proc = self.node(name).proc
        assert proc is not None
        return proc.wait(timeout=timeout)

    def _running(self, name: str) -> Node:
        node = self.node(name)
        assert node.proc is not None and node.proc.poll() is None, f"{name} is not running"
        return node

    def wait_down(self, name: str) -> None:
        self.lb.wait_status(name, "DOWN")

    def heal(self) -> None:
        """Every node running and held up, whatever a test did to them."""
        for node in self.nodes:
            self.lb.command(f"enable server nodes/{node.name}")
        for node in self.nodes:
            if node.proc is None or node.proc.poll() is not None:
                self.start(node.name)
        for node in self.nodes:
            self.lb.wait_status(node.name, "UP")

    def logs(self) -> str:
        return "\n".join(f"--- {n.name} ---\n{n.log.read_text(errors='replace')[-6000:]}" for n in self.nodes
                         if n.log.exists())


@contextlib.contextmanager
def running_cluster(workdir: Path, env: dict[str, str], n: int = 2, workers: int = 1) -> Iterator[Cluster]:
    """`n` nodes (each `serve --workers workers`) on `env`'s database, with a Redis and an HAProxy of their own."""
    redis = RedisServer(workdir)
    redis.start()
    nodes = [Node(f"n{i}", free_port(), workdir / f"n{i}.log") for i in range(n)]
    lb = Balancer(workdir, {node.name: node.port for node in nodes})
    cluster = Cluster(lb.url, nodes, redis, lb, {**env, "WIDGET_REDIS_URL": redis.url, "WIDGET_DATA_DIR":
                                                 str(workdir)}, workdir, workers)
    try:
        lb.start()
        for node in nodes:
            cluster.start(node.name)
        yield cluster
    finally:
        for node in nodes:
            if node.proc is not None and node.proc.poll() is None:
                node.proc.send_signal(signal.SIGTERM)
        for node in nodes:
            if node.proc is not None:
                try:
                    node.proc.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    node.proc.kill()
                    node.proc.wait()
        lb.stop()
        redis.stop()
