"""Fixtures are factories: real databases (SQLite, PostgreSQL), a real upstream and real servers on loopback."""

from __future__ import annotations

import asyncio
import contextlib
import json
import secrets
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import hypothesis
import pytest
from websockets.sync.client import ClientConnection, connect

from tests.support.receiver import Receiver
from tests.support.servers import serve_in_thread
from tests.support.upstream import Upstream
from widget_server.app import create_app
from widget_server.backends.storage import open_storage
from widget_server.domain import keys, tenants
from widget_server.settings import Settings

# No Hypothesis test times its examples: a loaded CI machine made the default 200 ms deadline fail a chart test.
hypothesis.settings.register_profile("suite", deadline=None)
hypothesis.settings.load_profile("suite")

PG_ADMIN = "postgresql://postgres@127.0.0.1:5432/test"
REDIS = "redis://127.0.0.1:6379/0"
ORIGIN = "https://shop.example"


@contextlib.contextmanager
def fresh_pg_database() -> Iterator[str]:
    """A new PostgreSQL database, dropped afterwards."""
    import asyncpg

    name = f"widget_test_{secrets.token_hex(4)}"

    async def admin(sql: str) -> None:
        conn = await asyncpg.connect(PG_ADMIN)
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    try:
        asyncio.run(admin(f'CREATE DATABASE "{name}"'))
    except OSError as exc:
        pytest.fail(f"PostgreSQL is not reachable at {PG_ADMIN} ({exc}); .ci/run starts it")
    try:
        yield f"postgresql://postgres@127.0.0.1:5432/{name}"
    finally:
        asyncio.run(admin(f'DROP DATABASE "{name}" WITH (FORCE)'))


@pytest.fixture(scope="session")
def pg_url() -> Iterator[str]:
    """A fresh PostgreSQL database for this test session, dropped at the end."""
    with fresh_pg_database() as url:
        yield url


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'widget.db'}"
    return str(request.getfixturevalue("pg_url"))


@pytest.fixture
def redis_prefix() -> Iterator[str]:
    """A Redis key prefix of this test's own (the Redis is shared); its keys are deleted afterwards."""
    import redis

    prefix = f"test:{secrets.token_hex(4)}:"
    yield prefix
    client = redis.Redis.from_url(REDIS)
    try:
        for key in client.scan_iter(match=prefix + "*"):
            client.delete(key)
    finally:
        client.close()


@pytest.fixture(scope="session")
def upstream() -> Iterator[tuple[Upstream, str]]:
    fake = Upstream()
    with serve_in_thread(fake.app()) as url:
        yield fake, url + "/v1"


@pytest.fixture
def settings_factory(tmp_path: Path, upstream: tuple[Upstream, str]) -> Callable[..., Settings]:
    def make(**overrides: Any) -> Settings:
        values: dict[str, Any] = {
            "data_dir": tmp_path, "database_url": f"sqlite:///{tmp_path / 'widget.db'}", "provider": "openai",
            "openai_base_url": upstream[1], "openai_model": "echo", "provider_timeout_s": 5,
            "provider_stall_s": 2, "hello_timeout_s": 10, "secret_key": "test-secret", "coalesce_ms": 20,
            "events_flush_ms": 20,
        }
        return Settings(**{**values, **overrides})
    return make


async def _tenant(url: str, origins: list[str]) -> dict[str, str]:
    storage = await open_storage(url)
    try:
        tenant_id, sk = await tenants.create_tenant(storage, "Test " + secrets.token_hex(3))
        pk, _ = await keys.create_key(storage, tenant_id, "publishable", origins)
    finally:
        await storage.close()
    return {"tenant_id": tenant_id, "sk": sk, "pk": pk}


