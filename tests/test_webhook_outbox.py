"""Webhook deliveries live in the database (the outbox): they outlast a stop or a crash, and nodes share them."""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import ORIGIN, Stack, _tenant, fresh_pg_database
from tests.support.receiver import Receiver, attempts, create, readme_verify, settled
from tests.support.servers import serve_in_thread, serve_process
from tests.support.upstream import Upstream
from widget_server.app import create_app
from widget_server.backends.storage import open_storage
from widget_server.backends.storage.rows import now
from widget_server.domain.analytics.webhooks import PER_WEBHOOK, WebhookDispatcher
from widget_server.domain.analytics.writer import event_row
from widget_server.domain.events import Event
from widget_server.metrics import Metrics

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
        settled(second)  # nothing left in the outbox, nothing in flight: no further try can come
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
def own_pg() -> Iterator[str]:
    """A PostgreSQL database of its own: no other test's deliveries in it, so the nodes' counts add up exactly."""
    with fresh_pg_database() as url:
        yield url


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
        settled(a, b, timeout=30)  # every delivery made and no try in flight on either node
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
    settled(stack)  # out of the outbox and no try in flight: no later retry can come
    tries = len(receiver.of(name))
    assert tries < stack.settings.webhook_attempts  # it was dropped, not run out of tries


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
        while len(receiver.of(fast)) < 6 or len(receiver.of(slow)) < PER_WEBHOOK or not (
                len(dispatcher._tries) == PER_WEBHOOK and dispatcher.idle.is_set()):
            await asyncio.sleep(0.02)  # until the worker waits with only the slow webhook's tries running
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
