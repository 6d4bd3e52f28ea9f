"""Benchmark of several nodes (issue 13): prints figures next to their targets, asserts nothing about time.

Run from the repository root: `.venv/bin/python -m bench.nodes [--quick]` (about ten minutes on two cores, two with
`--quick`; every size is a flag, `--workdir DIR` keeps the nodes' logs). It needs PostgreSQL at 127.0.0.1:5432,
`haproxy` and `redis-server`.

Everything runs on 127.0.0.1 and this process is the load generator: one asyncio loop driving `websockets` and
`httpx` clients (its open-file limit raised to the hard limit, which the servers it starts inherit). The fake
OpenAI-compatible upstream (`tests/support/upstream.py`) runs under uvicorn in a process of its own
(`bench/serve.py`). The servers under test are real `widget-server serve` processes (`python -m widget_server
serve`) on one fresh PostgreSQL database, with one tenant and every rate limit set to 1,000,000, in four setups:

- `memory`: one `serve` process, no `WIDGET_REDIS_URL` (the memory bus);
- `redis`: one `serve` process on a Redis of its own (`tests/support/nodes.py`, `running_cluster(n=1)`);
- `2 workers`: one `serve --workers 2` on a Redis of its own, reached on its port (the kernel spreads the sockets);
- `2 nodes`: two `serve` processes behind HAProxy (`tests/support/balancer.py`: round robin, no stickiness), one
  Redis, reached through the balancer.

A setup's server CPU is the user + system time, from `/proc/<pid>/stat` (children included: `cutime`, `cstime`),
of every process in the session each `serve` leads (its workers too); redis-server and HAProxy are shown apart.

(a) Added time to first token. The upstream model `pace-20-30` streams 30 words, one every 20 ms (50 tokens/s).
    As in `bench/stream.py` (a): 100 conversations straight to the upstream (direct TTFT: request sent to the first
    content chunk), then 100 widget conversations through the setup (TTFT: `message` frame sent to the first
    `reply.delta`), 3 rounds each after one warm-up round, `burst` (all start together) and `steady` (starts spread
    over 0.7 s). Added TTFT = p50 (p99) through the setup minus p50 (p99) direct, in the same run. Setups: `memory`,
    `2 workers`, `2 nodes`.
(b) CPU per delivered token, Redis bus over memory bus. 200 widget clients each ask for 3 `pace-20-30` replies back
    to back, all starting together (`bench/stream.py` (b)), on `memory` and on `redis`, alternating (memory, redis,
    memory, redis). CPU us/token = server CPU during the run / words delivered, summed over a side's runs; the
    ratio is Redis's over memory's. redis-server's own CPU per token is shown apart, and a ratio counting it. A run
    the server breaks off (a socket closed mid-reply) is shown as failed, and both sides run again with
    `--fallback-clients` (50).
(c) Idle sockets, on `redis` (one worker): N widget sockets opened (session token, WebSocket, `hello`, `ready`)
    by 100 concurrent openers, in two halves, then left idle; no open of a half starts after half of
    `--open-budget-s` (80 s), so N is the 10,000 asked or what opened by then, as the table says. RSS per socket =
    (the worker's `VmRSS` 2 s after the second half's last `ready` minus `VmRSS` 2 s after the first half's) / the
    second half's sockets: the process's own warm-up (first sessions, caches) falls in the first half; the figure
    over all N, warm-up included, is shown too. Loop lag: the server runs no ticker
    here, so a probe in a process of its own (not this loop, which holds the N client sockets) sends `GET /health`
    (one PostgreSQL round trip; the upstream check is cached 10 s) every 50 ms on one keep-alive connection and
    records each latency, first with no socket open, then for the same time with the N sockets idle (at least one
    20 s WebSocket ping round of uvicorn's in the full run). Lag p99 = latency p99 with the sockets open minus
    latency p50 with none.
(d) Socket opens per second, on `memory` and on `redis`, one worker each, alternating: M opens (session token,
    WebSocket, `hello` → `ready`, each a new conversation) by 100 concurrent openers, M / wall time; also M / the
    server CPU seconds they took (opens per second of one core, which the load generator's share of the two cores
    does not hide), the load generator's CPU, and each open's latency p50 / p99.
(e) Reconnect storm, on `2 nodes` through the balancer: N widget sockets opened as in (c) (the same time budget;
    8,000 asked: HAProxy's `maxconn 9000` caps N below 9,000), each remembering the node that answered
    (`X-Served-By`) and its `ready` (conversation, seq, epoch); then `kill -9` of the node holding more of them
    (`Cluster.kill`: the process group). Each widget of the killed node, on its socket's close, reconnects as
    `embed/widget.js` does: after `uniform(w / 2, w)` with `w = 500 ms * 2^attempt` (at most 30 s), the same
    session token, a WebSocket through the balancer, `hello` with `resume` (conversation id, last seq, epoch), until
    `ready`. Storm time = the kill to the last `ready`; the time for 10,000 widgets is also extrapolated from the
    rate at which they came back after the first one (linear: a guess, not a measurement).

Each failed open is counted (a note under the table), and the distinct warnings and errors of each setup's node
logs are listed there with their counts: a figure far from its target often has its cause there.

Figures depend on the machine and on what else runs on it: every process here (load generator, upstream, nodes,
redis-server, HAProxy, PostgreSQL) shares the same cores. Compare runs on the same machine.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import multiprocessing
import os
import platform
import random
import resource
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

import httpx
from websockets.asyncio.client import ClientConnection, connect

from bench.serve import AppSpec, Served
from bench.stream import (
    ORIGIN,
    PACED,
    PACED_TEXT,
    Report,
    Stack,
    Throughput,
    create_tenant,
    gather_closing,
    log,
    ms,
    pct,
    report_ttft,
    throughput_run,
    ttft_direct,
    ttft_server,
)
from tests.conftest import fresh_pg_database
from tests.support.nodes import ROOT, Cluster, missing_tools, running_cluster
from tests.support.servers import free_port, wait_healthy

T = TypeVar("T")
LIMITS = ("SESSIONS", "HELLOS", "MESSAGES", "FRAMES", "MESSAGES_PER_ADDRESS", "SESSIONS_PER_KEY")
OPEN_TIMEOUT_S = 60.0


def run(coro: Awaitable[T]) -> T:
    async def wrapped() -> T:
        return await coro
    return asyncio.run(wrapped())


# ---------------------------------------------------------------- CPU and memory, from /proc


def _stat(pid: int) -> list[str]:
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()


def _ticks(fields: list[str]) -> int:
    return sum(int(fields[i]) for i in (11, 12, 13, 14))  # utime, stime, cutime, cstime


@dataclass(frozen=True)
class Cpu:
    """CPU seconds used so far by a process, or (`session=True`) by every process of the session it leads."""

    pid: int
    session: bool = True

    def cpu_seconds(self) -> float:
        if not self.session:
            return _ticks(_stat(self.pid)) / os.sysconf("SC_CLK_TCK")
        total = 0
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                fields = _stat(int(entry.name))
            except (FileNotFoundError, ProcessLookupError):
                continue
            if int(fields[3]) == self.pid:  # field 6 of stat: the session id
                total += _ticks(fields)
        return total / os.sysconf("SC_CLK_TCK")


class Cpus:
    """Several `Cpu`s counted as one (the nodes of a setup)."""

    def __init__(self, cpus: Sequence[Cpu]) -> None:
        self.cpus = list(cpus)

    def cpu_seconds(self) -> float:
        return sum(c.cpu_seconds() for c in self.cpus)


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for {pid}")


def raise_open_files() -> int:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return hard


# ---------------------------------------------------------------- the setups


def node_env(database_url: str, upstream: str) -> dict[str, str]:
    env = {"WIDGET_DATABASE_URL": database_url, "WIDGET_PROVIDER": "openai", "WIDGET_OPENAI_BASE_URL": upstream + "/v1",
           "WIDGET_SECRET_KEY": "bench"}
    return env | {f"WIDGET_RATE_LIMIT_{name}": "1000000" for name in LIMITS}


@dataclass
class Setup:
    name: str
    url: str  # where clients go: a node's port, or the balancer
    pids: list[int]  # each `serve` process, leading its session
    logs: list[Path]
    redis_pid: int | None = None
    lb_pid: int | None = None
    cluster: Cluster | None = None

    @property
    def cpu(self) -> Cpus:
        return Cpus([Cpu(pid) for pid in self.pids])

    def extra(self) -> dict[str, Cpu]:
        """The processes besides the nodes whose CPU is shown apart."""
        out = {}
        if self.redis_pid is not None:
            out["redis-server"] = Cpu(self.redis_pid, session=False)
        if self.lb_pid is not None:
            out["haproxy"] = Cpu(self.lb_pid, session=False)
        return out


@contextlib.contextmanager
def memory_setup(workdir: Path, env: dict[str, str]) -> Iterator[Setup]:
    """One `serve` process without Redis, started as `tests/support/nodes.py` starts a node."""
    workdir.mkdir(parents=True, exist_ok=True)
    port, log_path = free_port(), workdir / "memory.log"
    full = {k: v for k, v in os.environ.items() if k != "WIDGET_REDIS_URL"} | env | {
        "WIDGET_DATA_DIR": str(workdir), "WIDGET_NODE_NAME": "memory",
        "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep)}
    with log_path.open("ab") as out:
        proc = subprocess.Popen([sys.executable, "-m", "widget_server", "serve", "--port", str(port)], env=full,
                                cwd=workdir, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_healthy(proc, url, 60, log=log_path)
        yield Setup("memory", url, [proc.pid], [log_path])
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)  # the group this process leads: the node we started
            proc.wait()


@contextlib.contextmanager
def cluster_setup(name: str, workdir: Path, env: dict[str, str], n: int, workers: int) -> Iterator[Setup]:
    workdir.mkdir(parents=True, exist_ok=True)
    with running_cluster(workdir, env, n=n, workers=workers) as cluster:
        assert cluster.redis.proc is not None and cluster.lb.proc is not None
        url = cluster.url if n > 1 else cluster.nodes[0].url
        pids = [node.proc.pid for node in cluster.nodes if node.proc is not None]
        yield Setup(name, url, pids, [node.log for node in cluster.nodes], cluster.redis.proc.pid,
                    cluster.lb.proc.pid if n > 1 else None, cluster)


# ---------------------------------------------------------------- a widget socket after `ready`


@dataclass
class Widget:
    ws: ClientConnection
    token: str
    ready: dict[str, Any]
    node: str  # X-Served-By when through the balancer
    opened_s: float  # session request sent to `ready`


def widget_url(base_url: str) -> str:
    return base_url.replace("http", "ws", 1) + "/v1/widget/ws"


async def hello(base_url: str, token: str, resume: dict[str, Any] | None = None) -> tuple[ClientConnection,
                                                                                          dict[str, Any]]:
    ws = await connect(widget_url(base_url), additional_headers={"Origin": ORIGIN}, max_size=1 << 20,
                       open_timeout=OPEN_TIMEOUT_S)
    try:
        await ws.send(json.dumps({"type": "hello", "token": token, **({"resume": resume} if resume else {})}))
        ready: dict[str, Any] = json.loads(await asyncio.wait_for(ws.recv(), OPEN_TIMEOUT_S))
    except BaseException:
        await ws.close()
        raise
    if ready["type"] != "ready":
        await ws.close()
        raise RuntimeError(f"expected ready, got {ready}")
    return ws, ready


@dataclass
class Opened:
    widgets: list[Widget]
    seconds: float  # wall time from the first open started to the last ended
    errors: list[str]  # opens that failed, by exception
    cut: bool  # the time budget ran out before n opens had started


async def open_widgets(base_url: str, pk: str, persona: str, n: int, concurrency: int = 100,
                       budget_s: float | None = None) -> Opened:
    """Up to n widgets (each a session token, a socket and a new conversation) by `concurrency` openers; no open
    starts after `budget_s`."""
    gate = asyncio.Semaphore(concurrency)
    # keep-alive shorter than uvicorn's 5 s: a connection idle while its opener waited on a socket is not reused
    # just as the server closes it
    limits = httpx.Limits(max_connections=concurrency + 10, max_keepalive_connections=concurrency + 10,
                          keepalive_expiry=2.0)
    errors: list[str] = []
    start = time.monotonic()
    deadline = start + budget_s if budget_s else float("inf")
    async with httpx.AsyncClient(timeout=OPEN_TIMEOUT_S, limits=limits) as http:
        async def one() -> Widget | None:
            async with gate:
                began = time.monotonic()
                if began > deadline:
                    return None
                try:
                    r = await http.post(f"{base_url}/v1/widget/sessions", json={"key": pk, "persona": persona},
                                        headers={"Origin": ORIGIN})
                    r.raise_for_status()
                    token = r.json()["token"]
                    ws, ready = await hello(base_url, token)
                except Exception as exc:  # counted, not raised: one failed open is a figure, not the end of the run
                    errors.append(type(exc).__name__)
                    return None
                node = ws.response.headers.get("x-served-by", "") if ws.response else ""
                return Widget(ws, token, ready, node, time.monotonic() - began)
        done = await asyncio.gather(*(one() for _ in range(n)))
    widgets = [w for w in done if w is not None]
    return Opened(widgets, time.monotonic() - start, errors, len(widgets) + len(errors) < n)


async def close_widgets(widgets: Sequence[Widget]) -> None:
    await gather_closing([w.ws for w in widgets])


# ---------------------------------------------------------------- (a) added TTFT


def bench_ttft(report: Report, setup: Setup, upstream: str, keys: dict[str, str], args: argparse.Namespace) -> None:
    stack = Stack(setup.url, keys["sk"], keys["pk"])
    persona = stack.persona({"kind": "openai", "model": PACED})
    for label, spread in (("burst", 0.0), ("steady", 0.7))[0 if args.burst else 1:]:
        n = args.conversations
        log(f"(a) {n} conversations of {PACED}, {label}: direct, then through {setup.name} ({setup.url})")
        direct = run(ttft_direct(upstream, PACED, n, args.rounds, 1, spread))
        procs = {"nodes": setup.cpu, **setup.extra()}
        cpu0, start = {k: p.cpu_seconds() for k, p in procs.items()}, time.monotonic()
        label_full = f"{n} conversations, {PACED}, {label}, {setup.name}"
        try:
            through = run(ttft_server(stack, persona, n, args.rounds, 1, spread))
        except Exception as exc:  # a socket the server closed mid-run: the run has no figure, the bench goes on
            report.add(f"(a) TTFT, {label_full}", "through the setup", f"FAILED: {failure(exc)}", "", False)
            continue
        seconds = time.monotonic() - start
        cpu = {k: (p.cpu_seconds() - cpu0[k]) / seconds for k, p in procs.items()}
        report_ttft(report, label_full, direct, through, PACED_TEXT, cpu["nodes"])
        if len(cpu) > 1:
            report.add(f"(a) TTFT, {label_full}", "  (CPU meanwhile: " + ", ".join(cpu) + ")",
                       " / ".join(f"{v:.0%}" for v in cpu.values()) + " of one core")


# ---------------------------------------------------------------- (b) CPU per delivered token


def failure(exc: BaseException) -> str:
    return " ".join(f"{type(exc).__name__}: {exc}".split())[:140]


def noted_logs(report: Report, setup: Setup) -> None:
    """What the nodes' logs warned of, each distinct line once with its count: why a figure is off."""
    seen: dict[str, int] = {}
    for path in setup.logs:
        for line in path.read_text(errors="replace").splitlines():
            if " WARNING " in line or " ERROR " in line:
                key = line.split(" ", 2)[2].split(" conversation_id=")[0].split(" message_id=")[0][:150]
                seen[key] = seen.get(key, 0) + 1
    for line, count in sorted(seen.items(), key=lambda item: -item[1]):
        report.notes.append(f"{setup.name} logs, {count}x: {line}")


