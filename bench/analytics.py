"""Analytics benchmark: ingest rate, export time and memory, and what an export costs live conversations.

Run from the repository root: `.venv/bin/python -m bench.analytics [--rows 1000000] [--no-postgres]` (a few
minutes on two cores). Prints figures next to their targets; asserts nothing.

(a) Ingest. `N` events emitted as fast as the loop can into the app's `EventWriter` (batches of 500, one
    transaction each), timed until the last is committed (`aclose`), against the same events committed one
    transaction per event. SQLite (WAL, a temporary file) and PostgreSQL (a fresh database at 127.0.0.1:5432).
(b) Export. One SQLite database holds a tenant with 100,000 events and another with `--rows` (1,000,000)
    events shaped like the real ones (reply.completed with GenAI attributes, message.received, widget.opened).
    For each format and size a fresh server process (`bench/serve.py`) streams `GET /v1/analytics/export` to this
    process, which reads it to the end; time = first byte requested to last byte read; memory = the server
    process's peak RSS (`VmHWM` in /proc) at the end, with its RSS before the export for reference.
(c) Time to first token during an export. A server and the fake upstream (`pace-20-10`): 30 widget turns one
    after another, TTFT = message frame sent → first `reply.delta`; first alone, then while a 1,000,000-row
    JSONL export streams to another client (curl, a process of its own). Ratio of the p50s (and p95s).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import secrets
import tempfile
import time
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
from websockets.asyncio.client import connect

from bench.serve import AppSpec, Served
from widget_server.backends.storage import Storage, open_storage
from widget_server.domain import keys, tenants
from widget_server.domain.analytics.writer import EventWriter
from widget_server.domain.events import Event
from widget_server.ids import new_id
from widget_server.metrics import Metrics

PG_ADMIN = "postgresql://postgres@127.0.0.1:5432/test"
ORIGIN = "https://bench.example"


def _event(tenant_id: str, i: int, ts: datetime) -> Event:
    conv, visitor = f"conv_{i // 12:09d}", f"vis_{i // 24:09d}"
    kind = i % 4
    if kind == 0:
        return Event("reply.completed", tenant_id, "per_bench", conv, visitor, "widget", {
            "message_id": new_id("msg"), "finish_reason": "stop", "ttft_ms": 180 + i % 400, "total_ms": 2400,
            "gen_ai.request.model": "gpt-4o-mini", "gen_ai.usage.input_tokens": 312,
            "gen_ai.usage.output_tokens": 87, "gen_ai.response.time_to_first_chunk": (180 + i % 400) / 1000},
            ts=ts)
    if kind == 1:
        return Event("message.received", tenant_id, "per_bench", conv, visitor, "widget",
                     {"message_id": new_id("msg"), "chars": 40 + i % 200}, ts=ts)
    if kind == 2:
        return Event("widget.opened", tenant_id, "per_bench", conv, visitor, "widget",
                     {"props": {"page": f"/products/{i % 997}", "ref": "=cmd|' /C calc'!A0" if i % 1000 == 2 else ""}},
                     ts=ts)
    return Event("guardrail.triggered", tenant_id, "per_bench", conv, visitor, "widget",
                 {"rule": "pii.email", "action": "mask", "source": "output", "message_id": new_id("msg")}, ts=ts)


# (a) ingest


async def _ingest(url: str, n_batched: int, n_single: int) -> tuple[float, float]:
    storage = await open_storage(url)
    try:
        tenant = "ten_" + secrets.token_hex(6)
        now = datetime.now(UTC)
        writer = EventWriter(storage.events.insert, Metrics(), batch=500, flush_s=0.2)
        writer.start()
        start = time.perf_counter()
        for i in range(n_batched):
            writer.emit(_event(tenant, i, now))
            if i % 1000 == 0:
                await asyncio.sleep(0)  # let the writer run, as a server's loop would
        await writer.aclose()
        batched = n_batched / (time.perf_counter() - start)
        from widget_server.domain.analytics.writer import event_row

        rows = [event_row(_event(tenant, i, now)) for i in range(n_single)]
        start = time.perf_counter()
        for row in rows:
            await storage.events.insert([row])
        single = n_single / (time.perf_counter() - start)
        return batched, single
    finally:
        await storage.close()


async def _pg_database() -> tuple[str, str]:
    import asyncpg

    name = f"widget_bench_{secrets.token_hex(4)}"
    conn = await asyncpg.connect(PG_ADMIN)
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    return name, f"postgresql://postgres@127.0.0.1:5432/{name}"


async def _drop_pg(name: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(PG_ADMIN)
    try:
        await conn.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
    finally:
        await conn.close()


# (b) export


async def _populate(storage: Storage, tenant_id: str, n: int) -> None:
    from widget_server.domain.analytics.writer import event_row

    start = datetime.now(UTC) - timedelta(days=30)
    step = timedelta(days=29) / max(n, 1)
    for first in range(0, n, 5000):
        await storage.events.insert([event_row(_event(tenant_id, i, start + step * i))
                                     for i in range(first, min(n, first + 5000))])


async def _tenant(storage: Storage) -> tuple[str, str, str]:
    tenant_id, sk = await tenants.create_tenant(storage, "bench " + secrets.token_hex(3))
    pk, _ = await keys.create_key(storage, tenant_id, "publishable", [ORIGIN])
    return tenant_id, sk, pk


def _rss_kib(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def _export(settings: dict[str, Any], sk: str, fmt: str) -> tuple[float, int, int, int]:
    """(seconds, bytes, peak RSS KiB, RSS before KiB) of one export from a fresh server process."""
    with Served(AppSpec("server", settings)) as server:
        pid = server._proc.pid  # noqa: SLF001 — our own child
        assert pid is not None
        httpx.get(server.url + "/health")
        before = _rss_kib(pid, "VmRSS")
        start = time.perf_counter()
        size = 0
        with httpx.stream("GET", server.url + "/v1/analytics/export", params={"format": fmt},
                          headers={"Authorization": f"Bearer {sk}"}, timeout=600) as r:
            assert r.status_code == 200, r.read()[:300]
            for chunk in r.iter_raw(1 << 16):
                size += len(chunk)
        seconds = time.perf_counter() - start
        peak = _rss_kib(pid, "VmHWM")
    return seconds, size, peak, before


# (c) TTFT during an export


async def _ttfts(ws_url: str, token_for: Any, n: int) -> list[float]:
    out = []
    for _ in range(n):
        async with connect(ws_url, additional_headers={"Origin": ORIGIN}) as ws:
            await ws.send(json.dumps({"type": "hello", "token": token_for()}))
            await ws.recv()
            sent = time.perf_counter()
            await ws.send(json.dumps({"type": "message", "client_id": "c", "text": "hello"}))
            while (frame := json.loads(await ws.recv()))["type"] != "reply.delta":
                pass
            out.append((time.perf_counter() - sent) * 1000)
            while frame["type"] != "reply.end":
                frame = json.loads(await ws.recv())
    return out


def _q(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def _ttft_during_export(settings: dict[str, Any], sk: str, pk: str, rows: int) -> None:
    with Served(AppSpec("upstream")) as upstream:
        settings = {**settings, "provider": "openai", "openai_base_url": upstream.url + "/v1",
                    "openai_model": "pace-20-10", "rate_limit_messages": 100000}
        with Served(AppSpec("server", settings)) as server:
            async with httpx.AsyncClient(base_url=server.url, timeout=600) as client:
                auth = {"Authorization": f"Bearer {sk}"}
                await client.post("/v1/personas", headers=auth, json={
                    "name": "Bench", "slug": "bench", "provider": {"kind": "openai", "model": "pace-20-10"}})

                def token() -> str:
                    r = httpx.post(server.url + "/v1/widget/sessions", json={"key": pk, "persona": "bench"},
                                   headers={"Origin": ORIGIN})
                    return str(r.json()["token"])

                ws_url = server.url.replace("http", "ws") + "/v1/widget/ws"
                await _ttfts(ws_url, token, 5)  # warm-up
                alone = await _ttfts(ws_url, token, 30)
                # The export is read by curl, a process of its own, as an analyst's client would be: read in this
                # loop it would slow the TTFT probe itself.
                cmd = ["curl", "-sS", "-o", "/dev/null", "-w", "%{size_download}", "-H", f"Authorization: Bearer {sk}",
                       server.url + "/v1/analytics/export?format=jsonl"]
                proc = await asyncio.create_subprocess_exec(*cmd, stdout=asyncio.subprocess.PIPE)
                await asyncio.sleep(0.5)
                during = await _ttfts(ws_url, token, 30)
                still_running = proc.returncode is None
                out, _ = await proc.communicate()
                exported = int(out or 0)
    print(f"(c) TTFT during a {rows:,}-row JSONL export (pace-20-10 upstream, 30 turns each)")
    print(f"    alone   p50 {_q(alone, 0.5):6.1f} ms  p95 {_q(alone, 0.95):6.1f} ms")
    print(f"    export  p50 {_q(during, 0.5):6.1f} ms  p95 {_q(during, 0.95):6.1f} ms  "
          f"(export still running at the end: {still_running}; {exported / 1e6:.0f} MB exported)")
    print(f"    ratio   p50 {_q(during, 0.5) / _q(alone, 0.5):.2f}  p95 {_q(during, 0.95) / _q(alone, 0.95):.2f}"
          "  (target: p50 within 1.20)")


async def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--rows", type=int, default=1_000_000)
    p.add_argument("--ingest", type=int, default=50_000)
    p.add_argument("--no-postgres", action="store_true")
    args = p.parse_args()
    print(f"analytics benchmark, {datetime.now(UTC):%Y-%m-%d %H:%M} UTC\n")

    with tempfile.TemporaryDirectory() as tmp:
        print(f"(a) ingest: {args.ingest:,} events through the batched writer vs one commit per event")
        targets = [("SQLite", f"sqlite:///{tmp}/ingest.db")]
        pg_name = None
        if not args.no_postgres:
            pg_name, pg_url = await _pg_database()
            targets.append(("PostgreSQL", pg_url))
        try:
            for label, url in targets:
                batched, single = await _ingest(url, args.ingest, 2000)
                print(f"    {label:10}  batched {batched:9,.0f} events/s   one commit each {single:7,.0f} events/s"
                      f"   ratio {batched / single:5.1f}x" + ("   (target >= 10,000/s)" if label == "SQLite" else ""))
        finally:
            if pg_name:
                await _drop_pg(pg_name)

        print(f"\n(b) export from SQLite: 100,000 vs {args.rows:,} events, fresh server process each")
        db = f"sqlite:///{tmp}/export.db"
        storage = await open_storage(db)
        small, large = await _tenant(storage), await _tenant(storage)
        start = time.perf_counter()
        await _populate(storage, small[0], 100_000)
        await _populate(storage, large[0], args.rows)
        await storage.close()
        print(f"    (populated in {time.perf_counter() - start:.0f} s)")
        settings = {"data_dir": tmp, "database_url": db, "secret_key": "bench", "provider": "openai",
                    "openai_base_url": "http://127.0.0.1:9/v1"}
        for fmt in ("jsonl", "csv"):
            peaks = []
            for label, (_, sk, _) in (("100,000", small), (f"{args.rows:,}", large)):
                seconds, size, peak, before = _export(settings, sk, fmt)
                peaks.append(peak)
                print(f"    {fmt:5} {label:>9} rows  {seconds:6.1f} s  {size / 1e6:7.1f} MB  "
                      f"{int(label.replace(',', '')) / seconds:9,.0f} rows/s  peak RSS {peak / 1024:6.1f} MiB "
                      f"(before {before / 1024:.1f})")
            print(f"    {fmt:5} peak RSS ratio large/small {peaks[1] / peaks[0]:.2f}  (target <= 1.20; "
                  f"time target <= 30 s for 1,000,000)")
        print()
        await _ttft_during_export(settings, large[1], large[2], args.rows)


if __name__ == "__main__":
    random.seed(7)
    asyncio.run(main())
