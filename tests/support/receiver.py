"""A webhook receiver on loopback for the tests, and the calls a tenant makes to set webhooks up."""

from __future__ import annotations

import asyncio
import json
import secrets
import threading
import time
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
    """A webhook receiver: `/hook/{name}` answers the statuses planned for `name` in turn, then 200."""

    def __init__(self) -> None:
        self.got: list[Received] = []
        self.plan: dict[str, list[int]] = {}
        self.delay: dict[str, float] = {}
        self.lock = threading.Lock()
        self.url = ""

    def app(self) -> Starlette:
        async def hook(request: Request) -> Response:
            name = request.path_params["name"]
            body = await request.body()
            with self.lock:
                self.got.append(Received(name, dict(request.headers), body))
                plan = self.plan.get(name)
                status = plan.pop(0) if plan else 200
            started = time.monotonic()
            while time.monotonic() - started < self.delay.get(name, 0):  # a hanging receiver, until released
                await asyncio.sleep(0.02)
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
        deadline = time.monotonic() + timeout
        while not done(got := self.of(name)):
            assert time.monotonic() < deadline, f"deliveries never matched; got {[r.json['type'] for r in got]}"
            time.sleep(0.02)
        return got


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