def bench_cpu_per_token(report: Report, memory: Setup, redis: Setup, upstream: Served, keys: dict[str, str],
                        args: argparse.Namespace) -> None:
    clients = args.clients
    for attempt in (1, 2):
        runs: dict[str, list[Throughput]] = {"memory": [], "redis": []}
        failed: dict[str, str] = {}
        for rep in range(args.reps):
            for setup in (memory, redis):
                stack = Stack(setup.url, keys["sk"], keys["pk"])
                persona = stack.persona({"kind": "openai", "model": PACED})
                log(f"(b) {clients} clients x {args.turns} replies of {PACED} on {setup.name} ({rep + 1}/{args.reps})")
                procs: dict[str, Any] = {"server": setup.cpu, "upstream": upstream, **setup.extra()}
                try:
                    runs[setup.name].append(run(throughput_run(partial(stack.clients, persona, clients),
                                                               args.turns, PACED_TEXT, procs)))
                except Exception as exc:  # the run has no figure; the other side's still count
                    failed[setup.name] = failure(exc)
        report_cpu_per_token(report, clients, runs, failed, args)
        if not failed or attempt == 2 or clients <= args.fallback_clients:
            return
        clients = args.fallback_clients
        report.notes.append(f"(b) a run of {args.clients} clients failed: again with {clients} clients")


