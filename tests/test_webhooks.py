"""Webhooks over real sockets: a receiver on loopback gets signed deliveries of a real conversation's events."""

from __future__ import annotations

import asyncio
import contextlib
import json
import secrets
import signal
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from tests.conftest import ORIGIN, Stack, _tenant
from tests.support.errors import assert_error
from tests.support.servers import serve_in_thread, serve_process
from tests.support.upstream import Upstream
from widget_server.app import create_app
from widget_server.backends.storage import open_storage
from widget_server.backends.storage.rows import now
from widget_server.domain.analytics.destinations import UnsafeURL, resolve
from widget_server.domain.analytics.signing import sign
from widget_server.domain.analytics.webhooks import PER_WEBHOOK, WebhookDispatcher
from widget_server.domain.analytics.writer import event_row
from widget_server.domain.events import Event
from widget_server.metrics import Metrics

FAST = {"webhook_allow_private": True, "webhook_backoff_s": 0.05}


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


@pytest.fixture(scope="module")
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    with serve_in_thread(r.app()) as url:
        r.url = url
        yield r
        r.delay.clear()


def readme_verify() -> Callable[..., bool]:
    """The README's verification snippet, run as a receiver would copy it."""
    section = (Path(__file__).parents[1] / "README.md").read_text().split("### Webhooks", 1)[1]
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


def test_the_secret_is_shown_once(stack_factory: Callable[..., Stack], db_url: str, receiver: Receiver) -> None:
    stack = stack_factory(database_url=db_url, **FAST)
    r = create(stack, receiver.new()[1], event_types=["reply.completed", "escalation.triggered"])
    assert r.status_code == 201, r.text
    hook = r.json()
    assert hook["secret"].startswith("whsec_") and len(hook["secret"]) > 40
    assert hook["event_types"] == ["escalation.triggered", "reply.completed"]
    assert r.headers["location"] == f"/v1/webhooks/{hook['id']}"
    listed = httpx.get(f"{stack.url}/v1/webhooks", headers=stack.auth).json()["data"]
    assert listed == [{k: v for k, v in hook.items() if k != "secret"}]
    assert hook["secret"] not in httpx.get(f"{stack.url}/v1/webhooks/{hook['id']}/attempts", headers=stack.auth).text
    second = create(stack, receiver.new()[1]).json()
    assert second["event_types"] == ["*"] and second["secret"] != hook["secret"]


def test_a_conversation_reaches_the_receiver_signed(
    stack_factory: Callable[..., Stack], db_url: str, receiver: Receiver
) -> None:
    stack = stack_factory(database_url=db_url, **FAST)
    name, url = receiver.new()
    hook = create(stack, url, event_types=["reply.completed", "message.received"]).json()
    ready, _ = stack.turn(stack.persona(), "hello there")
    got = receiver.wait(name, lambda g: {r.json["type"] for r in g} == {"message.received", "reply.completed"})
    verify = readme_verify()
    stored = {e["id"]: e for e in stack.events(conversation=ready["conversation_id"])}
    for delivery in got:
        headers, body = delivery.headers, delivery.json
        assert verify(hook["secret"], headers["widget-signature"], delivery.body)
        assert headers["content-type"] == "application/json"
        assert headers["user-agent"].startswith("widget_server/")
        assert headers["widget-event-id"] == body["id"] == body["data"]["id"]
        assert headers["widget-delivery-attempt"] == "1"
        assert body["data"] == stored[body["id"]]  # the same shape as the API
        assert body["created"] == body["data"]["ts"] and body["type"] == body["data"]["type"]
        assert body["data"]["conversation_id"] == ready["conversation_id"]
    sample = got[0]
    signature = sample.headers["widget-signature"]
    assert not verify(hook["secret"], signature, sample.body + b" ")  # a changed body
    assert not verify("whsec_other", signature, sample.body)
    t = int(signature.split(",")[0][2:]) - 301
    assert not verify(hook["secret"], sign(hook["secret"], sample.body, t), sample.body)  # too old: a replay
    assert verify(hook["secret"], sign(hook["secret"], sample.body, t + 60), sample.body)
    rows = attempts(stack, hook["id"]).json()["data"]
    assert {(a["event_type"], a["attempt"], a["outcome"], a["status_code"]) for a in rows} == {
        ("message.received", 1, "delivered", 200), ("reply.completed", 1, "delivered", 200)}


