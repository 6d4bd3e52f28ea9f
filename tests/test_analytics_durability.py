"""No analytics event is lost: not at a SIGTERM in mid-stream, not while the database is away for a while."""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
from websockets.exceptions import ConnectionClosed

from tests.conftest import ORIGIN, WS, Stack, _tenant
from tests.support.proxy import Proxy
from tests.support.servers import serve_process
from tests.support.upstream import Upstream
from widget_server.domain.analytics.writer import EventWriter, claim_spill
from widget_server.domain.events import Event
from widget_server.metrics import Metrics


def _serve(tmp_path: Path, db_url: str, upstream_url: str) -> tuple[subprocess.Popen[bytes], str]:
    return serve_process({"WIDGET_DATA_DIR": str(tmp_path), "WIDGET_DATABASE_URL": db_url,
                          "WIDGET_PROVIDER": "openai", "WIDGET_OPENAI_BASE_URL": upstream_url,
                          "WIDGET_SECRET_KEY": "sigterm", "WIDGET_RATE_LIMIT_MESSAGES": "1000"})


def test_sigterm_while_20_conversations_stream_loses_no_event(
    tmp_path: Path, db_url: str, upstream: tuple[Upstream, str]
) -> None:
    keys = asyncio.run(_tenant(db_url, [ORIGIN]))
    proc, url = _serve(tmp_path, db_url, upstream[1])
    exits = contextlib.ExitStack()
    stack = Stack(url, None, keys["tenant_id"], keys["sk"], keys["pk"], exits)  # type: ignore[arg-type]
    try:
        # short replies finish before the signal, long ones are cut by it
        slugs = {n: stack.persona(f"pace-40-{n}") for n in (3, 200)}
        sockets: list[WS] = []
        for i in range(20):
            ws = stack.connect(ORIGIN)
            ws.send({"type": "hello", "token": stack.token(slugs[3 if i % 2 else 200])[0]})
            ws.recv()
            ws.send({"type": "message", "client_id": "c1", "text": f"conversation {i}"})
            sockets.append(ws)
        ended: dict[str, str] = {}
        started: set[str] = set()
        for ws in sockets:
            frame = ws.until("reply.delta")[-1]
            started.add(frame["message_id"])
        for ws in sockets[1::2]:
            ended[ws.until("reply.end")[-1]["message_id"]] = "stop"
        proc.send_signal(signal.SIGTERM)
        for ws in sockets[::2]:
            with contextlib.suppress(ConnectionClosed, TimeoutError):
                while True:  # until the server closes the socket
                    frame = ws.recv(timeout=20)
                    if frame["type"] == "reply.end":
                        ended[frame["message_id"]] = frame["finish_reason"]
        # uvicorn shuts down gracefully, then re-raises the signal it caught: a clean exit is -SIGTERM
        assert proc.wait(timeout=30) in (0, -signal.SIGTERM), proc.stderr.read().decode() if proc.stderr else ""
    finally:
        exits.close()
        if proc.poll() is None:
            proc.kill()
    proc, url = _serve(tmp_path, db_url, upstream[1])  # the restart
    try:
        stack.url = url
        completed = {e["attributes"]["message_id"]: e["attributes"]["finish_reason"]
                     for e in stack.events(type="reply.completed")}
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    assert len(ended) >= 10 and all(completed.get(m) == reason for m, reason in ended.items())
    assert started <= set(completed), "a reply the visitor saw start has no reply.completed event"
    assert not (tmp_path / "events-spill.jsonl").exists()


def test_events_wait_out_a_database_outage_and_none_is_lost(
    stack_factory: Callable[..., Stack], pg_url: str
) -> None:
    """PostgreSQL behind a proxy that cuts every connection for a few seconds while visitors keep using open
    widgets: afterwards the database holds exactly as many events as were emitted, and the metrics said so."""
    host_port, _, dbname = pg_url.rpartition("@")[2].partition("/")
    host, _, port = host_port.partition(":")
    with Proxy(host, int(port)).running() as proxy:
        stack = stack_factory(database_url=f"postgresql://postgres@127.0.0.1:{proxy.port}/{dbname}")
        persona = stack.persona("echo")
        sockets = [stack.open(persona) for _ in range(5)]
        for ws in sockets:
            ws.recv()
        proxy.cut()
        sent = 0
        for round_ in range(20):
            for ws in sockets:
                ws.send({"type": "event", "name": "widget.opened" if round_ % 2 else "widget.closed"})
                sent += 1
            time.sleep(0.15)  # traffic paced over three seconds with the database away
        deadline = time.monotonic() + 10
        while not ((m := _scrape(stack))["widget_events_buffered"] >= 1 and m["widget_event_write_errors_total"] >= 1):
            assert time.monotonic() < deadline, f"the writer never reported the database away: {m}"
            time.sleep(0.05)
        health = httpx.get(f"{stack.url}/health")
        assert health.status_code == 503 and health.json()["events"]["status"] == "retrying"
        proxy.restore()
        events = stack.wait_events(lambda got: sum(e["type"].startswith("widget.") for e in got) >= sent,
                                   timeout=30)
        assert sum(e["type"].startswith("widget.") for e in events) == sent
        assert len({e["id"] for e in events}) == len(events)
        after = _scrape(stack)
        assert after["widget_events_buffered"] == 0
        assert after["widget_events_written_total"] == after["widget_events_queued_total"] == len(events)


def _scrape(stack: Stack) -> dict[str, float]:
    text = httpx.get(f"{stack.url}/metrics").text
    return {line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
            if line and not line.startswith("#")}


