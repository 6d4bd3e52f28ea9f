"""Benchmark of human takeover (issue 14): prints figures next to their targets, asserts nothing about time.

Run from the repository root: `.venv/bin/python -m bench.takeover [--quick]` (about two minutes on two cores, under
one with `--quick`; every size is a flag, `--workdir DIR` keeps the server's log). It needs PostgreSQL at
127.0.0.1:5432.

Everything runs on 127.0.0.1 and this process is the load generator: one asyncio loop driving `websockets` and
`httpx` clients (its open-file limit raised to the hard limit). The fake OpenAI-compatible upstream
(`tests/support/upstream.py`, model `echo`) runs under uvicorn in a process of its own (`bench/serve.py`). The server
under test is one real `widget-server serve` process (`python -m widget_server serve`, one worker, the memory bus:
`bench.nodes`'s `memory` setup; with `--nodes 2`, two nodes sharing Redis, the visitors on one, the agents on the
other) on a fresh PostgreSQL database, with one tenant, one persona, every widget rate
limit and both console sign-in limits set to 1,000,000, and a safety policy `{"version": 1, "escalation":
{"on_request": true}}` (`PUT /v1/safety-policy`), so that a visitor asking for a person escalates.

Setup, all through the product's own HTTP and WebSocket surfaces, as browsers would:

- A agents (`--agents`, 50): console users of role `agent` written into the database as `tests/support/console.py`
  does (one password, hashed once), each signed in through the form by an `httpx.AsyncClient` of its own (GET
  `/console/login`, its `csrf` field, POST), which keeps the `console_session` cookie; its CSRF token read from
  the `csrf-token` meta of `/console/inbox`. Each then holds one SSE stream, `GET /console/inbox/events`, read
  until its `ready` event.
- N widget conversations (`--conversations`, 500): session token (`POST /v1/widget/sessions`), WebSocket, `hello`
  -> `ready`, by 100 concurrent openers (`bench.nodes.open_widgets`), then held open; every socket has a reader
  task for the whole run.

An arrival is stamped (`time.monotonic()`) when this loop has read the whole SSE event (its blank line) or the
WebSocket frame, so the figures include the load generator's own delay in reading it, on the same shared cores.

(1) Escalation fan-out. E conversations (`--escalations`, 40) escalate one after another, one every
    `--escalation-gap-s` (0.25 s; the next one does not wait for the last to arrive): the visitor sends `can I talk
    to a human please`. Latency = that `message` frame sent -> each of the A inbox streams reading its `inbox`
    event (`what: escalated`) for that conversation; p50 / p95 / max over all A x E (agent, escalation) pairs.
    Target p95 < 1 s. The same send -> the visitor's own `escalation` frame (`status: requested`) is shown too.
(2) Claims. M of the escalated conversations (`--claims`, 40) are claimed one after another, conversation i by
    agent i mod A (`POST /console/inbox/{id}/claim`, `X-CSRF-Token`, `Accept: application/json`); the claiming agent
    then opens that conversation's stream (`GET /console/inbox/{id}/events`) and reads it to `ready`. Claim POST
    sent -> the visitor's `escalation` frame `agent_joined` is shown (no target).
(3) Messages both ways, R rounds (`--rounds`, 5). In a round, pair i (of M) sends at `i * gap` with
    `gap = --round-s / M` (2 s / 40 = 50 ms): its visitor sends a `message` frame with a text of its own, and at
    `i * gap + gap / 2` its agent POSTs `/console/inbox/{id}/messages` `{"text": ..., "internal": false}`; so one
    send every `gap / 2` (25 ms) on average, evenly interleaved, never two in the same millisecond. The round ends
    when every pair's two arrivals are in (or `--timeout-s`), and the next starts. Visitor -> agent = the frame
    sent -> the agent's conversation stream reading `event: conversation` `message.accepted` with that text; agent
    -> visitor = the POST sent -> the visitor's socket reading `agent.message` with that text. p50 / p95 / max over
    the M x R messages each way; target p95 < 250 ms. The POST's own response time is shown too.

Through every phase, all N sockets and A inbox streams stay open: a visitor's message while claimed is also an
`inbox` event (`what: message`) on all A inbox streams. CPU shares (of one core) per phase: the server process
(user + system from `/proc/<pid>/stat`, as `bench.nodes`), PostgreSQL (every process whose command is `postgres`,
likewise, with the postmaster's waited-for children: backends that ended) and this load generator
(`time.process_time()`). Figures depend on the machine and on what else runs on it: the load generator, upstream,
server and PostgreSQL share the same cores. Compare runs on the same machine.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import re
import secrets
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from bench.nodes import (
    Cpu,
    Cpus,
    Widget,
    close_widgets,
    cluster_setup,
    memory_setup,
    node_env,
    noted_logs,
    open_widgets,
    raise_open_files,
    run,
)
from bench.serve import AppSpec, Served
from bench.stream import Report, Stack, create_tenant, log, ms, pct
from tests.conftest import fresh_pg_database
from widget_server.backends.storage import open_storage
from widget_server.clock import now
from widget_server.domain.console_users import hash_password
from widget_server.ids import new_id

PASSWORD = "correct horse battery staple"
ESCALATE_TEXT = "can I talk to a human please"
CSRF_FIELD = re.compile(r'name="csrf" value="([^"]*)"')
CSRF_META = re.compile(r'name="csrf-token" content="([^"]*)"')
SIGN_IN_LIMITS = {"WIDGET_CONSOLE_LOGIN_ATTEMPTS": "1000000", "WIDGET_CONSOLE_LOGIN_ATTEMPTS_PER_ADDRESS": "1000000"}


# ---------------------------------------------------------------- arrivals, stamped as this loop reads them


class Arrivals:
    """The first time each key was seen, and a way to wait for it."""

    def __init__(self) -> None:
        self.at: dict[Any, float] = {}
        self.waiters: dict[Any, asyncio.Event] = {}

    def mark(self, key: Any, at: float) -> None:
        if key in self.at:
            return
        self.at[key] = at
        if (event := self.waiters.get(key)) is not None:
            event.set()

    async def wait(self, key: Any, timeout: float) -> float | None:
        if key not in self.at:
            event = self.waiters.setdefault(key, asyncio.Event())
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(event.wait(), timeout)
        return self.at.get(key)

    async def all(self, keys: Sequence[Any], timeout: float) -> int:
        """Waits for every key (at most `timeout` in all); how many came."""
        deadline = time.monotonic() + timeout
        got = 0
        for key in keys:
            if await self.wait(key, max(0.0, deadline - time.monotonic())) is not None:
                got += 1
        return got


@dataclass
class Counts:
    frames: dict[str, int] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)

    def add(self, kind: str) -> None:
        self.frames[kind] = self.frames.get(kind, 0) + 1


async def read_widget(widget: Widget, arrivals: Arrivals, counts: Counts) -> None:
    """Every frame of one visitor's socket, for the whole run."""
    conv = widget.ready["conversation_id"]
    try:
        async for raw in widget.ws:
            at = time.monotonic()
            frame = json.loads(raw)
            kind = str(frame.get("type"))
            counts.add(kind)
            if kind == "escalation":
                arrivals.mark(("visitor", conv, frame.get("status")), at)
            elif kind == "agent.message":
                arrivals.mark(("agent.message", frame.get("text")), at)
            elif kind == "error":
                counts.errors.append(f"widget error frame: {frame.get('code')}")
    except Exception as exc:  # a socket the server closed: counted, the run goes on
        counts.errors.append(f"widget socket: {type(exc).__name__}")