def report_cpu_per_token(report: Report, clients: int, runs: dict[str, list[Throughput]], failed: dict[str, str],
                         args: argparse.Namespace) -> None:
    sec = f"(b) CPU per token, {clients} clients x {args.turns} x {PACED}, one node"
    per: dict[str, float] = {}
    for name, reason in failed.items():
        report.add(sec, f"{name} bus: a run", f"FAILED: {reason}", "", False)
    for name, done in runs.items():
        words = sum(r.words for r in done)
        if not words:
            return
        per[name] = sum(r.cpu["server"] for r in done) / words * 1e6
        rates = ", ".join(f"{r.rate:,.0f}" for r in done)
        report.add(sec, f"{name} bus: delivered tokens/s (runs: {rates})",
                   f"{words:,} words, {sum(r.incomplete for r in done)} incomplete")
        report.add(sec, f"  {name} bus: server CPU us/token (runs: "
                   + ", ".join(f"{r.cpu_us_per_token('server'):.0f}" for r in done) + ")", f"{per[name]:.1f}")
        report.add(sec, f"  {name} bus: upstream / load generator CPU us/token",
                   f"{sum(r.cpu['upstream'] for r in done) / words * 1e6:.0f} / "
                   f"{sum(r.cpu['load generator'] for r in done) / words * 1e6:.0f}")
    redis_words = sum(r.words for r in runs["redis"])
    per_redis_server = sum(r.cpu["redis-server"] for r in runs["redis"]) / redis_words * 1e6
    report.add(sec, "  redis-server CPU us/token (shown apart)", f"{per_redis_server:.1f}")
    ratio = per["redis"] / per["memory"]
    report.add(sec, "server CPU per token, Redis bus / memory bus", f"{ratio:.3f}", "<= 1.15", ratio <= 1.15)
    report.add(sec, "  counting redis-server too", f"{(per['redis'] + per_redis_server) / per['memory']:.3f}")