def test_an_escalation_is_pushed_to_the_support_team(stack_factory: Callable[..., Stack], receiver: Receiver) -> None:
    stack = stack_factory(**FAST)
    policy = {"version": 1, "escalation": {"on_request": True}}
    assert httpx.put(f"{stack.url}/v1/safety-policy", json=policy, headers=stack.auth).status_code == 200
    name, url = receiver.new()
    hook = create(stack, url, event_types=["escalation.triggered"]).json()
    ready, _ = stack.turn(stack.persona(), "can I talk to a human")
    receiver.wait(name, lambda g: len(g) >= 1)
    time.sleep(0.3)  # the turn's other events were committed with it: any wrongly sent would be here too
    got = receiver.of(name)
    assert [r.json["type"] for r in got] == ["escalation.triggered"]  # nothing else: it asked for this type only
    assert got[0].json["data"]["conversation_id"] == ready["conversation_id"]
    assert readme_verify()(hook["secret"], got[0].headers["widget-signature"], got[0].body)


def test_two_500s_then_delivered_on_the_third_try(
    stack_factory: Callable[..., Stack], db_url: str, receiver: Receiver
) -> None:
    stack = stack_factory(database_url=db_url, **FAST)
    name, url = receiver.new(500, 500)
    hook = create(stack, url, event_types=["reply.completed"]).json()
    stack.turn(stack.persona(), "hello")
    got = receiver.wait(name, lambda g: len(g) == 3)
    assert [r.headers["widget-delivery-attempt"] for r in got] == ["1", "2", "3"]
    assert len({r.headers["widget-event-id"] for r in got}) == 1 and len({r.body for r in got}) == 1
    verify = readme_verify()
    assert all(verify(hook["secret"], r.headers["widget-signature"], r.body) for r in got)

    def three() -> list[dict[str, Any]]:
        deadline = time.monotonic() + 5
        while len(rows := attempts(stack, hook["id"]).json()["data"]) < 3:
            assert time.monotonic() < deadline, rows
            time.sleep(0.02)
        return rows  # type: ignore[no-any-return]

    rows = three()
    assert [(a["attempt"], a["outcome"], a["status_code"]) for a in rows] == [
        (3, "delivered", 200), (2, "retrying", 500), (1, "retrying", 500)]
    assert rows[2]["error"] == "HTTP 500" and rows[0]["error"] is None
    page = httpx.get(f"{stack.url}/v1/webhooks/{hook['id']}/attempts", params={"limit": 2},
                     headers=stack.auth).json()
    rest = httpx.get(f"{stack.url}/v1/webhooks/{hook['id']}/attempts", params={"cursor": page["next_cursor"]},
                     headers=stack.auth).json()
    assert page["data"] + rest["data"] == rows and page["has_more"] and not rest["has_more"]
    metrics = httpx.get(f"{stack.url}/metrics").text
    assert 'widget_webhook_deliveries_total{outcome="retrying"} 2.0' in metrics
    assert 'widget_webhook_deliveries_total{outcome="delivered"} 1.0' in metrics
    time.sleep(0.3)  # the backoff is 0.05 s: a fourth try would have come by now
    assert len(receiver.of(name)) == 3


def test_a_receiver_that_never_succeeds_gets_every_try_then_failed(
    stack_factory: Callable[..., Stack], receiver: Receiver
) -> None:
    stack = stack_factory(**FAST, webhook_attempts=3)
    name, url = receiver.new(302, 302, 302, 302)  # a redirect is not followed: it is a failed try
    hook = create(stack, url, event_types=["conversation.started"]).json()
    stack.turn(stack.persona(), "hello")
    receiver.wait(name, lambda g: len(g) == 3)
    deadline = time.monotonic() + 5
    while len(rows := attempts(stack, hook["id"]).json()["data"]) < 3:
        assert time.monotonic() < deadline
        time.sleep(0.02)
    assert [(a["outcome"], a["status_code"]) for a in rows] == [("failed", 302), ("retrying", 302), ("retrying", 302)]
    assert not receiver.of(f"{name}-redirected")


