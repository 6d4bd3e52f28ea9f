"""Streaming benchmark of the widget server: prints figures next to their targets, asserts nothing about time.

Run from the repository root: `.venv/bin/python -m bench.stream` (about three minutes on two cores).

Everything runs on 127.0.0.1. The fake OpenAI-compatible upstream (`tests/support/upstream.py`), the server under
test (`create_app(Settings(...))`, SQLite in a temporary directory, default settings except
`rate_limit_messages=100000`) and the bare baseline endpoint (`bench/bare.py`) each run under uvicorn in a process
of their own (`bench/serve.py`); this process is the load generator, one asyncio loop driving `websockets` and
`httpx` clients. Every reply is checked word by word (`w1 w2 …` in order, nothing lost or doubled): a reply that
is not is counted as incomplete.

(a) Added time to first token (TTFT). The upstream model `pace-20-30` streams 30 words, one every 20 ms. Direct
    TTFT: from sending a request straight to the upstream (httpx) to its first content chunk. Through-server
    TTFT: from sending a widget `message` frame to the first `reply.delta`. Added TTFT = p50 (p99) through the
    server minus p50 (p99) direct.
    - 1 conversation, 50 rounds: each round sends the direct request and the widget message at the same moment,
      so the per-round difference is shown as well.
    - 100 concurrent conversations, 3 rounds each after one warm-up round: first 100 conversations straight to
      the upstream, then 100 through the server (running both at once would double the load on shared CPUs).
      `burst`: every conversation starts at the same instant; `steady`: the starts are spread over one reply.
      100 x `pace-20-30` offers the server 5,000 tokens/s; a `pace-100-20` run (1,000 tokens/s) shows the
      added TTFT when the server is not CPU-bound. The server process's CPU use is shown for each run.
(b) Throughput ratio. 200 WebSocket clients each ask for replies back to back, all starting together; delivered
    tokens/s = words received by all clients / wall time until the last reply ends. The full stack (widget
    protocol, coalesced deltas) is compared with the bare endpoint that forwards each upstream chunk as a frame.
    Runs alternate (bare, full, bare, full) and each side's best run counts. CPU per delivered token is shown by
    process, from `/proc`, so the server's own cost is told apart from the upstream's and the load generator's.
(c) Event-loop lag under the local model. A second server with `provider="local"` (Gemma 3 270M through
    llama-cpp-python) runs a ticker in its own event loop: sleep 5 ms, record how late it wakes. Lag is cut
    into windows: idle, model load plus first reply, one reply generating, two replies requested at once. The
    local model's tokens/s is `usage.output_tokens` over the time from first to last delta.
"""

from __future__ import annotations

import asyncio
import json
import os
import platform
import random
import re
import secrets
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

import httpx
from websockets.asyncio.client import ClientConnection, connect

from bench.serve import AppSpec, Lag, Served
from widget_server.backends.storage import open_storage
from widget_server.domain import keys, tenants

ORIGIN = "https://shop.example"
PACED = "pace-20-30"  # 30 words, one every 20 ms
PACED_TEXT = "".join(f"w{i} " for i in range(1, 31))
SLOW = "pace-100-20"  # 20 words, one every 100 ms: 100 conversations offer 1,000 tokens/s instead of 5,000
SLOW_TEXT = "".join(f"w{i} " for i in range(1, 21))
WORD = re.compile(r"\bw\d+\b")
TURN_TIMEOUT_S = 60.0
T = TypeVar("T")


# ---------------------------------------------------------------- statistics and the report


def pct(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0..100), linear between the closest ranks."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    k = (len(ordered) - 1) * q / 100
    lo = int(k)
    hi = min(lo + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f} ms"


@dataclass
class Row:
    section: str
    metric: str
    value: str
    target: str = ""
    met: bool | None = None