# ---------------------------------------------------------------- (c) idle sockets, (d) socket opens per second


def _probe(url: str, seconds: float, period_s: float) -> list[float]:
    """In a process of its own: `GET /health` every `period_s` for `seconds`; each latency."""
    out: list[float] = []
    with httpx.Client(timeout=30) as http:
        http.get(url + "/health")
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            began = time.monotonic()
            http.get(url + "/health").raise_for_status()
            out.append(time.monotonic() - began)
            time.sleep(max(0.0, period_s - (time.monotonic() - began)))
    return out


async def probe(pool: ProcessPoolExecutor, url: str, seconds: float) -> list[float]:
    return await asyncio.wrap_future(pool.submit(_probe, url, seconds, 0.05))


@dataclass
class Opens:
    opened: Opened
    server_cpu: float
    gen_cpu: float

    @property
    def n(self) -> int:
        return len(self.opened.widgets)

    @property
    def rate(self) -> float:
        return self.n / self.opened.seconds

    @property
    def latencies(self) -> list[float]:
        return [w.opened_s for w in self.opened.widgets]


async def timed_opens(setup: Setup, pk: str, persona: str, n: int, concurrency: int,
                      budget_s: float | None = None) -> Opens:
    cpu0, gen0 = setup.cpu.cpu_seconds(), time.process_time()
    opened = await open_widgets(setup.url, pk, persona, n, concurrency, budget_s)
    return Opens(opened, setup.cpu.cpu_seconds() - cpu0, time.process_time() - gen0)