@dataclass
class Stack:
    """A running server with one tenant; helpers speak its REST API and widget protocol."""

    url: str
    settings: Settings
    tenant_id: str
    sk: str
    pk: str
    exits: contextlib.ExitStack
    origin: str = ORIGIN

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.sk}"}

    def tenant(self, origins: list[str] | None = None) -> dict[str, str]:
        """Another tenant on the same server."""
        return asyncio.run(_tenant(self.settings.resolved_database_url, origins or [self.origin]))

    def persona(self, model: str = "echo", **fields: Any) -> str:
        body = {"name": "Tester", "slug": f"p-{secrets.token_hex(4)}", "system_prompt": "You test.",
                "greeting": "Hi!", "provider": {"kind": "openai", "model": model}, **fields}
        r = httpx.post(f"{self.url}/v1/personas", json=body, headers=self.auth)
        assert r.status_code == 201, r.text
        return str(r.json()["slug"])

    def session(self, persona: str, origin: str | None = None, **extra: Any) -> httpx.Response:
        return httpx.post(f"{self.url}/v1/widget/sessions", json={"key": self.pk, "persona": persona, **extra},
                          headers={"Origin": origin or self.origin})

    def token(self, persona: str, **extra: Any) -> tuple[str, str]:
        r = self.session(persona, **extra)
        assert r.status_code == 201, r.text
        return r.json()["token"], r.json()["visitor_id"]

    def connect(self, origin: str | None = None) -> WS:
        headers = {"Origin": origin} if origin else {}
        conn = connect(self.url.replace("http", "ws") + "/v1/widget/ws", additional_headers=headers,
                       max_size=1 << 20, open_timeout=10)
        return WS(self.exits.enter_context(conn))

    def turn(self, persona: str, text: str, timeout: float = 15) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        """One visitor message on a new conversation: the `ready` frame and every frame up to `reply.end`."""
        ws = self.open(persona)
        ready = ws.recv()
        ws.send({"type": "message", "client_id": "c1", "text": text})
        return ready, ws.until("reply.end", timeout=timeout)

    def events(self, sk: str | None = None, **params: Any) -> list[dict[str, Any]]:
        """Every stored event matching `params` (the API's filters), following the cursor to the end."""
        out: list[dict[str, Any]] = []
        cursor = None
        while True:
            query = {**params, "limit": 1000, **({"cursor": cursor} if cursor else {})}
            r = httpx.get(f"{self.url}/v1/analytics/events", params=query,
                          headers={"Authorization": f"Bearer {sk or self.sk}"})
            assert r.status_code == 200, r.text
            out += r.json()["data"]
            cursor = r.json()["next_cursor"]
            if not r.json()["has_more"]:
                return out

    def wait_events(self, done: Callable[[list[dict[str, Any]]], bool], timeout: float = 10,
                    **params: Any) -> list[dict[str, Any]]:
        """Poll the events until `done(events)`: the writer commits in batches, a little after the fact."""
        deadline = time.monotonic() + timeout
        while not done(got := self.events(**params)):
            assert time.monotonic() < deadline, f"events never matched; last: {[e['type'] for e in got]}"
            time.sleep(0.05)
        return got

    def open(self, persona: str, resume: dict[str, Any] | None = None, token: str | None = None) -> WS:
        ws = self.connect(self.origin)
        hello: dict[str, Any] = {"type": "hello", "token": token or self.token(persona)[0]}
        if resume:
            hello["resume"] = resume
        ws.send(hello)
        return ws


class WS:
    def __init__(self, conn: ClientConnection) -> None:
        self.conn = conn
        self.frames: list[dict[str, Any]] = []

    def send(self, frame: dict[str, Any] | str) -> None:
        self.conn.send(frame if isinstance(frame, str) else json.dumps(frame))

    def recv(self, timeout: float = 10) -> dict[str, Any]:
        frame = json.loads(self.conn.recv(timeout=timeout))
        self.frames.append(frame)
        return frame  # type: ignore[no-any-return]

    def until(self, type_: str, timeout: float = 15) -> list[dict[str, Any]]:
        """Frames up to and including the first of `type_`."""
        got = []
        while True:
            frame = self.recv(timeout)
            got.append(frame)
            if frame["type"] == type_:
                return got

    def close_code(self, timeout: float = 10) -> int | None:
        from websockets.exceptions import ConnectionClosed

        try:
            while True:
                self.recv(timeout)
        except ConnectionClosed as exc:
            return exc.rcvd.code if exc.rcvd else None

    def close(self) -> None:
        self.conn.close()


@pytest.fixture
def stack_factory(settings_factory: Callable[..., Settings]) -> Iterator[Callable[..., Stack]]:
    with contextlib.ExitStack() as stack:
        def make(**overrides: Any) -> Stack:
            settings = settings_factory(**overrides)
            keys = asyncio.run(_tenant(settings.resolved_database_url, [ORIGIN]))
            url = stack.enter_context(serve_in_thread(create_app(settings)))
            return Stack(url, settings, keys["tenant_id"], keys["sk"], keys["pk"], stack)
        yield make


@pytest.fixture
def stack(stack_factory: Callable[..., Stack]) -> Stack:
    return stack_factory()


@pytest.fixture(scope="module")
def receiver() -> Iterator[Receiver]:
    """A webhook receiver on loopback (tests/support/receiver.py)."""
    r = Receiver()
    with serve_in_thread(r.app()) as url:
        r.url = url
        yield r
        r.delay.clear()


@pytest.fixture
def console(stack: Stack) -> Iterator[Any]:
    """The stack's support console (tests/support/console.py): users, signed-in clients."""
    from tests.support.console import Console

    c = Console(stack)
    yield c
    for client in c.clients:
        client.close()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    """A failing test that ran server processes (a `cluster` fixture) shows the end of their logs."""
    outcome = yield
    report = outcome.get_result()
    cluster = getattr(item, "funcargs", {}).get("cluster")
    if report.failed and hasattr(cluster, "logs"):
        report.sections.append(("node logs", cluster.logs()))