def test_tenants_never_see_each_others_webhooks(
    stack_factory: Callable[..., Stack], db_url: str, receiver: Receiver
) -> None:
    stack = stack_factory(database_url=db_url, **FAST)
    other = stack.tenant()
    mine, my_url = receiver.new()
    theirs, their_url = receiver.new()
    hook = create(stack, my_url).json()
    their_hook = create(stack, their_url, sk=other["sk"]).json()
    stack.turn(stack.persona(), "hello")
    receiver.wait(mine, lambda g: "reply.completed" in {r.json["type"] for r in g})
    time.sleep(0.3)  # deliveries of one batch go out together: a wrong one would have arrived too
    assert receiver.of(theirs) == []
    assert all(r.json["data"]["tenant_id"] == stack.tenant_id for r in receiver.of(mine))
    their_auth = {"Authorization": f"Bearer {other['sk']}"}
    listed = httpx.get(f"{stack.url}/v1/webhooks", headers=their_auth).json()["data"]
    assert [h["id"] for h in listed] == [their_hook["id"]]
    assert_error(httpx.delete(f"{stack.url}/v1/webhooks/{hook['id']}", headers=their_auth), 404, "webhook.not_found")
    assert_error(attempts(stack, hook["id"], sk=other["sk"]), 404, "webhook.not_found")
    assert attempts(stack, their_hook["id"], sk=other["sk"]).json()["data"] == []
    assert [h["id"] for h in httpx.get(f"{stack.url}/v1/webhooks", headers=stack.auth).json()["data"]] == [hook["id"]]


def test_delete_stops_deliveries_and_retries(stack_factory: Callable[..., Stack], receiver: Receiver) -> None:
    stack = stack_factory(webhook_allow_private=True, webhook_backoff_s=0.3)
    failing, failing_url = receiver.new(*[500] * 10)
    control, control_url = receiver.new()
    hook = create(stack, failing_url, event_types=["reply.completed"]).json()
    create(stack, control_url, event_types=["reply.completed"])
    persona = stack.persona()
    stack.turn(persona, "first")
    receiver.wait(failing, lambda g: len(g) >= 1)
    assert httpx.delete(f"{stack.url}/v1/webhooks/{hook['id']}", headers=stack.auth).status_code == 204
    tries = len(receiver.of(failing))
    ready, _ = stack.turn(persona, "second")
    receiver.wait(control, lambda g: any(r.json["data"]["conversation_id"] == ready["conversation_id"] for r in g))
    time.sleep(1.0)  # past the second and third tries' backoff (0.3 s, 0.6 s)
    assert len(receiver.of(failing)) <= tries + 1  # at most one try already under way when it was deleted
    assert all(r.json["data"]["conversation_id"] != ready["conversation_id"] for r in receiver.of(failing))
    assert_error(httpx.delete(f"{stack.url}/v1/webhooks/{hook['id']}", headers=stack.auth), 404, "webhook.not_found")
    assert_error(attempts(stack, hook["id"]), 404, "webhook.not_found")


@pytest.mark.parametrize("url", [
    "http://127.0.0.1:8080/hook", "http://localhost/hook", "http://10.1.2.3/hook", "http://192.168.0.10/",
    "http://169.254.169.254/latest/meta-data", "http://[::1]/hook", "http://[::ffff:127.0.0.1]/hook",
    "http://0.0.0.0/", "http://100.64.0.1/", "https://does-not-exist.invalid/hook",
])
def test_a_private_url_is_refused(stack_factory: Callable[..., Stack], url: str) -> None:
    stack = stack_factory()  # webhook_allow_private defaults to False
    err = assert_error(create(stack, url), 422, "webhook.invalid", "invalid_request")
    assert err["details"]["errors"][0]["field"] == "url"
    assert httpx.get(f"{stack.url}/v1/webhooks", headers=stack.auth).json()["data"] == []


def test_a_public_address_is_accepted(stack: Stack) -> None:
    assert create(stack, "https://93.184.215.14/hook").status_code == 201


def test_the_address_is_checked_again_at_delivery(
    stack_factory: Callable[..., Stack], tmp_path: Path, receiver: Receiver
) -> None:
    """A webhook that points at a private address by the time of delivery gets a refused attempt, no request."""
    db = f"sqlite:///{tmp_path / 'shared.db'}"
    # Any node may make a delivery now: the lenient one only looks every minute, so the strict one makes it.
    lenient = stack_factory(database_url=db, webhook_allow_private=True, webhook_poll_s=60)
    strict = stack_factory(database_url=db, webhook_attempts=1)  # another node, same database
    name, url = receiver.new()
    hook = create(lenient, url, sk=strict.sk).json()
    strict.turn(strict.persona(), "hello")
    deadline = time.monotonic() + 10
    while not (rows := attempts(strict, hook["id"]).json()["data"]):
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert rows[0]["outcome"] == "failed" and rows[0]["status_code"] is None
    assert rows[0]["error"].startswith("refused: host 127.0.0.1")
    assert receiver.of(name) == []


