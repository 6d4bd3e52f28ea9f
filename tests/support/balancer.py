"""HAProxy in front of the test nodes, as a deployment would run it: round robin, no sticky sessions, health
checks on `/health`, a retry on another node when one refuses the connection. Each response says which node
served it (`X-Served-By`), and the stats socket says which nodes HAProxy holds up."""

from __future__ import annotations

import csv
import io
import signal
import socket
import subprocess
import time
from pathlib import Path

from tests.support.servers import dies_with_parent, free_port

CONFIG = """\
global
  maxconn 9000  # two descriptors per connection, within a 20,000 open-file limit
  stats socket {sock} mode 600 level admin

defaults
  mode http
  timeout connect 2s
  timeout client 1h
  timeout server 1h
  timeout tunnel 1h
  option redispatch
  retries 3

frontend widget
  bind 127.0.0.1:{port}
  default_backend nodes

backend nodes
  balance roundrobin
  option httpchk
  http-check send meth GET uri /health ver HTTP/1.1 hdr Host 127.0.0.1
  http-response set-header X-Served-By %s
  default-server check inter 1s fall 2 rise 2
{servers}
"""


class Balancer:
    def __init__(self, workdir: Path, upstreams: dict[str, int]) -> None:
        self.workdir = workdir
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.sock = workdir / "haproxy.sock"
        self.config = workdir / "haproxy.cfg"
        servers = "\n".join(f"  server {name} 127.0.0.1:{port}" for name, port in upstreams.items())
        self.config.write_text(CONFIG.format(sock=self.sock, port=self.port, servers=servers))
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        log = (self.workdir / "haproxy.log").open("ab")
        self.proc = subprocess.Popen(["haproxy", "-db", "-f", str(self.config)], stdout=log, stderr=subprocess.STDOUT,
                                     preexec_fn=dies_with_parent)
        deadline = time.monotonic() + 15
        while not self.sock.exists() or not self._answers():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"haproxy did not start: {(self.workdir / 'haproxy.log').read_text()[-2000:]}")
            time.sleep(0.02)  # the poll's interval: the loop waits for the stats socket itself

    def _answers(self) -> bool:
        try:
            self.command("show info")
            return True
        except OSError:
            return False

    def command(self, line: str) -> str:
        with socket.socket(socket.AF_UNIX) as s:
            s.settimeout(5)
            s.connect(str(self.sock))
            s.sendall(line.encode() + b"\n")
            chunks = []
            while chunk := s.recv(65536):
                chunks.append(chunk)
        return b"".join(chunks).decode()

    def status(self) -> dict[str, str]:
        """Each node's state as HAProxy holds it: UP, DOWN, or a transition such as `UP 1/2`."""
        rows = csv.DictReader(io.StringIO(self.command("show stat").lstrip("# ")))
        return {r["svname"]: r["status"] for r in rows if r["pxname"] == "nodes" and r["svname"] != "BACKEND"}

    def wait_status(self, name: str, wanted: str, timeout: float = 20) -> None:
        deadline = time.monotonic() + timeout
        while (got := self.status().get(name)) != wanted:
            assert time.monotonic() < deadline, f"haproxy holds {name} {got}, not {wanted}"
            time.sleep(0.05)  # the poll's interval: HAProxy's own checks run every second

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait(timeout=15)
        self.proc = None