async def read_sse(client: httpx.AsyncClient, path: str, ready: asyncio.Event, on_event: Any,
                   counts: Counts) -> None:
    """One browser's EventSource: each event (name, parsed data, when its blank line was read) to `on_event`."""
    try:
        async with client.stream("GET", path, headers={"Accept": "text/event-stream"}, timeout=None) as r:
            if r.status_code != 200:
                counts.errors.append(f"GET {path.split('/')[-1]}: HTTP {r.status_code}")
                ready.set()
                return
            name, data = "message", ""
            async for line in r.aiter_lines():
                if line:
                    if line.startswith("event:"):
                        name = line[6:].strip()
                    elif line.startswith("data:"):
                        data += line[5:].strip()
                    continue
                if data or name != "message":
                    at = time.monotonic()
                    counts.add(f"sse {name}")
                    if name == "ready":
                        ready.set()
                    else:
                        on_event(name, json.loads(data) if data else {}, at)
                name, data = "message", ""
    except Exception as exc:  # counted: a stream that ends early shows as missing arrivals
        counts.errors.append(f"SSE {path.split('/')[-1]}: {type(exc).__name__}")
        ready.set()


# ---------------------------------------------------------------- agents


@dataclass
class Agent:
    index: int
    email: str
    client: httpx.AsyncClient
    csrf: str = ""
    tasks: list[asyncio.Task[None]] = field(default_factory=list)


