"""Console benchmark: the server time of every console page with 100,000 conversations stored.

Run from the repository root: `.venv/bin/python -m bench.console [--conversations 100000] [--no-postgres]
[--no-sqlite]`
(about four minutes per database on two cores, most of it seeding). Prints figures next to their target; asserts
nothing.

One tenant holds `--conversations` conversations spread over the last `--days` (180) days, with what such a tenant
stores (a fixed seed makes every run the same): 1 to 4 turns each (a visitor message and a persona reply, so about
five messages per conversation), and the events of each (conversation.started, widget.opened/closed,
message.received, reply.completed with a time to first token of 150 ms to a few seconds, a guardrail trigger in
8% of them, an escalation in 3%, a rating in 10%). Rows are written straight into the tables in bulk
(`backends/storage/tables.py`), with the per-day rollup the writer would have kept (`backends/storage/rollup.py`,
the same function): seeding through the API would take an hour. PostgreSQL is ANALYZEd afterwards, as
its autovacuum would have done long before a tenant had this many conversations; SQLite is left as the app leaves
it.

A server process of its own (`bench/serve.py`) serves the database; this process signs in through the form, then
requests each page `--runs` times one after another (after three warm-up requests) and reads the time the server
spent on it from `Server-Timing: app;dur=` (the console's middleware: request in to response start, so the whole
render). The baseline, measured in the same run and the same way, is the sign-in page: a template and no query.
The ratio is page p50 / baseline p50. Pages that are not built yet answer whatever they answer: the status is
printed beside the figures. Last, the dashboard's summary (14 and 90 days) is timed in this process both ways,
interleaved: from the events alone (`from_events`, the way before the rollup) and from the rollup.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import re
import secrets
import tempfile
import time
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import sqlalchemy as sa

from bench.analytics import _drop_pg, _pg_database
from bench.serve import AppSpec, Served
from tests.support.console import PASSWORD, csrf_of, sign_in
from widget_server.backends.storage import Storage, open_storage, rollup
from widget_server.backends.storage.tables import conversations, events, feedback, messages
from widget_server.domain import console_users, personas, tenants
from widget_server.domain.analytics.query import parse_filter
from widget_server.domain.analytics.summary import summarize

TARGET_MS = 100.0
BATCH = 5000
ALPHABET = "0123456789abcdefghjkmnpqrstvwxyz"
QUESTIONS = ["where is my order {n}", "can I return the shoes I bought last week", "do you ship to Norway",
             "what is your refund policy", "my parcel arrived damaged", "how do I change my delivery address",
             "is the blue jacket back in stock", "I was charged twice for order {n}", "can I talk to a person",
             "what are your opening hours", "does the warranty cover a broken zip", "how long does delivery take"]
ANSWERS = ["Your order {n} left our warehouse yesterday and should arrive within two days.",
           "You can return unworn items within 30 days; I can start the return for you.",
           "Yes, we ship to Norway; delivery takes three to five working days.",
           "Refunds reach your card within five working days of the return arriving.",
           "I'm sorry about that. I have opened a claim and a replacement is on its way."]
RULES = ["pii.email", "term.rival", "topic.off_topic", "topic.denied.medical", "pii.phone"]


def _b32(value: int, length: int) -> str:
    return "".join(ALPHABET[(value >> (5 * i)) & 31] for i in reversed(range(length)))


class Ids:
    """Ids as the app makes them (time-sortable), at the time of the seeded row rather than now."""

    def __init__(self) -> None:
        self.n = 0

    def at(self, prefix: str, ts: datetime) -> str:
        self.n += 1
        return f"{prefix}_{_b32(int(ts.timestamp() * 1000), 10)}{_b32(self.n << 16 | random.getrandbits(16), 16)}"


def _conversation(ids: Ids, tenant_id: str, persona_ids: Sequence[str], start: datetime) -> dict[str, list[Any]]:
    """One conversation's rows: the conversation, its messages, its events and its feedback."""
    conv_id, visitor = ids.at("conv", start), f"vis_{secrets.token_hex(8)}"
    persona = random.choice(persona_ids)
    channel = random.choices(["widget", "api", "openai", "console"], [80, 12, 6, 2])[0]
    escalated, rated = random.random() < 0.03, random.random() < 0.10
    resolved = escalated and random.random() < 0.5
    status = "escalated" if escalated and not resolved else random.choices(["bot", "closed"], [85, 15])[0]
    out: dict[str, list[Any]] = {"messages": [], "events": [], "feedback": []}

    def event(ts: datetime, type_: str, **attributes: Any) -> None:
        out["events"].append({"id": ids.at("evt", ts), "ts": ts, "tenant_id": tenant_id, "persona_id": persona,
                              "conversation_id": conv_id, "visitor_id": visitor, "channel": channel, "type": type_,
                              "schema_version": 1, "attributes": attributes})

    event(start, "conversation.started", origin="https://shop.example")
    if channel == "widget":
        event(start, "widget.opened", props={"page": f"/products/{random.randrange(500)}"})
    ts, last_reply = start, ""
    guarded = random.random() < 0.08
    for turn in range(random.choices([1, 2, 3, 4], [35, 30, 20, 15])[0]):
        ts += timedelta(seconds=random.randrange(5, 90))
        n = random.randrange(10000, 99999)
        asked, answer_id = ids.at("msg", ts), ids.at("msg", ts + timedelta(seconds=2))
        ttft = round(random.lognormvariate(5.9, 0.45))  # median ~365 ms, p95 ~770 ms
        total = ttft + random.randrange(400, 3000)
        rule = random.choice(RULES) if guarded and turn == 0 else None
        out["messages"] += [
            {"id": asked, "tenant_id": tenant_id, "conversation_id": conv_id, "role": "visitor",
             "text": random.choice(QUESTIONS).format(n=n), "client_id": f"c{turn}", "finish_reason": None,
             "guardrail": {"action": "mask", "reason": rule, "source": "input"} if rule else None, "usage": None,
             "timing": None, "created_at": ts},
            {"id": answer_id, "tenant_id": tenant_id, "conversation_id": conv_id, "role": "persona",
             "text": random.choice(ANSWERS).format(n=n), "client_id": None, "finish_reason": "stop",
             "guardrail": None, "usage": {"input_tokens": 310 + 40 * turn, "output_tokens": random.randrange(20, 120)},
             "timing": {"ttft_ms": ttft, "total_ms": total}, "created_at": ts + timedelta(seconds=2)}]
        event(ts, "message.received", message_id=asked, chars=40 + n % 80)
        if rule:
            event(ts, "guardrail.triggered", rule=rule, action="mask", source="input", message_id=asked)
        event(ts + timedelta(milliseconds=total), "reply.completed", message_id=answer_id, finish_reason="stop",
              ttft_ms=ttft, total_ms=total, **{"gen_ai.request.model": "gpt-4o-mini",
                                               "gen_ai.usage.input_tokens": 310 + 40 * turn,
                                               "gen_ai.usage.output_tokens": 80,
                                               "gen_ai.response.time_to_first_chunk": ttft / 1000})
        last_reply = answer_id
    if escalated:
        event(ts + timedelta(seconds=3), "escalation.triggered", reason="escalation.requested")
        if resolved:
            event(ts + timedelta(minutes=5), "escalation.resolved")
    if rated:
        rating = random.choices(["up", "down"], [70, 30])[0]
        event(ts + timedelta(seconds=20), "feedback.submitted", message_id=last_reply, rating=rating)
        out["feedback"].append({"id": ids.at("fb", ts), "tenant_id": tenant_id, "conversation_id": conv_id,
                                "message_id": last_reply, "rating": rating, "comment": None,
                                "created_at": ts + timedelta(seconds=20)})
    if channel == "widget":
        event(ts + timedelta(seconds=30), "widget.closed")
    out["conversation"] = [{"id": conv_id, "tenant_id": tenant_id, "persona_id": persona, "visitor_id": visitor,
                            "user_id": None, "channel": channel, "status": status, "origin": "https://shop.example",
                            "created_at": start, "updated_at": ts + timedelta(seconds=30), "guard_refusals": 0,
                            "guard_previous": None}]
    return out