def opened_note(report: Report, what: str, opened: Opened, wanted: int) -> None:
    if opened.errors:
        kinds = {e: opened.errors.count(e) for e in sorted(set(opened.errors))}
        report.notes.append(f"{what}: {len(opened.errors)} opens failed: {kinds}")
    if opened.cut:
        report.notes.append(f"{what}: {len(opened.widgets):,} sockets of the {wanted:,} asked for: the time "
                            f"budget for opening them ran out ({opened.seconds:.0f} s)")


def bench_idle(report: Report, setup: Setup, keys: dict[str, str], args: argparse.Namespace) -> None:
    seconds = args.probe_s
    stack = Stack(setup.url, keys["sk"], keys["pk"])
    persona = stack.persona({"kind": "openai", "model": PACED})
    pid = setup.pids[0]  # one worker: the `serve` process is the worker

    async def measure() -> tuple[list[float], list[float], list[int], list[Opens], int]:
        with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
            await probe(pool, setup.url, 1.0)  # the probe's process started and warm
            log(f"(c) /health latency with no socket open, {seconds:g} s")
            before = await probe(pool, setup.url, seconds)
            rss = [rss_kib(pid)]
            halves: list[Opens] = []
            for half in (1, 2):
                log(f"(c) opening up to {args.idle // 2} idle widget sockets on {setup.name} (half {half}, at most "
                    f"{args.open_budget_s / 2:g} s)")
                halves.append(await timed_opens(setup, keys["pk"], persona, args.idle // 2, args.concurrency,
                                                args.open_budget_s / 2))
                await asyncio.sleep(2.0)
                rss.append(rss_kib(pid))
            widgets = [w for h in halves for w in h.opened.widgets]
            log(f"(c) /health latency with {len(widgets)} sockets idle, {seconds:g} s")
            during = await probe(pool, setup.url, seconds)
            closed = sum(w.ws.close_code is not None for w in widgets)
            await close_widgets(widgets)
        return before, during, rss, halves, closed

    before, during, rss, halves, closed = run(measure())
    n = sum(h.n for h in halves)
    for h in halves:
        opened_note(report, "(c)", h.opened, args.idle // 2)
    if closed:
        report.notes.append(f"(c) {closed} of the {n} idle sockets were closed by the time the probe ended")
    sec = f"(c) {n:,} idle sockets, {setup.name}, one worker"
    report.add(sec, "worker RSS: before / after the first half / with all open",
               " / ".join(f"{r / 1024:,.0f}" for r in rss) + " MiB")
    report.add(sec, f"  RSS per idle socket, all {n:,} (the process's warm-up counted in)",
               f"{(rss[2] - rss[0]) / n:.1f} KiB")
    per = (rss[2] - rss[1]) / halves[1].n
    report.add(sec, f"RSS per idle socket, the second half ({halves[1].n:,} sockets)", f"{per:.1f} KiB", "<= 30 KiB",
               per <= 30)
    report.add(sec, f"/health latency, no socket: p50 / p99 / max ({len(before)} requests)",
               f"{ms(pct(before, 50))} / {ms(pct(before, 99))} / {ms(max(before))}")
    report.add(sec, f"/health latency, sockets idle: p50 / p99 / max ({len(during)} requests)",
               f"{ms(pct(during, 50))} / {ms(pct(during, 99))} / {ms(max(during))}")
    lag = pct(during, 99) - pct(before, 50)
    report.add(sec, "loop lag p99 = latency p99 (sockets idle) - latency p50 (none)", ms(lag), "< 50 ms", lag < 0.050)
    latencies = [x for h in halves for x in h.latencies]
    report.add(sec, f"  (the {n:,} opens: per second, open latency p50 / p99)",
               f"{n / sum(h.opened.seconds for h in halves):,.0f}/s, {ms(pct(latencies, 50))} / "
               f"{ms(pct(latencies, 99))}")


def bench_opens(report: Report, setups: Sequence[Setup], keys: dict[str, str], args: argparse.Namespace) -> None:
    results: dict[str, list[Opens]] = {s.name: [] for s in setups}
    for rep in range(args.reps):
        for setup in setups:
            persona = Stack(setup.url, keys["sk"], keys["pk"]).persona({"kind": "openai", "model": PACED})
            log(f"(d) {args.opens} opens by {args.concurrency} openers on {setup.name} ({rep + 1}/{args.reps})")

            async def once(setup: Setup = setup, persona: str = persona) -> Opens:
                opens = await timed_opens(setup, keys["pk"], persona, args.opens, args.concurrency)
                await close_widgets(opens.opened.widgets)
                return opens
            results[setup.name].append(run(once()))
            opened_note(report, f"(d) {setup.name} run {rep + 1}", results[setup.name][-1].opened, args.opens)
            time.sleep(1.0)  # the closes settle
    sec = f"(d) socket opens, {args.concurrency} concurrent openers, one worker"
    for name, runs in results.items():
        best = max(runs, key=lambda o: o.rate)
        report.add(sec, f"{name} bus: opens/s (runs: " + ", ".join(f"{o.rate:,.0f}" for o in runs) + ")",
                   f"{best.rate:,.0f}", ">= 500", best.rate >= 500)
        report.add(sec, f"  {name} bus: opens per server CPU second; server / load generator CPU per open",
                   f"{best.n / best.server_cpu:,.0f}; {best.server_cpu / best.n * 1e3:.2f} / "
                   f"{best.gen_cpu / best.n * 1e3:.2f} ms")
        report.add(sec, f"  {name} bus: open latency p50 / p99", f"{ms(pct(best.latencies, 50))} / "
                   f"{ms(pct(best.latencies, 99))}")


# ---------------------------------------------------------------- (e) reconnect storm


@dataclass
class Back:
    closed_at: float
    ready_at: float
    attempts: int
    resumed: bool
    node: str


async def come_back(widget: Widget, base_url: str) -> Back:
    """As `embed/widget.js` on a lost socket: backoff with jitter, the same token, `hello` with `resume`."""
    await widget.ws.wait_closed()
    closed_at = time.monotonic()
    resume = {"conversation_id": widget.ready["conversation_id"], "last_seq": widget.ready["seq"],
              "epoch": widget.ready["epoch"]}
    attempt = 0
    while True:
        wait = min(30.0, 0.5 * 2 ** attempt)
        attempt += 1
        await asyncio.sleep(random.uniform(wait / 2, wait))
        try:
            ws, ready = await hello(base_url, widget.token, resume)
        except Exception:  # refused, reset, or a frame other than ready: the widget tries again later
            continue
        widget.ws, widget.ready = ws, ready
        widget.node = ws.response.headers.get("x-served-by", "") if ws.response else ""
        return Back(closed_at, time.monotonic(), attempt, bool(ready.get("resumed")), widget.node)


@dataclass
class Storm:
    spread: dict[str, int]  # widgets per node before the kill
    victim: str
    backs: list[Back]
    missing: int  # widgets of the killed node not back when the storm's timeout ran out
    killed_at: float
    node_cpu: float  # the surviving node's CPU seconds from the kill to the last `ready`
    gen_cpu: float  # the load generator's, likewise
    seconds: float  # the kill to the last `ready`


def bench_storm(report: Report, setup: Setup, keys: dict[str, str], args: argparse.Namespace) -> None:
    cluster = setup.cluster
    assert cluster is not None
    n = args.storm
    persona = Stack(setup.url, keys["sk"], keys["pk"]).persona({"kind": "openai", "model": PACED})

    async def storm() -> Storm:
        log(f"(e) opening up to {n} widget sockets through the balancer (at most {args.open_budget_s:g} s)")
        opened = await open_widgets(setup.url, keys["pk"], persona, n, args.concurrency, args.open_budget_s)
        opened_note(report, "(e)", opened, n)
        widgets = opened.widgets
        spread = {name: sum(w.node == name for w in widgets) for name in sorted({w.node for w in widgets})}
        victim = max(spread, key=lambda name: spread[name])
        survivor = next(node for node in cluster.nodes if node.name != victim)
        assert survivor.proc is not None
        tasks = [asyncio.create_task(come_back(w, setup.url)) for w in widgets if w.node == victim]
        await asyncio.sleep(1.0)
        log(f"(e) kill -9 {victim} ({len(tasks)} widgets; {spread})")
        survivor_cpu, gen0 = Cpu(survivor.proc.pid), time.process_time()
        node0 = survivor_cpu.cpu_seconds()
        killed_at = time.monotonic()
        await asyncio.to_thread(cluster.kill, victim)
        done, pending = await asyncio.wait(tasks, timeout=args.storm_timeout_s)
        ended = time.monotonic()
        node_cpu, gen_cpu = survivor_cpu.cpu_seconds() - node0, time.process_time() - gen0
        for task in pending:
            task.cancel()
        backs = [t.result() for t in done]
        await close_widgets(widgets)
        last = max((b.ready_at for b in backs), default=ended) if not pending else ended
        return Storm(spread, victim, backs, len(pending), killed_at, node_cpu, gen_cpu, last - killed_at)

    st = run(storm())
    killed = len(st.backs) + st.missing
    sec = f"(e) reconnect storm, {sum(st.spread.values()):,} widgets on 2 nodes behind HAProxy, kill -9 of one"
    back_s = sorted(b.ready_at - st.killed_at for b in st.backs)
    report.add(sec, "widgets per node before the kill", ", ".join(f"{k}: {v:,}" for k, v in st.spread.items()))
    within = sum(t <= 30 for t in back_s)
    report.add(sec, f"widgets of the killed node ({st.victim}) back (ready) within 30 s", f"{within:,} of {killed:,}",
               "all", within == killed)
    report.add(sec, "  the kill to the last ready" + (f" ({st.missing} never came back)" if st.missing else ""),
               f"{st.seconds:.1f} s")
    if back_s:
        report.add(sec, "  the kill to ready, per widget: first / p50 / p99",
                   f"{back_s[0]:.2f} / {pct(back_s, 50):.2f} / {pct(back_s, 99):.2f} s")
        report.add(sec, "  the kill to the last socket close seen",
                   ms(max(b.closed_at for b in st.backs) - st.killed_at))
        rate = (len(back_s) - 1) / (back_s[-1] - back_s[0]) if back_s[-1] > back_s[0] else float("inf")
        guess = back_s[0] + 10_000 / rate
        report.add(sec, "  resumes per second after the first; 10,000 widgets at that rate (extrapolated, linear)",
                   f"{rate:,.0f}/s; {guess:.1f} s", "<= 30 s", guess <= 30)
        report.add(sec, "  attempts per widget: mean / max; ready with resumed true / false",
                   f"{sum(b.attempts for b in st.backs) / len(st.backs):.2f} / {max(b.attempts for b in st.backs)}; "
                   f"{sum(b.resumed for b in st.backs):,} / {sum(not b.resumed for b in st.backs):,}")
        landed = {name: sum(b.node == name for b in st.backs) for name in sorted({b.node for b in st.backs})}
        report.add(sec, "  landed on", ", ".join(f"{k}: {v:,}" for k, v in landed.items()))
    report.add(sec, "  CPU, the kill to the last ready: surviving node / load generator",
               f"{st.node_cpu:.1f} / {st.gen_cpu:.1f} s ({st.node_cpu / st.seconds:.0%} / "
               f"{st.gen_cpu / st.seconds:.0%} of one core)")


# ---------------------------------------------------------------- the run


SECTIONS = ("ttft", "cpu", "idle", "opens", "storm")


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.nodes", description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="small sizes: a run of about three minutes")
    parser.add_argument("--only", default=",".join(SECTIONS), help=f"comma-separated, of {', '.join(SECTIONS)}")
    parser.add_argument("--conversations", type=int, help="(a) concurrent conversations (100)")
    parser.add_argument("--rounds", type=int, help="(a) measured rounds per conversation (3)")
    parser.add_argument("--no-burst", dest="burst", action="store_false", default=None,
                        help="(a) the steady start only")
    parser.add_argument("--clients", type=int, help="(b) clients (200)")
    parser.add_argument("--fallback-clients", type=int, default=50,
                        help="(b) when a run of --clients fails, both sides again with this many (50)")
    parser.add_argument("--turns", type=int, help="(b) replies per client (3)")
    parser.add_argument("--reps", type=int, help="(b), (d) runs per side, alternating (2)")
    parser.add_argument("--idle", type=int, help="(c) idle sockets (10,000)")
    parser.add_argument("--probe-s", type=float, help="(c) seconds of /health probing, without and with (25)")
    parser.add_argument("--opens", type=int, help="(d) opens per run (300)")
    parser.add_argument("--concurrency", type=int, default=100, help="(c), (d), (e) concurrent openers (100)")
    parser.add_argument("--storm", type=int, help="(e) widgets over the 2 nodes (8,000; HAProxy allows 9,000)")
    parser.add_argument("--workdir", help="keep the nodes' logs (and data dirs) here instead of a temporary directory")
    parser.add_argument("--open-budget-s", type=float, help="(c), (e) no open starts after this many seconds (80)")
    parser.add_argument("--storm-timeout-s", type=float, default=180.0, help="(e) give up after this long")
    args = parser.parse_args(argv)
    full = {"conversations": 100, "rounds": 3, "burst": True, "clients": 200, "turns": 3, "reps": 2, "idle": 10_000,
            "probe_s": 20.0, "opens": 300, "storm": 8000, "open_budget_s": 80.0}
    quick = {"conversations": 50, "rounds": 2, "burst": False, "clients": 50, "turns": 2, "reps": 1, "idle": 1000,
             "probe_s": 3.0, "opens": 150, "storm": 1000, "open_budget_s": 10.0}
    for name, value in (quick if args.quick else full).items():
        if getattr(args, name) is None:
            setattr(args, name, value)
    args.only = set(args.only.split(","))
    unknown = args.only - set(SECTIONS)
    if unknown:
        parser.error(f"unknown sections {sorted(unknown)}")
    return args


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    if missing := missing_tools():
        raise SystemExit(f"bench.nodes needs {missing}")
    began = time.monotonic()
    files = raise_open_files()
    report = Report()
    report.notes += [
        f"machine: {os.cpu_count()} CPUs, {platform.python_implementation()} {platform.python_version()}, open files "
        f"{files:,}; all traffic on 127.0.0.1; the load generator, upstream, nodes, redis-server, HAProxy and "
        "PostgreSQL share those CPUs, so the figures are this machine's, on this run.",
        f"load average (1 min) when the bench started: {os.getloadavg()[0]:.2f}.",
        "CPU shares are of one core (200% = both cores); nodes' CPU includes their workers.",
    ]
    with contextlib.ExitStack() as exits:
        tmp = Path(args.workdir) if args.workdir else Path(exits.enter_context(
            tempfile.TemporaryDirectory(prefix="widget-bench-nodes-")))
        db = exits.enter_context(fresh_pg_database())
        upstream = exits.enter_context(Served(AppSpec("upstream")))
        keys = run(create_tenant(db))  # this also migrates, before any node opens the database
        env = node_env(db, upstream.url)
        log(f"upstream {upstream.url}, database {db}")
        if args.only & {"ttft", "cpu", "idle", "opens"}:
            with memory_setup(tmp / "memory", env) as memory, \
                    cluster_setup("redis", tmp / "redis", env, n=1, workers=1) as redis:
                if "ttft" in args.only:
                    bench_ttft(report, memory, upstream.url, keys, args)
                if "cpu" in args.only:
                    bench_cpu_per_token(report, memory, redis, upstream, keys, args)
                if "opens" in args.only:
                    bench_opens(report, [memory, redis], keys, args)
                if "idle" in args.only:
                    bench_idle(report, redis, keys, args)
                noted_logs(report, memory)
                noted_logs(report, redis)
        if "ttft" in args.only:
            with cluster_setup("2 workers", tmp / "workers", env, n=1, workers=2) as workers:
                bench_ttft(report, workers, upstream.url, keys, args)
                noted_logs(report, workers)
        if args.only & {"ttft", "storm"}:
            with cluster_setup("2 nodes", tmp / "nodes", env, n=2, workers=1) as nodes:
                if "ttft" in args.only:
                    bench_ttft(report, nodes, upstream.url, keys, args)
                if "storm" in args.only:
                    bench_storm(report, nodes, keys, args)
                noted_logs(report, nodes)
    print()
    print(report.render())
    print(f"\ntotal bench time: {time.monotonic() - began:.0f} s")


if __name__ == "__main__":
    main()