@pytest.mark.parametrize("url", ["http://[::1]:8080/", "http://localhost/", "http://0x7f.1/", "http://[fe80::1]/",
                                 "http://[::ffff:10.0.0.1]/"])
def test_resolve_refuses_what_points_inside(url: str) -> None:
    with pytest.raises(UnsafeURL, match="non-public address"):
        asyncio.run(resolve(httpx.URL(url), allow_private=False))
    assert asyncio.run(resolve(httpx.URL("https://8.8.8.8/x"), allow_private=False)) == "8.8.8.8"


@pytest.mark.parametrize(("body", "status", "code", "field"), [
    (b"{not json", 400, "request.invalid_json", None),
    (b"[]", 400, "request.invalid", None),
    (b'{"event_types": ["*"]}', 400, "request.invalid", "url"),
    (b'{"url": "https://93.184.215.14/", "secret": "mine"}', 400, "request.invalid", "secret"),
    (b'{"url": 12}', 422, "webhook.invalid", "url"),
    (b'{"url": "ftp://93.184.215.14/"}', 422, "webhook.invalid", "url"),
    (b'{"url": "not a url"}', 422, "webhook.invalid", "url"),
    (json.dumps({"url": "https://93.184.215.14/" + "a" * 2000}).encode(), 422, "webhook.invalid", "url"),
    (b'{"url": "https://93.184.215.14/", "event_types": "reply.completed"}', 422, "webhook.invalid",
     "event_types"),
    (b'{"url": "https://93.184.215.14/", "event_types": []}', 422, "webhook.invalid", "event_types"),
    (b'{"url": "https://93.184.215.14/", "event_types": ["reply.done"]}', 422, "webhook.invalid", "event_types"),
])
def test_a_bad_body_gets_the_error_shape(stack: Stack, body: bytes, status: int, code: str, field: str | None) -> None:
    r = httpx.post(f"{stack.url}/v1/webhooks", content=body,
                   headers={**stack.auth, "Content-Type": "application/json"})
    err = assert_error(r, status, code)
    if field:
        assert err["details"]["errors"][0]["field"] == field
    assert httpx.get(f"{stack.url}/v1/webhooks", headers=stack.auth).json()["data"] == []


def test_at_most_twenty_webhooks(stack_factory: Callable[..., Stack], db_url: str) -> None:
    stack = stack_factory(database_url=db_url)
    for i in range(20):
        assert create(stack, f"https://93.184.215.14/{i}").status_code == 201
    assert_error(create(stack, "https://93.184.215.14/21"), 409, "webhook.limit_reached", "conflict")
    assert len(httpx.get(f"{stack.url}/v1/webhooks", headers=stack.auth).json()["data"]) == 20
    assert_error(httpx.get(f"{stack.url}/v1/webhooks", headers={"Authorization": "Bearer sk_nope"}), 401)




# Durability: deliveries live in the database (the outbox), so they outlast the process that was making them.

RETRYING = {"webhook_allow_private": True, "webhook_backoff_s": 1.0, "webhook_poll_s": 0.1}


def recover(receiver: Receiver, name: str) -> None:
    """The receiver's planned failures are over: from now on it answers 200."""
    with receiver.lock:
        receiver.plan[name].clear()


def wait_attempts(stack: Stack, webhook_id: str, n: int, timeout: float = 10) -> list[dict[str, Any]]:
    deadline = time.monotonic() + timeout
    while len(rows := attempts(stack, webhook_id).json()["data"]) < n:
        assert time.monotonic() < deadline, rows
        time.sleep(0.02)
    return rows  # type: ignore[no-any-return]


def pending(db_url: str, tenant_id: str) -> list[dict[str, Any]]:
    async def read() -> list[dict[str, Any]]:
        storage = await open_storage(db_url)
        try:
            return await storage.deliveries.pending(tenant_id)
        finally:
            await storage.close()
    return asyncio.run(read())