async def seed(storage: Storage, tenant_id: str, n: int, days: int) -> dict[str, Any]:
    """The personas, then `n` conversations with their rows, oldest first; returns counts and a busy conversation."""
    persona_ids = [(await personas.create(storage, tenant_id, {
        "name": name, "slug": name.lower(), "system_prompt": f"You are {name}, the shop's helper.",
        "greeting": "Hi! How can I help?", "starters": ["Where is my order?", "Returns"],
        "provider": {"kind": "openai", "model": "gpt-4o-mini"}}))["id"] for name in ("Ada", "Bo", "Cy", "Dee", "Eve")]
    ids, now = Ids(), datetime.now(UTC)
    starts = sorted(now - timedelta(seconds=random.uniform(60, days * 86400)) for _ in range(n))
    counts = {"conversations": 0, "messages": 0, "events": 0, "feedback": 0}
    busiest = ("", 0)
    pending: dict[str, list[Any]] = {"conversation": [], "messages": [], "events": [], "feedback": []}
    tables = {"conversation": conversations, "messages": messages, "events": events, "feedback": feedback}
    for i, start in enumerate(starts):
        rows = _conversation(ids, tenant_id, persona_ids, start)
        if len(rows["messages"]) > busiest[1]:
            busiest = (rows["conversation"][0]["id"], len(rows["messages"]))
        for key, value in rows.items():
            pending[key] += value
        if len(pending["events"]) >= BATCH or i == n - 1:
            async with storage.engine.begin() as conn:
                if pending["events"]:  # the per-day rollup the writer keeps in the events' transaction
                    for statement, params in rollup.statements(storage.dialect, *rollup.fold(pending["events"],
                                                                                             storage.dialect)):
                        await conn.execute(statement, params)
                for key in ("conversation", "messages", "feedback", "events"):  # feedback needs its message
                    if pending[key]:
                        await conn.execute(sa.insert(tables[key]), pending[key])
                        counts["conversations" if key == "conversation" else key] += len(pending[key])
                        pending[key] = []
    return {**counts, "busiest": busiest[0], "persona": persona_ids[0]}