def test_past_the_buffer_events_spill_to_disk_and_come_back(tmp_path: Path) -> None:
    """The writer's own bookkeeping: a database that refuses for a while and a buffer of 10 events."""
    stored: dict[str, dict[str, Any]] = {}
    down = threading.Event()
    down.set()

    async def write(rows: Any) -> None:
        if down.is_set():
            raise ConnectionError("database unavailable")
        stored.update((r["id"], r) for r in rows)

    async def run() -> tuple[int, bool]:
        writer = EventWriter(write, Metrics(), batch=4, flush_s=0.01, max_buffer=10,
                             spill_path=tmp_path / "spill.jsonl")
        writer.start()
        sent = [Event("widget.opened", "t", visitor_id=f"v{i % 3}", attributes={"i": i}) for i in range(50)]
        for event in sent:
            writer.emit(event)
            await asyncio.sleep(0)
        spilled = (tmp_path / "spill.jsonl").exists()
        forgotten = writer.forget("t", "v0")  # erasure reaches the spill file too
        down.clear()
        await writer.aclose()
        assert {e.id for e in sent if e.visitor_id != "v0"} == set(stored)
        return forgotten, spilled

    forgotten, spilled = asyncio.run(run())
    assert spilled and forgotten == 17
    assert all(json.dumps(r["attributes"]) for r in stored.values())
    assert not (tmp_path / "spill.jsonl").exists()


def test_a_shutdown_with_the_database_away_spills_and_the_next_start_writes_them(tmp_path: Path) -> None:
    stored: list[str] = []
    up = False

    async def write(rows: Any) -> None:
        if not up:
            raise ConnectionError("database unavailable")
        stored.extend(r["id"] for r in rows)

    async def first() -> list[str]:
        writer = EventWriter(write, Metrics(), spill_path=tmp_path / "spill.jsonl")
        writer.start()
        events = [Event("widget.closed", "t", visitor_id="v") for _ in range(5)]
        for e in events:
            writer.emit(e)
        await writer.aclose(timeout_s=0.2)
        return [e.id for e in events]

    ids = asyncio.run(first())
    assert stored == [] and len((tmp_path / "spill.jsonl").read_text().splitlines()) == 5
    up = True

    async def second() -> None:
        writer = EventWriter(write, Metrics(), flush_s=0.01, spill_path=tmp_path / "spill.jsonl")
        writer.start()
        await writer.aclose()

    asyncio.run(second())
    assert stored == ids and not (tmp_path / "spill.jsonl").exists()



def test_an_event_the_database_refuses_is_set_aside_and_the_rest_are_written(db_url: str, tmp_path: Path) -> None:
    """A value the database cannot hold (NUL in text on PostgreSQL, a non-finite number on both, …) was retried
    forever and held up every later event: it is now split off, set aside, and the others are written."""
    from widget_server.backends.storage import open_storage

    async def run() -> tuple[list[str], list[str], float]:
        storage = await open_storage(db_url)
        metrics = Metrics()
        writer = EventWriter(storage.events.insert, metrics, batch=50, flush_s=0.01,
                             spill_path=tmp_path / "events-spill.jsonl")
        tenant = "ten_poison_" + tmp_path.name[-8:]
        good = [Event("widget.opened", tenant, visitor_id=f"v{i}") for i in range(20)]
        bad = Event("widget.opened", tenant, visitor_id="v-bad", attributes={"props": {"n": float("nan")}})
        for event in [*good[:10], bad, *good[10:]]:
            writer.emit(event)
        await writer.flush()
        rows = await storage.events.page(tenant, EventFilter(), limit=100)
        await writer.aclose()
        await storage.close()
        rejected = [json.loads(line)["id"] for line in (tmp_path / "events-rejected.jsonl").read_text().splitlines()]
        return [r["id"] for r in rows], rejected, metrics.events_rejected._value.get()

    from widget_server.backends.storage.analytics import EventFilter

    stored, rejected, counted = asyncio.run(run())
    assert len(stored) == 20 and len(rejected) == 1 and counted == 1
    assert rejected[0] not in stored


def test_workers_sharing_a_data_dir_each_take_a_spill_file_of_their_own(tmp_path: Path) -> None:
    """Two writers appending to one spill file would interleave, and both replay it at their next start (every
    spilled event stored twice over, or lost in a torn line): each live process holds its own slot."""
    first, lock1 = claim_spill(tmp_path)
    second, lock2 = claim_spill(tmp_path)
    assert first.name == "events-spill.jsonl" and second.name == "events-spill-1.jsonl"
    lock1.close()  # that process ended: the next one to start takes its slot, and replays what it left
    third, lock3 = claim_spill(tmp_path)
    assert third == first
    for lock in (lock2, lock3):
        lock.close()


def test_the_webhook_worker_is_woken_only_for_batches_that_enqueued_deliveries() -> None:
    """`on_written` (the webhook worker's wake-up) follows a batch that enqueued deliveries, or whose write does
    not say; a batch with none (a tenant without webhooks) wakes nobody, saving the worker a claim query."""
    enqueued: list[int | None] = [0, 2, None]
    woken: list[int] = []

    async def write(rows: Any) -> int | None:
        return enqueued.pop(0)

    async def run() -> None:
        writer = EventWriter(write, Metrics(), on_written=lambda batch: woken.append(len(batch)))
        for n in (1, 2, 3):
            for _ in range(n):
                writer.emit(Event("widget.closed", "t", visitor_id="v"))
            await writer.flush()

    asyncio.run(run())
    assert woken == [2, 3]