async def add_agents(db: str, tenant_id: str, n: int) -> list[str]:
    """n console users of role `agent`, as `tests/support/console.py` `_add_user` makes them."""
    hashed = await asyncio.to_thread(hash_password, PASSWORD)
    storage = await open_storage(db)
    emails = []
    try:
        for i in range(n):
            email = f"agent-{i}-{secrets.token_hex(3)}@example.com"
            await storage.console.add_user({"id": new_id("usr"), "tenant_id": tenant_id, "email": email,
                                            "role": "agent", "display_name": f"Agent {i}", "password_hash": hashed,
                                            "created_at": now()})
            emails.append(email)
    finally:
        await storage.close()
    return emails


async def sign_in(base_url: str, index: int, email: str) -> Agent:
    client = httpx.AsyncClient(base_url=base_url, headers={"Accept": "text/html"}, follow_redirects=False,
                               timeout=60)
    form = await client.get("/console/login")
    found = CSRF_FIELD.search(form.text)
    if form.status_code != 200 or not found:
        raise RuntimeError(f"sign-in form: HTTP {form.status_code}")
    r = await client.post("/console/login", data={"email": email, "password": PASSWORD, "csrf": found.group(1),
                                                  "next": "/console/inbox"})
    if r.status_code != 303 or "console_session" not in client.cookies:
        raise RuntimeError(f"sign-in of {email}: HTTP {r.status_code}")
    inbox = await client.get("/console/inbox")
    meta = CSRF_META.search(inbox.text)
    if inbox.status_code != 200 or not meta:
        raise RuntimeError(f"/console/inbox: HTTP {inbox.status_code}")
    return Agent(index, email, client, meta.group(1))


# ---------------------------------------------------------------- the phases


@dataclass
class Phase:
    name: str
    seconds: float
    server: float
    postgres: float
    generator: float


class Meter:
    def __init__(self, server: Cpu | Cpus) -> None:
        self.server = server
        self.phases: list[Phase] = []

    @staticmethod
    def postgres() -> float:
        total = 0
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                if (entry / "comm").read_text().strip() != "postgres":
                    continue
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            total += sum(int(fields[i]) for i in (11, 12, 13, 14))  # utime, stime; exited backends: the postmaster's
            # cutime, cstime
        return total / os.sysconf("SC_CLK_TCK")

    @contextlib.contextmanager
    def phase(self, name: str) -> Any:
        t0, s0, p0, g0 = time.monotonic(), self.server.cpu_seconds(), self.postgres(), time.process_time()
        yield
        seconds = time.monotonic() - t0
        self.phases.append(Phase(name, seconds, (self.server.cpu_seconds() - s0) / seconds,
                                 (self.postgres() - p0) / seconds, (time.process_time() - g0) / seconds))


def spread(values: list[float]) -> str:
    if not values:
        return "none arrived"
    return f"{ms(pct(values, 50))} / {ms(pct(values, 95))} / {ms(max(values))}"