def wait_pending(db_url: str, tenant_id: str, done: Callable[[list[dict[str, Any]]], bool],
                 timeout: float = 10) -> list[dict[str, Any]]:
    deadline = time.monotonic() + timeout
    while not done(rows := pending(db_url, tenant_id)):
        assert time.monotonic() < deadline, rows
        time.sleep(0.05)
    return rows


def assert_continued(rows: list[dict[str, Any]], tried: int) -> None:
    """Attempts 1…`tried` failed before the restart; the next process made attempt `tried + 1`, delivered."""
    assert [(a["attempt"], a["outcome"]) for a in rows] == (
        [(tried + 1, "delivered")] + [(n, "retrying") for n in range(tried, 0, -1)])


def test_a_pending_delivery_is_made_by_the_next_server_after_a_clean_stop(
    settings_factory: Callable[..., Any], db_url: str, receiver: Receiver
) -> None:
    """A receiver down (500) across a clean shutdown: the delivery waits in the database, not marked failed,
    and the next server on that database makes it, numbering its try after those already made."""
    settings = settings_factory(database_url=db_url, **RETRYING)
    keys = asyncio.run(_tenant(db_url, [ORIGIN]))
    name, url = receiver.new(*[500] * 50)
    with contextlib.ExitStack() as exits:
        first = Stack(exits.enter_context(serve_in_thread(create_app(settings))), settings, keys["tenant_id"],
                      keys["sk"], keys["pk"], exits)
        hook = create(first, url, event_types=["reply.completed"]).json()
        first.turn(first.persona(), "hello")
        wait_attempts(first, hook["id"], 1)
    tried = len(receiver.of(name))  # the server has stopped: what it tried is all recorded
    [left] = pending(db_url, keys["tenant_id"])
    assert (left["attempts"], left["claimed_until"], left["event_type"]) == (tried, None, "reply.completed")
    recover(receiver, name)
    with contextlib.ExitStack() as exits:
        second = Stack(exits.enter_context(serve_in_thread(create_app(settings))), settings, keys["tenant_id"],
                       keys["sk"], keys["pk"], exits)
        got = receiver.wait(name, lambda g: len(g) > tried)
        assert got[-1].headers["widget-delivery-attempt"] == str(tried + 1)
        assert got[-1].body == got[0].body and got[-1].headers["widget-event-id"] == got[0].headers["widget-event-id"]
        assert readme_verify()(hook["secret"], got[-1].headers["widget-signature"], got[-1].body)
        assert_continued(wait_attempts(second, hook["id"], tried + 1), tried)
        assert pending(db_url, keys["tenant_id"]) == []
        time.sleep(0.3)
        assert len(receiver.of(name)) == tried + 1


def test_a_server_killed_without_shutdown_still_delivers_after_the_restart(
    tmp_path: Path, db_url: str, upstream: tuple[Upstream, str], receiver: Receiver
) -> None:
    """SIGKILL while a delivery waits for its retry: the next `widget-server serve` on that database makes it."""
    keys = asyncio.run(_tenant(db_url, [ORIGIN]))
    env = {"WIDGET_DATA_DIR": str(tmp_path), "WIDGET_DATABASE_URL": db_url, "WIDGET_PROVIDER": "openai",
           "WIDGET_OPENAI_BASE_URL": upstream[1], "WIDGET_SECRET_KEY": "killed", "WIDGET_EVENTS_FLUSH_MS": "20",
           "WIDGET_WEBHOOK_ALLOW_PRIVATE": "true", "WIDGET_WEBHOOK_BACKOFF_S": "1", "WIDGET_WEBHOOK_POLL_S": "0.1"}
    name, url = receiver.new(*[500] * 50)
    proc, base = serve_process(env)
    exits = contextlib.ExitStack()
    stack = Stack(base, None, keys["tenant_id"], keys["sk"], keys["pk"], exits)  # type: ignore[arg-type]
    try:
        hook = create(stack, url, event_types=["reply.completed"]).json()
        stack.turn(stack.persona(), "hello")
        tried = len(wait_attempts(stack, hook["id"], 1))
        proc.kill()
        assert proc.wait(timeout=10) == -signal.SIGKILL
    finally:
        exits.close()
        if proc.poll() is None:
            proc.kill()
    recover(receiver, name)
    proc, stack.url = serve_process(env)
    try:
        # a kill in the middle of a try would leave a claim that lapses after the lease (timeout + 30 s)
        got = receiver.wait(name, lambda g: any(r.headers["widget-delivery-attempt"] == str(tried + 1) for r in g),
                            timeout=60)
        assert readme_verify()(hook["secret"], got[-1].headers["widget-signature"], got[-1].body)
        assert_continued(wait_attempts(stack, hook["id"], tried + 1), tried)
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    assert pending(db_url, keys["tenant_id"]) == []