def _server_ms(response: httpx.Response) -> float | None:
    found = re.search(r"app;dur=([0-9.]+)", response.headers.get("server-timing", ""))
    return float(found.group(1)) if found else None


def _q(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def measure(url: str, email: str, pages: list[tuple[str, str]], runs: int) -> list[tuple[str, int, list[float]]]:
    out = []
    with httpx.Client(base_url=url, headers={"Accept": "text/html"}, timeout=120) as client:
        baseline = httpx.Client(base_url=url, headers={"Accept": "text/html"}, timeout=60)
        r = sign_in(client, email, PASSWORD)
        assert r.status_code == 303, r.text[:500]
        csrf_of(client.get("/console/").text)  # signed in: the dashboard has the session's token
        for label, path in [("sign-in page (baseline)", "/console/login"), *pages]:
            http = baseline if path == "/console/login" else client
            status, times = 0, []
            for i in range(runs + 3):
                r = http.get(path)
                status = r.status_code
                ms = _server_ms(r)
                if i >= 3 and ms is not None:
                    times.append(ms)
            out.append((label, status, times))
        baseline.close()
    return out


def report(title: str, results: list[tuple[str, int, list[float]]]) -> None:
    base = _q(results[0][2], 0.5)
    print(f"\n{title}")
    print(f"    {'page':44} {'status':>6} {'p50 ms':>8} {'p95 ms':>8} {'ratio p50':>10}  "
          f"target p95 <= {TARGET_MS:.0f} ms")
    for label, status, times in results:
        if not times:
            print(f"    {label:44} {status:>6}   (no Server-Timing)")
            continue
        p50, p95 = _q(times, 0.5), _q(times, 0.95)
        verdict = "" if label.endswith("(baseline)") else ("ok" if p95 <= TARGET_MS else "OVER")
        print(f"    {label:44} {status:>6} {p50:8.1f} {p95:8.1f} {p50 / base:9.1f}x  {verdict}")


async def prepare(url: str, n: int, days: int, analyze: bool) -> tuple[str, str, dict[str, Any]]:
    storage = await open_storage(url)
    try:
        tenant_id, _sk = await tenants.create_tenant(storage, "bench " + secrets.token_hex(3))
        user, _ = await console_users.create_user(storage, tenant_id, f"owner-{secrets.token_hex(3)}@bench.example",
                                               "owner", PASSWORD)
        started = time.perf_counter()
        seeded = await seed(storage, tenant_id, n, days)
        seeded["seconds"] = time.perf_counter() - started
        if analyze:
            async with storage.engine.connect() as conn:
                await (await conn.execution_options(isolation_level="AUTOCOMMIT")).execute(sa.text("ANALYZE"))
    finally:
        await storage.close()
    return tenant_id, str(user["email"]), seeded


def pages_of(seeded: dict[str, Any], today: datetime, transcripts_filter: str) -> list[tuple[str, str]]:
    quarter = (today - timedelta(days=89)).date().isoformat()
    return [("/console/ (dashboard, last 14 days)", "/console/"),
            ("/console/ (one persona)", f"/console/?persona={seeded['persona']}"),
            ("/console/ (90 days)", f"/console/?from={quarter}"),
            ("/console/personas", "/console/personas"), ("/console/policy", "/console/policy"),
            ("/console/playground", "/console/playground"), ("/console/transcripts", "/console/transcripts"),
            (f"/console/transcripts?{transcripts_filter}"[:44], f"/console/transcripts?{transcripts_filter}"),
            ("/console/transcripts/{id}", f"/console/transcripts/{seeded['busiest']}"),
            ("/console/tests", "/console/tests"), ("/console/inbox", "/console/inbox")]


async def summary_ways(url: str, tenant_id: str, runs: int) -> list[tuple[str, list[float], list[float]]]:
    """The dashboard's summary (14 and 90 days, every persona), read from the events (the way before the rollup)
    and from the rollup, interleaved, in this process: (label, events ms, rollup ms)."""
    storage = await open_storage(url)
    out = []
    try:
        today = datetime.now(UTC).date()
        for days in (14, 90):
            params = {"from": (today - timedelta(days=days - 1)).isoformat(),
                      "to": (today + timedelta(days=1)).isoformat()}
            filters = await parse_filter(storage, tenant_id, params)
            times: dict[bool, list[float]] = {True: [], False: []}
            for i in range(runs + 2):
                for old in (True, False):
                    began = time.perf_counter()
                    await summarize(storage, tenant_id, filters, ttft_per_day=True, tokens=False, from_events=old)
                    if i >= 2:
                        times[old].append((time.perf_counter() - began) * 1000)
            out.append((f"summary, {days} days", times[True], times[False]))
    finally:
        await storage.close()
    return out


def run(label: str, url: str, tmp: str, args: argparse.Namespace) -> None:
    tenant_id, email, seeded = asyncio.run(prepare(url, args.conversations, args.days, label == "PostgreSQL"))
    print(f"\n{label}: seeded {seeded['conversations']:,} conversations, {seeded['messages']:,} messages, "
          f"{seeded['events']:,} events, {seeded['feedback']:,} ratings in {seeded['seconds']:.0f} s")
    settings = {"data_dir": tmp, "database_url": url, "secret_key": "bench-" + secrets.token_hex(4),
                "provider": "openai", "openai_base_url": "http://127.0.0.1:9/v1", "openai_model": "gpt-4o-mini"}
    with Served(AppSpec("server", settings)) as server:
        results = measure(server.url, email, pages_of(seeded, datetime.now(UTC), args.transcripts_filter), args.runs)
    report(f"{label}: server time per page ({args.runs} requests each, Server-Timing app;dur)", results)
    print(f"\n{label}: the dashboard's summary in process, from the events (before) and from the rollup (after)")
    for name, before, after in asyncio.run(summary_ways(url, tenant_id, args.runs)):
        print(f"    {name:20} events p50 {_q(before, 0.5):7.1f} p95 {_q(before, 0.95):7.1f} ms   rollup p50 "
              f"{_q(after, 0.5):7.1f} p95 {_q(after, 0.95):7.1f} ms   ratio p50 {_q(after, 0.5) / _q(before, 0.5):.2f}")


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--conversations", type=int, default=100_000)
    p.add_argument("--days", type=int, default=180)
    p.add_argument("--runs", type=int, default=30)
    p.add_argument("--transcripts-filter", default="q=refund&status=escalated")
    p.add_argument("--no-postgres", action="store_true")
    p.add_argument("--no-sqlite", action="store_true")
    args = p.parse_args()
    random.seed(12)
    print(f"console benchmark, {datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {os.cpu_count()} cores; "
          f"{args.conversations:,} conversations over {args.days} days")
    with tempfile.TemporaryDirectory() as tmp:
        if not args.no_sqlite:
            run("SQLite", f"sqlite:///{tmp}/console.db", tmp, args)
        if not args.no_postgres:
            name, url = asyncio.run(_pg_database())
            try:
                random.seed(12)
                run("PostgreSQL", url, tmp, args)
            finally:
                asyncio.run(_drop_pg(name))


if __name__ == "__main__":
    main()
