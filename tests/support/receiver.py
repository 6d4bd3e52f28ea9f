"""A webhook receiver on loopback for the tests, and the calls a tenant makes to set webhooks up."""

from __future__ import annotations

import asyncio
import json
import secrets
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

if TYPE_CHECKING:
    from tests.conftest import Stack


@dataclass
class Received:
    name: str
    headers: dict[str, str]
    body: bytes

    @property
    def json(self) -> dict[str, Any]:
        return json.loads(self.body)  # type: ignore[no-any-return]


class Receiver:
    """A webhook receiver: `/hook/{name}` answers the statuses planned for `name` in turn, then 200. It counts the
    requests to each name in flight at once (`most`), and a name held (`hold`) keeps its requests until `open`."""

    def __init__(self) -> None:
        self.got: list[Received] = []
        self.plan: dict[str, list[int]] = {}
        self.delay: dict[str, float] = {}
        self.lock = threading.Lock()
        self.changed = threading.Condition(self.lock)  # notified when a request arrives and when it is answered
        self.in_flight: Counter[str] = Counter()
        self.most: Counter[str] = Counter()  # the most requests to a name in flight at once
        self.gates: dict[str, asyncio.Event] = {}
        self.loop: asyncio.AbstractEventLoop | None = None  # the server's, where the gates are waited on
        self.url = ""

    def app(self) -> Starlette:
        async def hook(request: Request) -> Response:
            name = request.path_params["name"]
            body = await request.body()
            with self.changed:
                self.got.append(Received(name, dict(request.headers), body))
                plan = self.plan.get(name)
                status = plan.pop(0) if plan else 200
                self.in_flight[name] += 1
                self.most[name] = max(self.most[name], self.in_flight[name])
                self.loop, gate = asyncio.get_running_loop(), self.gates.get(name)
                self.changed.notify_all()
            try:
                if gate is not None:
                    await gate.wait()
                started = time.monotonic()
                while time.monotonic() - started < self.delay.get(name, 0):  # a hanging receiver, until released
                    await asyncio.sleep(0.02)
            finally:
                with self.changed:  # answered from here on, as far as the sender's limits are concerned
                    self.in_flight[name] -= 1
                    self.changed.notify_all()
            if status == 302:
                return RedirectResponse(f"/hook/{name}-redirected", status_code=302)
            return Response(status_code=status)

        return Starlette(routes=[Route("/hook/{name}", hook, methods=["POST"])])

    def new(self, *plan: int) -> tuple[str, str]:
        """A fresh hook name and its URL; it answers `plan` first."""
        name = secrets.token_hex(4)
        self.plan[name] = list(plan)
        return name, f"{self.url}/hook/{name}"

    def of(self, name: str) -> list[Received]:
        with self.lock:
            return [r for r in self.got if r.name == name]

    def wait(self, name: str, done: Callable[[list[Received]], bool], timeout: float = 10) -> list[Received]:
        with self.changed:
            matched = self.changed.wait_for(lambda: done([r for r in self.got if r.name == name]), timeout)
        got = self.of(name)
        assert matched, f"deliveries never matched; got {[r.json['type'] for r in got]}"
        return got

    def hold(self, name: str) -> None:
        """Keep `name`'s requests unanswered until `open(name)`."""
        self.gates[name] = asyncio.Event()

    def open(self, name: str) -> None:
        """Answer `name`'s held requests, and no longer hold the next ones."""
        gate = self.gates.pop(name, None)
        if gate is not None and self.loop is not None:
            self.loop.call_soon_threadsafe(gate.set)

    def wait_in_flight(self, name: str, n: int, timeout: float = 10) -> None:
        """Until `n` requests to `name` are in flight at once."""
        with self.changed:
            assert self.changed.wait_for(lambda: self.in_flight[name] >= n, timeout), self.in_flight[name]


def _in_flight(stack: Stack) -> float:
    line = "widget_webhook_tries_in_flight "
    text = httpx.get(f"{stack.url}/metrics").text
    return float(next(row[len(line):] for row in text.splitlines() if row.startswith(line)))


def settled(*stacks: Stack, timeout: float = 10) -> None:
    """Wait until no delivery is left to make: the tenants' outbox is empty and no node has a try in flight.
    Deliveries are written with their events, so once the events of interest are committed (wait for them
    first), nothing can arrive after this that has not arrived already: no sleep "long enough" needed."""
    from widget_server.backends.storage import open_storage

    async def pending() -> int:
        storage = await open_storage(stacks[0].settings.resolved_database_url)
        try:
            return sum([len(await storage.deliveries.pending(s.tenant_id)) for s in stacks])
        finally:
            await storage.close()

    deadline = time.monotonic() + timeout
    while asyncio.run(pending()) or any(_in_flight(s) for s in stacks):
        assert time.monotonic() < deadline, "webhook deliveries never settled"
        time.sleep(0.02)


def readme_verify() -> Callable[..., bool]:
    """The README's verification snippet, run as a receiver would copy it."""
    section = (Path(__file__).parents[2] / "README.md").read_text().split("### Webhooks", 1)[1]
    code = section.split("```python\n", 1)[1].split("```", 1)[0]
    namespace: dict[str, Any] = {}
    exec(code, namespace)
    return namespace["verify_signature"]  # type: ignore[no-any-return]


def create(stack: Stack, url: str, sk: str | None = None, **body: Any) -> httpx.Response:
    return httpx.post(f"{stack.url}/v1/webhooks", json={"url": url, **body},
                      headers={"Authorization": f"Bearer {sk or stack.sk}"})


def attempts(stack: Stack, webhook_id: str, sk: str | None = None) -> httpx.Response:
    return httpx.get(f"{stack.url}/v1/webhooks/{webhook_id}/attempts",
                     headers={"Authorization": f"Bearer {sk or stack.sk}"})