@pytest.fixture
def own_pg(pg_url: str) -> Iterator[str]:
    """A PostgreSQL database of its own: no other test's deliveries in it, so the nodes' counts add up exactly."""
    import asyncpg

    name = f"widget_test_{secrets.token_hex(4)}"

    async def admin(sql: str) -> None:
        conn = await asyncpg.connect(pg_url)
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    asyncio.run(admin(f'CREATE DATABASE "{name}"'))
    yield pg_url.rsplit("/", 1)[0] + f"/{name}"
    asyncio.run(admin(f'DROP DATABASE "{name}" WITH (FORCE)'))


def test_two_servers_on_one_postgres_deliver_each_event_exactly_once(
    own_pg: str, stack_factory: Callable[..., Stack], receiver: Receiver
) -> None:
    a = stack_factory(database_url=own_pg, webhook_allow_private=True, webhook_poll_s=0.1)
    other = stack_factory(database_url=own_pg, webhook_allow_private=True, webhook_poll_s=0.1)
    b = Stack(other.url, other.settings, a.tenant_id, a.sk, a.pk, other.exits)  # the same tenant on the other node
    name, url = receiver.new()
    receiver.delay[name] = 0.05  # slow enough that both nodes have deliveries to make at the same time
    try:
        create(a, url, event_types=["widget.opened"])
        persona = a.persona()
        sockets = [node.open(persona) for node in (a, b) for _ in range(3)]
        for ws in sockets:
            ws.recv()
        for _ in range(20):
            for ws in sockets:
                ws.send({"type": "event", "name": "widget.opened"})
        sent = len(sockets) * 20
        receiver.wait(name, lambda g: len(g) >= sent, timeout=30)
        time.sleep(0.5)  # a second delivery of any event would be here by now
    finally:
        receiver.delay[name] = 0
    ids = [r.headers["widget-event-id"] for r in receiver.of(name)]
    assert len(ids) == len(set(ids)) == sent
    assert set(ids) == {e["id"] for e in a.events(type="widget.opened")}
    made = [_delivered(node) for node in (a, b)]
    assert sum(made) == sent and min(made) > 0, made  # both nodes took a share, and no event twice
    assert pending(own_pg, a.tenant_id) == []


def _delivered(stack: Stack) -> int:
    line = 'widget_webhook_deliveries_total{outcome="delivered"} '
    text = httpx.get(f"{stack.url}/metrics").text
    return int(float(next((row[len(line):] for row in text.splitlines() if row.startswith(line)), "0")))


def test_an_erased_visitors_pending_delivery_is_dropped(
    stack_factory: Callable[..., Stack], db_url: str, receiver: Receiver
) -> None:
    """The delivery reads its event at each try: once the visitor is erased, the retries stop."""
    stack = stack_factory(database_url=db_url, **{**RETRYING, "webhook_backoff_s": 0.3})
    name, url = receiver.new(*[500] * 50)
    hook = create(stack, url, event_types=["reply.completed"]).json()
    ready, _ = stack.turn(stack.persona(), "hello")
    wait_attempts(stack, hook["id"], 1)
    [event] = stack.events(type="reply.completed")
    r = httpx.delete(f"{stack.url}/v1/analytics/visitors/{event['visitor_id']}", headers=stack.auth)
    assert r.status_code == 200 and r.json()["deleted"]["events"] >= 1
    wait_pending(stack.settings.resolved_database_url, stack.tenant_id, lambda rows: not rows)
    tries = len(receiver.of(name))
    assert tries < stack.settings.webhook_attempts  # it was dropped, not run out of tries
    time.sleep(1.0)  # past the next retry's backoff
    assert len(receiver.of(name)) == tries