@dataclass
class Report:
    rows: list[Row] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def add(self, section: str, metric: str, value: str, target: str = "", met: bool | None = None) -> None:
        self.rows.append(Row(section, metric, value, target, met))

    def render(self) -> str:
        head = ("section", "metric", "measured", "target", "met")
        body = [(r.section, r.metric, r.value, r.target, "" if r.met is None else ("yes" if r.met else "NO"))
                for r in self.rows]
        widths = [max(len(line[i]) for line in [head, *body]) for i in range(len(head))]
        sep = "-+-".join("-" * w for w in widths)
        lines = [" | ".join(c.ljust(w) for c, w in zip(head, widths, strict=True)), sep]
        last = None
        for line in body:
            if last is not None and line[0] != last:
                lines.append(sep)
            last = line[0]
            lines.append(" | ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)))
        return "\n".join(lines + [""] + self.notes)


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


# ---------------------------------------------------------------- one streamed reply, seen by a client


@dataclass
class Turn:
    sent_at: float  # time.monotonic() just before the request or frame went out
    first_at: float | None = None  # first content
    end_at: float | None = None  # end of the reply
    text: str = ""
    frames: int = 0
    finish: str | None = None
    error: str | None = None
    server_ttft_ms: int | None = None  # what the server itself reports in reply.end
    output_tokens: int | None = None

    @property
    def ttft(self) -> float | None:
        return None if self.first_at is None else self.first_at - self.sent_at

    @property
    def words(self) -> int:
        return len(WORD.findall(self.text))

    def complete(self, expected: str) -> bool:
        return self.error is None and self.finish in (None, "stop") and self.text == expected


async def _recv_json(ws: ClientConnection) -> dict[str, Any]:
    frame: dict[str, Any] = json.loads(await asyncio.wait_for(ws.recv(), TURN_TIMEOUT_S))
    return frame


class WidgetClient:
    """One visitor speaking the widget protocol (hello → ready, message → … reply.end)."""

    LOGGED = frozenset({"message.accepted", "reply.start", "reply.delta", "reply.end", "guardrail"})

    def __init__(self, ws: ClientConnection, seq: int) -> None:
        self.ws = ws
        self.sent = 0
        self.seq = seq  # the last `seq` seen: each logged frame must carry the next one

    @classmethod
    async def open(cls, base_url: str, token: str) -> WidgetClient:
        ws = await connect(base_url.replace("http", "ws", 1) + "/v1/widget/ws", additional_headers={"Origin": ORIGIN},
                           max_size=1 << 20, open_timeout=60)
        await ws.send(json.dumps({"type": "hello", "token": token}))
        ready = await _recv_json(ws)
        if ready["type"] != "ready":
            raise RuntimeError(f"expected ready, got {ready}")
        return cls(ws, ready["seq"])

    async def turn(self, text: str) -> Turn:
        self.sent += 1
        turn = Turn(time.monotonic())
        await self.ws.send(json.dumps({"type": "message", "client_id": f"c{self.sent}", "text": text}))
        while True:
            frame = await _recv_json(self.ws)
            kind = frame["type"]
            if kind in self.LOGGED:
                if frame.get("seq") != self.seq + 1:
                    turn.error = f"seq {frame.get('seq')} after {self.seq}"
                self.seq = frame.get("seq", self.seq)
            if kind == "reply.delta":
                if turn.first_at is None:
                    turn.first_at = time.monotonic()
                turn.text += frame["text"]
                turn.frames += 1
            elif kind == "reply.end":
                turn.end_at = time.monotonic()
                turn.finish = frame["finish_reason"]
                turn.server_ttft_ms = frame["timing"]["ttft_ms"]
                turn.output_tokens = frame["usage"]["output_tokens"]
                return turn
            elif kind == "error":
                turn.error = str(frame.get("code"))
                if "message_id" not in frame:  # refused before any reply started: no reply.end follows
                    turn.end_at = time.monotonic()
                    return turn
            elif kind == "guardrail":
                turn.error = f"guardrail:{frame.get('reason')}"

    async def close(self) -> None:
        await self.ws.close()


class BareClient:
    """A client of `bench/bare.py`."""

    def __init__(self, ws: ClientConnection, model: str) -> None:
        self.ws = ws
        self.model = model

    @classmethod
    async def open(cls, base_url: str, model: str) -> BareClient:
        ws = await connect(base_url.replace("http", "ws", 1) + "/ws", additional_headers={"Origin": ORIGIN},
                           max_size=1 << 20, open_timeout=60)
        return cls(ws, model)

    @classmethod
    async def open_many(cls, base_url: str, model: str, n: int) -> list[BareClient]:
        gate = asyncio.Semaphore(32)

        async def one() -> BareClient:
            async with gate:
                return await cls.open(base_url, model)
        return list(await asyncio.gather(*(one() for _ in range(n))))

    async def turn(self, text: str) -> Turn:
        turn = Turn(time.monotonic())
        await self.ws.send(json.dumps({"model": self.model, "text": text}))
        while True:
            frame = await _recv_json(self.ws)
            if frame["type"] == "end":
                turn.end_at = time.monotonic()
                return turn
            if turn.first_at is None:
                turn.first_at = time.monotonic()
            turn.text += frame["text"]
            turn.frames += 1

    async def close(self) -> None:
        await self.ws.close()


async def direct_turn(client: httpx.AsyncClient, upstream: str, model: str, text: str) -> Turn:
    """Straight to the upstream, with the request body the server sends; TTFT = first content chunk."""
    body = {"model": model, "stream": True, "stream_options": {"include_usage": True}, "max_tokens": 256,
            "temperature": 0.7, "messages": [{"role": "system", "content": "You are a benchmark persona."},
                                             {"role": "user", "content": text}]}
    turn = Turn(time.monotonic())
    async with client.stream("POST", f"{upstream}/v1/chat/completions", json=body) as response:
        if response.status_code != 200:
            turn.error = f"HTTP {response.status_code}"
        async for line in response.aiter_lines():
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            for choice in json.loads(line[6:]).get("choices", []):
                content = (choice.get("delta") or {}).get("content")
                if content:
                    if turn.first_at is None:
                        turn.first_at = time.monotonic()
                    turn.text += content
                    turn.frames += 1
    turn.end_at = time.monotonic()
    return turn


# ---------------------------------------------------------------- the server under test: tenant, persona, sessions


@dataclass
class Stack:
    url: str
    sk: str
    pk: str

    def persona(self, provider: dict[str, Any], system_prompt: str = "You are a benchmark persona.") -> str:
        body = {"name": "Ada", "slug": f"bench-{secrets.token_hex(4)}", "system_prompt": system_prompt,
                "greeting": "Hi!", "provider": provider}
        r = httpx.post(f"{self.url}/v1/personas", json=body, headers={"Authorization": f"Bearer {self.sk}"})
        r.raise_for_status()
        return str(r.json()["slug"])

    async def clients(self, persona: str, n: int) -> list[WidgetClient]:
        """n visitors, each with its own session token, socket and conversation."""
        gate = asyncio.Semaphore(32)
        async with httpx.AsyncClient(timeout=60) as http:
            async def one() -> WidgetClient:
                async with gate:
                    r = await http.post(f"{self.url}/v1/widget/sessions", json={"key": self.pk, "persona": persona},
                                        headers={"Origin": ORIGIN})
                    r.raise_for_status()
                    return await WidgetClient.open(self.url, r.json()["token"])
            return list(await asyncio.gather(*(one() for _ in range(n))))


async def create_tenant(database_url: str) -> dict[str, str]:
    """As `tests/conftest.py` does: straight into storage (this also runs the migrations)."""
    storage = await open_storage(database_url)
    try:
        tenant_id, sk = await tenants.create_tenant(storage, "Bench " + secrets.token_hex(3))
        pk, _ = await keys.create_key(storage, tenant_id, "publishable", [ORIGIN])
    finally:
        await storage.close()
    return {"tenant_id": tenant_id, "sk": sk, "pk": pk}


def server_settings(tmp: Path, **overrides: Any) -> dict[str, Any]:
    tmp.mkdir(parents=True, exist_ok=True)
    values: dict[str, Any] = {"data_dir": str(tmp), "database_url": f"sqlite:///{tmp / 'widget.db'}",
                              "secret_key": "bench", "rate_limit_messages": 100_000}
    return {**values, **overrides}


async def gather_closing(items: Iterable[Any]) -> None:
    await asyncio.gather(*(item.close() for item in items), return_exceptions=True)


# ---------------------------------------------------------------- (a) added time to first token


async def conversations(n: int, rounds: int, warmup: int, spread_s: float,
                        turn: Callable[[int, int], Awaitable[T]]) -> list[T]:
    """n conversations doing `warmup + rounds` turns back to back; `turn(conversation, round)` runs one.
    With `spread_s`, each conversation starts after a random delay in [0, spread_s) instead of all at once."""
    results: list[T] = []

    async def conversation(i: int) -> None:
        if spread_s:
            await asyncio.sleep(random.Random(i).uniform(0, spread_s))
        for r in range(warmup + rounds):
            result = await turn(i, r)
            if r >= warmup:
                results.append(result)

    await asyncio.gather(*(conversation(i) for i in range(n)))
    return results


def http_client(n: int) -> httpx.AsyncClient:
    return httpx.AsyncClient(timeout=TURN_TIMEOUT_S, limits=httpx.Limits(max_connections=n + 10,
                                                                         max_keepalive_connections=n + 10))


async def ttft_paired(stack: Stack, upstream: str, persona: str, rounds: int, warmup: int) -> list[tuple[Turn, Turn]]:
    """One conversation; each round sends a direct upstream request and a widget message at the same moment."""
    (widget,) = await stack.clients(persona, 1)
    async with http_client(2) as http:
        async def both(_: int, r: int) -> tuple[Turn, Turn]:
            direct, server = await asyncio.gather(direct_turn(http, upstream, PACED, f"hello {r}"),
                                                  widget.turn(f"hello {r}"))
            return direct, server
        pairs = await conversations(1, rounds, warmup, 0.0, both)
    await widget.close()
    return pairs


async def ttft_direct(upstream: str, model: str, n: int, rounds: int, warmup: int, spread_s: float) -> list[Turn]:
    """n conversations straight to the upstream. Each has its own httpx client, as each visitor is its own client:
    one shared httpx pool stalls requests for seconds when 100 streams end and restart at the same instant."""
    https = [http_client(1) for _ in range(n)]
    try:
        return await conversations(n, rounds, warmup, spread_s,
                                   lambda i, r: direct_turn(https[i], upstream, model, f"hello {r}"))
    finally:
        await asyncio.gather(*(h.aclose() for h in https))


async def ttft_server(stack: Stack, persona: str, n: int, rounds: int, warmup: int, spread_s: float) -> list[Turn]:
    widgets = await stack.clients(persona, n)
    turns = await conversations(n, rounds, warmup, spread_s, lambda i, r: widgets[i].turn(f"hello {r}"))
    await gather_closing(widgets)
    return turns


def report_ttft(report: Report, label: str, direct: list[Turn], server: list[Turn], expected: str,
                server_cpu: float, paired: bool = False) -> None:
    sec = f"(a) TTFT, {label}"
    bad = sum(not t.complete(expected) for t in direct + server)
    d = [t.ttft for t in direct if t.ttft is not None]
    s = [t.ttft for t in server if t.ttft is not None]
    inside = [t.server_ttft_ms / 1000 for t in server if t.server_ttft_ms is not None]
    report.add(sec, f"replies measured: direct / through server (incomplete: {bad})", f"{len(d)} / {len(s)}")
    report.add(sec, "direct TTFT p50 / p99", f"{ms(pct(d, 50))} / {ms(pct(d, 99))}")
    report.add(sec, "through-server TTFT p50 / p99", f"{ms(pct(s, 50))} / {ms(pct(s, 99))}")
    report.add(sec, "  (server-reported ttft_ms p50 / p99)", f"{ms(pct(inside, 50))} / {ms(pct(inside, 99))}")
    report.add(sec, "  (server process CPU while it served them)", f"{server_cpu:.0%} of one core")
    if paired:
        diff = [b - a for a, b in zip(d, s, strict=True)]
        report.add(sec, "  (per-round difference p50 / p99)", f"{ms(pct(diff, 50))} / {ms(pct(diff, 99))}")
    p50, p99 = pct(s, 50) - pct(d, 50), pct(s, 99) - pct(d, 99)
    report.add(sec, "added TTFT p50 = p50(server) - p50(direct)", ms(p50), "<= 5 ms", p50 <= 0.005)
    report.add(sec, "added TTFT p99 = p99(server) - p99(direct)", ms(p99), "<= 25 ms", p99 <= 0.025)


# ---------------------------------------------------------------- (b) throughput ratio


@dataclass
class Throughput:
    words: int
    seconds: float
    replies: int
    incomplete: int
    frames: int
    cpu: dict[str, float]  # CPU seconds used during the run, by process

    @property
    def rate(self) -> float:
        return self.words / self.seconds

    def cpu_us_per_token(self, name: str) -> float:
        return self.cpu[name] / self.words * 1e6


async def throughput_run(open_clients: Callable[[], Awaitable[Sequence[Any]]], turns: int, expected: str,
                         procs: dict[str, Served]) -> Throughput:
    """The clients (all connected first), `turns` replies each, back to back, all starting together."""
    clients = await open_clients()
    done: list[Turn] = []

    async def run(client: Any) -> None:
        for t in range(turns):
            done.append(await client.turn(f"go {t}"))

    cpu0 = {name: p.cpu_seconds() for name, p in procs.items()} | {"load generator": time.process_time()}
    start = time.monotonic()
    await asyncio.gather(*(run(c) for c in clients))
    seconds = time.monotonic() - start
    cpu1 = {name: p.cpu_seconds() for name, p in procs.items()} | {"load generator": time.process_time()}
    await gather_closing(clients)
    return Throughput(sum(t.words for t in done), seconds, len(done), sum(not t.complete(expected) for t in done),
                      sum(t.frames for t in done), {name: cpu1[name] - cpu0[name] for name in cpu0})


def report_throughput(report: Report, label: str, bare: list[Throughput], full: list[Throughput]) -> None:
    sec = f"(b) throughput, {label}"
    best: dict[str, Throughput] = {}
    for name, runs in (("bare endpoint", bare), ("full stack", full)):
        best[name] = max(runs, key=lambda r: r.rate)
        b = best[name]
        rates = ", ".join(f"{r.rate:,.0f}" for r in runs)
        report.add(sec, f"{name}: delivered tokens/s (runs: {rates})",
                   f"{b.rate:,.0f} ({b.replies} replies, {b.frames / b.replies:.1f} frames/reply, "
                   f"{sum(r.incomplete for r in runs)} incomplete)")
        report.add(sec, f"  {name}: CPU us/token: app / upstream / load generator",
                   f"{b.cpu_us_per_token('app'):.0f} / {b.cpu_us_per_token('upstream'):.0f} / "
                   f"{b.cpu_us_per_token('load generator'):.0f}")
    ratio = best["full stack"].rate / best["bare endpoint"].rate
    report.add(sec, "ratio full / bare", f"{ratio:.3f}", ">= 0.85", ratio >= 0.85)


# ---------------------------------------------------------------- (c) loop lag while the local model generates


@dataclass
class LocalResult:
    windows: list[tuple[str, float, float]]
    turns: dict[str, list[Turn]]


async def local_run(stack: Stack, persona: str) -> LocalResult:
    prompt = "Tell me a long story about a bicycle trip through the mountains, with many details."
    a, b = await stack.clients(persona, 2)
    windows: list[tuple[str, float, float]] = []
    turns: dict[str, list[Turn]] = {}

    async def window(name: str, work: Callable[[], Awaitable[list[Turn]]]) -> None:
        start = time.monotonic()
        turns[name] = await work()
        windows.append((name, start, time.monotonic()))

    async def idle() -> list[Turn]:
        await asyncio.sleep(1.0)
        return []

    async def one(n: int) -> list[Turn]:
        return [await a.turn(prompt) for _ in range(n)]

    async def two() -> list[Turn]:
        return list(await asyncio.gather(a.turn(prompt), b.turn(prompt)))

    await window("idle (no reply)", idle)
    await window("model load + first reply", lambda: one(1))
    await window("1 reply generating", lambda: one(3))
    await window("2 replies generating", two)
    await gather_closing([a, b])
    return LocalResult(windows, turns)


def report_local(report: Report, result: LocalResult, lags: list[Lag], tick_ms: float) -> None:
    sec = f"(c) loop lag, local model ({tick_ms:g} ms ticker)"
    generating: list[float] = []
    for name, start, end in result.windows:
        inside = [lag for at, lag in lags if start <= at <= end]
        if name.startswith(("1 reply", "2 replies")):
            generating += inside
        report.add(sec, f"{name}: lag p50 / p99 / max ({len(inside)} ticks, {end - start:.1f} s)",
                   f"{ms(pct(inside, 50))} / {ms(pct(inside, 99))} / {ms(max(inside, default=float('nan')))}")
    p99 = pct(generating, 99)
    report.add(sec, "lag p99 while generating (1 and 2 replies)", ms(p99), "< 50 ms", p99 < 0.050)
    for name, turns in result.turns.items():
        for t in turns:
            if t.first_at is None or t.end_at is None:
                report.notes.append(f"local reply without text ({name}): finish={t.finish} error={t.error}")
                continue
            report.notes.append(
                f"local reply ({name}): TTFT {ms(t.first_at - t.sent_at)}, {t.output_tokens} tokens in "
                f"{t.end_at - t.first_at:.2f} s after the first, finish {t.finish}: {t.text[:60]!r}")
    single = [t for t in result.turns["1 reply generating"] if t.first_at is not None and t.end_at is not None]
    tokens = sum(t.output_tokens or 0 for t in single)
    seconds = sum(t.end_at - t.first_at for t in single if t.end_at is not None and t.first_at is not None)
    report.add(sec, f"local model tokens/s, one reply at a time ({tokens} tokens, first to last delta)",
               f"{tokens / seconds:.1f}" if seconds > 0 else "n/a")
    name, start, end = next(w for w in result.windows if w[0] == "2 replies generating")
    both = sum(t.output_tokens or 0 for t in result.turns[name])
    report.add(sec, f"local model tokens/s, two replies at once ({both} tokens over the window)",
               f"{both / (end - start):.1f}")
    errors = [t.error for ts in result.turns.values() for t in ts if t.error or t.finish not in ("stop", "length")]
    if errors:
        report.notes.append(f"local provider turns that did not end normally: {errors}")


# ---------------------------------------------------------------- the run


def run(coro: Awaitable[T]) -> T:
    async def wrapped() -> T:
        return await coro
    return asyncio.run(wrapped())


def bench_openai(report: Report, tmp: Path) -> None:
    """(a) and (b): the upstream, the server under test and the bare endpoint, each in its own process."""
    with Served(AppSpec("upstream")) as upstream:
        up = upstream.url
        settings = server_settings(tmp, provider="openai", openai_base_url=up + "/v1")
        database_url = settings["database_url"]
        keys = run(create_tenant(database_url))  # this also migrates, before the server opens the database
        with Served(AppSpec("server", settings=settings)) as server, \
                Served(AppSpec("bare", upstream_base_url=up + "/v1")) as bare:
            stack = Stack(server.url, keys["sk"], keys["pk"])
            paced = stack.persona({"kind": "openai", "model": PACED})
            log(f"upstream {up}, server {server.url}, bare endpoint {bare.url}")

            def timed(work: Callable[[], T]) -> tuple[T, float]:
                """Run the work; also the server's CPU use meanwhile, as a fraction of one core."""
                cpu, start = server.cpu_seconds(), time.monotonic()
                result = work()
                return result, (server.cpu_seconds() - cpu) / (time.monotonic() - start)

            log("(a) 1 conversation: 50 rounds, each a direct request and a widget message at the same moment")
            pairs, cpu = timed(lambda: run(ttft_paired(stack, up, paced, 50, 3)))
            report_ttft(report, f"1 conversation, {PACED}", [d for d, _ in pairs], [s for _, s in pairs], PACED_TEXT,
                        cpu, paired=True)
            slow = stack.persona({"kind": "openai", "model": SLOW})
            for label, model, persona, spread in (("burst", PACED, paced, 0.0), ("steady", PACED, paced, 0.7),
                                                  ("steady", SLOW, slow, 2.0)):
                log(f"(a) 100 concurrent conversations of {model}, {label}: direct, then through the server")
                direct = run(ttft_direct(up, model, 100, 3, 1, spread))
                through, cpu = timed(partial(run, ttft_server(stack, persona, 100, 3, 1, spread)))
                report_ttft(report, f"100 conversations, {model}, {label}", direct, through,
                            PACED_TEXT if model == PACED else SLOW_TEXT, cpu)

            procs = {"upstream": upstream}
            for model, text, turns, reps in ((PACED, PACED_TEXT, 3, 2),
                                             ("pace-20-100", "".join(f"w{i} " for i in range(1, 101)), 1, 2)):
                persona = paced if model == PACED else stack.persona({"kind": "openai", "model": model})
                bare_runs: list[Throughput] = []
                full_runs: list[Throughput] = []
                for rep in range(reps):
                    log(f"(b) 200 clients x {turns} replies of {model}: bare endpoint, then full stack "
                        f"({rep + 1}/{reps})")
                    bare_runs.append(run(throughput_run(partial(BareClient.open_many, bare.url, model, 200),
                                                        turns, text, procs | {"app": bare})))
                    full_runs.append(run(throughput_run(partial(stack.clients, persona, 200), turns, text,
                                                        procs | {"app": server})))
                report_throughput(report, f"200 clients, {turns} x {model}", bare_runs, full_runs)


def bench_local(report: Report, tmp: Path) -> None:
    """(c): a server with the local provider and a ticker in its event loop."""
    log("(c) local model: a server with provider=local and a 5 ms ticker in its event loop")
    settings = server_settings(tmp, provider="local")
    keys = run(create_tenant(settings["database_url"]))
    with Served(AppSpec("server", settings=settings, tick_ms=5)) as local:
        stack = Stack(local.url, keys["sk"], keys["pk"])
        persona = stack.persona({"kind": "local", "max_tokens": 160},
                                system_prompt="Ada is a cheerful guide who tells long, detailed stories.")
        result = run(local_run(stack, persona))
        lags = local.stop()
    report_local(report, result, lags, 5)


def main() -> None:
    began = time.monotonic()
    report = Report()
    report.notes += [
        f"machine: {os.cpu_count()} CPUs, {platform.python_implementation()} {platform.python_version()}; all "
        "traffic on 127.0.0.1; upstream, server, bare endpoint and this load generator are separate processes "
        "sharing those CPUs.",
        f"load average (1 min) when the bench started: {os.getloadavg()[0]:.2f}.",
        "TTFT p99 of 50 samples is close to the maximum: read it as 'worst seen'. CPU us/token = CPU seconds the "
        "process used during the run / tokens delivered.",
    ]
    with tempfile.TemporaryDirectory(prefix="widget-bench-") as tmp_dir:
        bench_openai(report, Path(tmp_dir) / "openai")
        bench_local(report, Path(tmp_dir) / "local")
    print()
    print(report.render())
    print(f"\ntotal bench time: {time.monotonic() - began:.0f} s")


if __name__ == "__main__":
    main()