async def bench(report: Report, url: str, keys: dict[str, str], db: str, server: Cpu | Cpus,
                args: argparse.Namespace, agent_url: str | None = None) -> None:
    """`url`: the node the visitors' widgets use; `agent_url`: the agents' consoles' (the same one by default)."""
    stack = Stack(url, keys["sk"], keys["pk"])
    persona = await asyncio.to_thread(stack.persona, {"kind": "openai", "model": "echo"})
    r = httpx.put(f"{url}/v1/safety-policy", json={"version": 1, "escalation": {"on_request": True}},
                  headers={"Authorization": f"Bearer {keys['sk']}"})
    if r.status_code >= 300:
        raise SystemExit(f"PUT /v1/safety-policy: HTTP {r.status_code} {r.text[:300]}")
    meter = Meter(server)
    arrivals, counts = Arrivals(), Counts()
    readers: list[asyncio.Task[None]] = []
    agents: list[Agent] = []
    widgets: list[Widget] = []
    try:
        with meter.phase(f"setup: {args.agents} sign-ins + inbox streams, {args.conversations} widgets opened"):
            log(f"{args.agents} agents: users in the database, sign-in through the form")
            emails = await add_agents(db, keys["tenant_id"], args.agents)
            gate = asyncio.Semaphore(8)

            async def signed(i: int, email: str) -> Agent:
                async with gate:
                    return await sign_in(agent_url or url, i, email)
            agents = list(await asyncio.gather(*(signed(i, e) for i, e in enumerate(emails))))
            log(f"{len(agents)} inbox streams")
            for agent in agents:
                ready = asyncio.Event()

                def on_inbox(name: str, data: dict[str, Any], at: float, i: int = agent.index) -> None:
                    if name == "inbox":
                        arrivals.mark(("inbox", data.get("what"), data.get("conversation_id"), i), at)
                agent.tasks.append(asyncio.create_task(read_sse(agent.client, "/console/inbox/events", ready,
                                                                on_inbox, counts)))
                await asyncio.wait_for(ready.wait(), args.timeout_s)
            log(f"opening {args.conversations} widget conversations")
            opened = await open_widgets(url, keys["pk"], persona, args.conversations)
            widgets = opened.widgets
            if opened.errors:
                report.notes.append(f"{len(opened.errors)} widget opens failed: {sorted(set(opened.errors))}")
            readers = [asyncio.create_task(read_widget(w, arrivals, counts)) for w in widgets]
        await asyncio.sleep(1.0)

        # (1) escalation fan-out
        escalating = widgets[:args.escalations]
        sent: dict[str, float] = {}
        log(f"(1) {len(escalating)} escalations, one every {args.escalation_gap_s:g} s")
        with meter.phase(f"(1) {len(escalating)} escalations"):
            for w in escalating:
                conv = w.ready["conversation_id"]
                sent[conv] = time.monotonic()
                await w.ws.send(json.dumps({"type": "message", "client_id": "esc", "text": ESCALATE_TEXT}))
                await asyncio.sleep(args.escalation_gap_s)
            wanted = [("inbox", "escalated", c, a.index) for c in sent for a in agents]
            got = await arrivals.all(wanted, args.timeout_s)
        fan = [arrivals.at[k] - sent[k[2]] for k in wanted if k in arrivals.at]
        own = [arrivals.at[k] - sent[k[1]] for k in (("visitor", c, "requested") for c in sent) if k in arrivals.at]
        sec = f"(1) escalation fan-out, {len(sent)} escalations x {len(agents)} agents"
        report.add(sec, f"visitor message -> every agent's inbox stream: p50 / p95 / max ({got:,} of "
                   f"{len(wanted):,} pairs)", spread(fan), "p95 < 1 s",
                   bool(fan) and got == len(wanted) and pct(fan, 95) < 1.0)
        per_escalation = [max(arrivals.at[("inbox", "escalated", c, a.index)] for a in agents) - t
                          for c, t in sent.items()
                          if all(("inbox", "escalated", c, a.index) in arrivals.at for a in agents)]
        report.add(sec, "  the last of the agents, per escalation: p50 / p95 / max", spread(per_escalation))
        report.add(sec, f"  visitor message -> the visitor's escalation requested ({len(own)} of {len(sent)})",
                   spread(own))

        # (2) claims
        pairs = [(w, agents[i % len(agents)]) for i, w in enumerate(escalating[:args.claims])
                 if ("visitor", w.ready["conversation_id"], "requested") in arrivals.at]
        claim_sent: dict[str, float] = {}
        claim_took: list[float] = []
        log(f"(2) {len(pairs)} claims, each claiming agent opens the conversation's stream")
        with meter.phase(f"(2) {len(pairs)} claims + conversation streams"):
            for w, agent in pairs:
                conv = w.ready["conversation_id"]
                claim_sent[conv] = time.monotonic()
                r = await agent.client.post(f"/console/inbox/{conv}/claim", headers={
                    "X-CSRF-Token": agent.csrf, "Accept": "application/json"})
                claim_took.append(time.monotonic() - claim_sent[conv])
                if r.status_code != 200:
                    counts.errors.append(f"claim: HTTP {r.status_code} {r.text[:120]}")
                    continue
                ready = asyncio.Event()

                def on_conversation(name: str, data: dict[str, Any], at: float) -> None:
                    if name == "conversation" and data.get("type") == "message.accepted":
                        arrivals.mark(("accepted", data.get("text")), at)
                agent.tasks.append(asyncio.create_task(read_sse(agent.client, f"/console/inbox/{conv}/events",
                                                                ready, on_conversation, counts)))
                await asyncio.wait_for(ready.wait(), args.timeout_s)
            joined_keys = [("visitor", c, "agent_joined") for c in claim_sent]
            await arrivals.all(joined_keys, args.timeout_s)
        joined = [arrivals.at[k] - claim_sent[k[1]] for k in joined_keys if k in arrivals.at]
        sec = f"(2) {len(claim_sent)} claims"
        report.add(sec, f"claim POST sent -> the visitor's agent_joined ({len(joined)} of {len(claim_sent)})",
                   spread(joined))
        report.add(sec, "  claim POST response time: p50 / p95 / max", spread(claim_took))

        # (3) messages both ways
        held = [(w, a) for w, a in pairs if ("visitor", w.ready["conversation_id"], "agent_joined") in arrivals.at]
        gap = args.round_s / max(1, len(held))
        to_agent: list[float] = []
        to_visitor: list[float] = []
        post_took: list[float] = []
        missing = {"visitor -> agent": 0, "agent -> visitor": 0}
        log(f"(3) {args.rounds} rounds of {len(held)} messages each way, one send every {ms(gap / 2)}")

        async def pair(r: int, i: int, w: Widget, agent: Agent) -> None:
            conv = w.ready["conversation_id"]
            v_text, a_text = f"visitor says r{r} p{i} {secrets.token_hex(3)}", f"agent says r{r} p{i} " \
                                                                                f"{secrets.token_hex(3)}"
            await asyncio.sleep(i * gap)
            v_sent = time.monotonic()
            await w.ws.send(json.dumps({"type": "message", "client_id": f"r{r}", "text": v_text}))
            await asyncio.sleep(max(0.0, v_sent + gap / 2 - time.monotonic()))
            a_sent = time.monotonic()
            resp = await agent.client.post(f"/console/inbox/{conv}/messages", json={"text": a_text, "internal": False},
                                           headers={"X-CSRF-Token": agent.csrf, "Accept": "application/json"})
            post_took.append(time.monotonic() - a_sent)
            if resp.status_code != 201:
                counts.errors.append(f"agent message: HTTP {resp.status_code} {resp.text[:120]}")
            v_at = await arrivals.wait(("accepted", v_text), args.timeout_s)
            a_at = await arrivals.wait(("agent.message", a_text), args.timeout_s)
            if v_at is None:
                missing["visitor -> agent"] += 1
            else:
                to_agent.append(v_at - v_sent)
            if a_at is None:
                missing["agent -> visitor"] += 1
            else:
                to_visitor.append(a_at - a_sent)

        with meter.phase(f"(3) {args.rounds} rounds x {len(held)} messages each way"):
            for rnd in range(args.rounds):
                await asyncio.gather(*(pair(rnd, i, w, a) for i, (w, a) in enumerate(held)))
        n = args.rounds * len(held)
        sec = f"(3) {len(held)} claimed conversations x {args.rounds} rounds, one send every {ms(gap / 2)}"
        report.add(sec, f"visitor message -> agent's conversation stream: p50 / p95 / max ({len(to_agent)} of {n})",
                   spread(to_agent), "p95 < 250 ms", bool(to_agent) and not missing["visitor -> agent"]
                   and pct(to_agent, 95) < 0.250)
        report.add(sec, f"agent message -> visitor's widget: p50 / p95 / max ({len(to_visitor)} of {n})",
                   spread(to_visitor), "p95 < 250 ms", bool(to_visitor) and not missing["agent -> visitor"]
                   and pct(to_visitor, 95) < 0.250)
        report.add(sec, "  agent message POST response time: p50 / p95 / max", spread(post_took))

        sec = "CPU per phase (share of one core)"
        for p in meter.phases:
            report.add(sec, f"{p.name} ({p.seconds:.1f} s): server / PostgreSQL / load generator",
                       f"{p.server:.0%} / {p.postgres:.0%} / {p.generator:.0%}")
        open_now = sum(w.ws.close_code is None for w in widgets)
        report.notes.append(f"at the end: {open_now} of {len(widgets)} widget sockets open, "
                            f"{sum(not t.done() for a in agents for t in a.tasks)} of "
                            f"{sum(len(a.tasks) for a in agents)} SSE streams open")
        report.notes.append("frames and events read: " + ", ".join(f"{k} {v:,}" for k, v in
                                                                   sorted(counts.frames.items())))
        if counts.errors:
            kinds = {e: counts.errors.count(e) for e in sorted(set(counts.errors))}
            report.notes.append(f"errors: {kinds}")
    finally:
        for agent in agents:
            for task in agent.tasks:
                task.cancel()
        await close_widgets(widgets)
        for task in readers:
            task.cancel()
        await asyncio.gather(*readers, *(t for a in agents for t in a.tasks), return_exceptions=True)
        await asyncio.gather(*(a.client.aclose() for a in agents), return_exceptions=True)