def test_a_replayed_batch_enqueues_nothing_twice(db_url: str) -> None:
    """Deliveries are written with their events: only the webhooks that want the type, once per event."""

    async def run() -> None:
        storage = await open_storage(db_url)
        try:
            tenant_id, other = ("ten_" + secrets.token_hex(6) for _ in range(2))
            for t in (tenant_id, other):
                await storage.create_tenant(t, "T")
            hooks = {"all": ["*"], "replies": ["reply.completed"], "theirs": ["*"]}
            for key, types in hooks.items():
                await storage.webhooks.create({"id": f"wh_{key}_{secrets.token_hex(4)}", "tenant_id":
                                               other if key == "theirs" else tenant_id, "url": "https://93.184.215.14/",
                                               "event_types": types, "salt": "s", "created_at": now()}, most=20)
            batch = [event_row(Event(t, tenant_id, visitor_id="v")) for t in ("widget.opened", "reply.completed")]
            await storage.events.insert(batch)
            await storage.events.insert(batch)  # the writer retrying a batch whose commit it did not see
            rows = await storage.deliveries.pending(tenant_id)
            assert sorted((r["webhook_id"].split("_")[1], r["event_type"]) for r in rows) == [
                ("all", "reply.completed"), ("all", "widget.opened"), ("replies", "reply.completed")]
            assert all(r["attempts"] == 0 and r["claimed_until"] is None for r in rows)
            assert [r["event_type"] for r in await storage.deliveries.pending(other)] == []
            for hook in await storage.webhooks.for_tenant(tenant_id):
                await storage.webhooks.delete(tenant_id, hook["id"])
            assert await storage.deliveries.pending(tenant_id) == []
        finally:
            await storage.close()

    asyncio.run(run())


def test_a_hanging_receiver_holds_only_its_own_slots_and_a_shutdown_gives_its_deliveries_back(
    settings_factory: Callable[..., Any], db_url: str, receiver: Receiver
) -> None:
    """This test used to assert that a full in-memory queue dropped deliveries and that shutdown recorded the
    running ones as `failed`. Deliveries now wait in the database: none is dropped, and the tries a shutdown
    cuts short are given back (not counted) for the next process, which makes them."""
    slow, slow_url = receiver.new()
    fast, fast_url = receiver.new()
    receiver.delay[slow] = 30

    async def run() -> None:
        storage = await open_storage(db_url)
        tenant_id = "ten_" + secrets.token_hex(6)
        await storage.create_tenant(tenant_id, "T")
        settings = settings_factory(database_url=db_url, webhook_allow_private=True, webhook_timeout_s=60,
                                    webhook_poll_s=0.1)
        hook_ids = {}
        for key, url in (("slow", slow_url), ("fast", fast_url)):
            hook_ids[key] = "wh_" + secrets.token_hex(6)
            await storage.webhooks.create({"id": hook_ids[key], "tenant_id": tenant_id, "url": url,
                                           "event_types": ["*"], "salt": "s", "created_at": now()}, most=20)
        events = [Event("widget.opened", tenant_id, visitor_id=f"v{i}") for i in range(6)]
        await storage.events.insert([event_row(e) for e in events])
        dispatcher = WebhookDispatcher(storage, settings, Metrics(), "server-secret")
        dispatcher.start()
        while len(receiver.of(fast)) < 6 or len(receiver.of(slow)) < PER_WEBHOOK:
            await asyncio.sleep(0.02)
        await asyncio.sleep(0.3)
        assert len(receiver.of(slow)) == PER_WEBHOOK  # its other deliveries wait; the fast webhook got all six
        started = time.monotonic()
        await dispatcher.aclose()
        assert time.monotonic() - started < 10  # the receiver hangs for 30 s: the grace is short
        assert await storage.webhooks.list_attempts(tenant_id, hook_ids["slow"], limit=10) == []
        left = await storage.deliveries.pending(tenant_id)
        assert {(r["webhook_id"], r["attempts"], r["claimed_until"]) for r in left} == {(hook_ids["slow"], 0, None)}
        assert {r["event_id"] for r in left} == {e.id for e in events}

        receiver.delay[slow] = 0
        again = WebhookDispatcher(storage, settings, Metrics(), "server-secret")  # the next process
        again.start()
        while await storage.deliveries.pending(tenant_id):
            await asyncio.sleep(0.05)
        await again.aclose()
        rows = await storage.webhooks.list_attempts(tenant_id, hook_ids["slow"], limit=10)
        await storage.close()
        assert sorted((r["event_id"], r["attempt"], r["outcome"]) for r in rows) == sorted(
            (e.id, 1, "delivered") for e in events)

    try:
        asyncio.run(run())
    finally:
        receiver.delay[slow] = 0
