"""Server-Sent Events for tests: a stream read in a thread over a socket of its own."""

from __future__ import annotations

import contextlib
import json
import socket
import threading
from collections.abc import Callable
from typing import Any

import httpx


class Events:
    """An SSE stream read in a thread over a socket of its own (closing it ends the read at once, which a client
    library's stream, closed from another thread, would not): `wait(predicate)` for the first matching event."""

    def __init__(self, client: httpx.Client, path: str, headers: dict[str, str] | None = None) -> None:
        self.got: list[tuple[str, dict[str, Any]]] = []
        self.cond = threading.Condition()
        url = httpx.URL(str(client.base_url))
        self.sock = socket.create_connection((url.host, url.port), timeout=10)
        cookies = "; ".join(f"{k}={v}" for k, v in client.cookies.items())
        extra = "".join(f"{k}: {v}\r\n" for k, v in (headers or {}).items())
        self.sock.sendall(f"GET {path} HTTP/1.1\r\nHost: {url.host}:{url.port}\r\nAccept: text/event-stream\r\n"
                          f"Cookie: {cookies}\r\n{extra}\r\n".encode())
        self.sock.settimeout(None)
        self.file = self.sock.makefile("rb")
        status = self.file.readline()
        assert b" 200 " in status, status
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        name = ""
        try:
            for raw in self.file:
                line = raw.decode().rstrip("\r\n")
                if line.startswith("event: "):
                    name = line[7:]
                elif line.startswith("data: "):
                    with self.cond:
                        self.got.append((name, json.loads(line[6:])))
                        self.cond.notify_all()
        except (OSError, ValueError):
            pass

    def wait(self, match: Callable[[str, dict[str, Any]], bool], timeout: float = 10) -> dict[str, Any]:
        with self.cond:
            assert self.cond.wait_for(lambda: any(match(n, d) for n, d in self.got), timeout), self.got
            return next(d for n, d in self.got if match(n, d))

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)
        self.sock.close()