# ---------------------------------------------------------------- the run


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.takeover", description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="small sizes: a run of under a minute")
    parser.add_argument("--conversations", type=int, help="widget conversations held open (500)")
    parser.add_argument("--agents", type=int, help="agents signed in, each with its inbox stream (50)")
    parser.add_argument("--escalations", type=int, help="(1) conversations escalated one after another (40)")
    parser.add_argument("--escalation-gap-s", type=float, default=0.25, help="(1) between escalations (0.25)")
    parser.add_argument("--claims", type=int, help="(2) escalated conversations claimed (40)")
    parser.add_argument("--rounds", type=int, help="(3) rounds of one message each way per claimed conversation (5)")
    parser.add_argument("--round-s", type=float, default=2.0, help="(3) the sends of a round spread over this (2.0)")
    parser.add_argument("--timeout-s", type=float, default=30.0, help="give up waiting for an arrival after this")
    parser.add_argument("--nodes", type=int, choices=(1, 2), default=1,
                        help="2: two nodes sharing Redis, the visitors on one and the agents on the other (1)")
    parser.add_argument("--workdir", help="keep the server's log (and data dir) here instead of a temporary directory")
    args = parser.parse_args(argv)
    full = {"conversations": 500, "agents": 50, "escalations": 40, "claims": 40, "rounds": 5}
    quick = {"conversations": 100, "agents": 10, "escalations": 20, "claims": 20, "rounds": 2}
    for name, value in (quick if args.quick else full).items():
        if getattr(args, name) is None:
            setattr(args, name, value)
    if args.claims > args.escalations or args.escalations > args.conversations:
        parser.error("need --claims <= --escalations <= --conversations")
    return args


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    began = time.monotonic()
    files = raise_open_files()
    report = Report()
    report.notes += [
        f"machine: {os.cpu_count()} CPUs, {platform.python_implementation()} {platform.python_version()}, open files "
        f"{files:,}; all traffic on 127.0.0.1; the load generator, upstream, server and PostgreSQL share those CPUs, "
        "so the figures are this machine's, on this run.",
        f"load average (1 min) when the bench started: {os.getloadavg()[0]:.2f}.",
    ]
    with contextlib.ExitStack() as exits:
        tmp = Path(args.workdir) if args.workdir else Path(exits.enter_context(
            tempfile.TemporaryDirectory(prefix="widget-bench-takeover-")))
        db = exits.enter_context(fresh_pg_database())
        upstream = exits.enter_context(Served(AppSpec("upstream")))
        keys = run(create_tenant(db))  # this also migrates, before the server opens the database
        env = node_env(db, upstream.url) | SIGN_IN_LIMITS
        log(f"upstream {upstream.url}, database {db}")
        if args.nodes == 1:
            with memory_setup(tmp / "memory", env) as setup:
                run(bench(report, setup.url, keys, db, Cpu(setup.pids[0]), args))
                noted_logs(report, setup)
        else:  # every visitor on node 0, every agent on node 1: each frame and event crosses the Redis bus
            with cluster_setup("redis", tmp / "redis", env, n=2, workers=1) as setup:
                assert setup.cluster is not None
                visitors, desks = (node.url for node in setup.cluster.nodes)
                report.notes.append("two nodes sharing Redis: the visitors' widgets on node 0, the agents' consoles "
                                    "on node 1; 'server' CPU is both nodes'")
                run(bench(report, visitors, keys, db, Cpus([Cpu(pid) for pid in setup.pids]), args, agent_url=desks))
                noted_logs(report, setup)
    print()
    print(report.render())
    print(f"\ntotal bench time: {time.monotonic() - began:.0f} s")


if __name__ == "__main__":
    main()
