"""The console playground's costs, each as a ratio to a baseline measured in the same run (and the absolute figures).

Run from the repository root: `.venv/bin/python -m bench.playground [--rounds 30]` (about a minute).

(a) Time to first token through the playground (`POST /console/playground/turn`, signed in, CSRF, SSE read by
    httpx) over the REST stream (`POST /v1/personas/{id}/prompt/stream`), the same persona, the same upstream
    model `pace-20-30`, rounds alternating: client-side p50/p95 from sending to the first `reply.delta`.
(b) A turn against a draft (the policy, with topics, sent as YAML and compiled for the turn) over the same turn
    against the saved policy: p50/p95 of the whole request, model `echo`.
(c) The decision trace's cost in the engine: `check_input` on a policy with topics, alone and followed by
    `decision.topics.trace()` (the scores of every topic, computed only in the playground).

The server (`create_app`, SQLite in a temporary directory) and the fake upstream run under uvicorn in threads of
this process: the figures compare two paths under the same conditions, not absolute capacity.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import tempfile
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import httpx
import yaml

from tests.support.console import PASSWORD, csrf_of, sign_in
from tests.support.servers import serve_in_thread
from tests.support.upstream import Upstream
from widget_server.app import create_app
from widget_server.backends.storage import open_storage
from widget_server.clock import now
from widget_server.domain import tenants
from widget_server.domain.console_users import hash_password
from widget_server.domain.guardrails.check import check_input
from widget_server.domain.guardrails.tenant_guard import validate
from widget_server.ids import new_id
from widget_server.settings import Settings

POLICY = {"version": 1, "pii": {"entities": ["email"]}, "topics": {
    "allowed": [{"id": "bikes", "examples": ["do you sell helmets", "how much is a bike service",
                                            "what bikes do you have", "can you fix a puncture"]}],
    "denied": [{"id": "medical", "examples": ["what dose of ibuprofen should I take",
                                              "which painkiller is best for a headache"]}]}}
MESSAGES = ["Do you sell helmets for children?", "What dose of ibuprofen should I take?",
            "Can you fix a puncture today?", "What is the capital of France?"]


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


async def _setup(url: str) -> dict[str, str]:
    storage = await open_storage(url)
    try:
        tenant_id, sk = await tenants.create_tenant(storage, "Bench playground")
        email = f"bench-{new_id('u')[-8:]}@example.com"
        await storage.console.add_user({"id": new_id("usr"), "tenant_id": tenant_id, "email": email, "role": "owner",
                                        "display_name": "Bench", "password_hash": hash_password(PASSWORD),
                                        "created_at": now()})
    finally:
        await storage.close()
    return {"tenant_id": tenant_id, "sk": sk, "email": email}


def first_delta(send: Callable[[], Any]) -> tuple[float, float]:
    """(ms to the first reply.delta, ms to the end) of one streamed request."""
    started = time.perf_counter()
    first = None
    with send() as r:
        assert r.status_code == 200, r.read()
        for line in r.iter_lines():
            if first is None and line.startswith("event: reply.delta"):
                first = time.perf_counter()
    end = time.perf_counter()
    return ((first or end) - started) * 1000, (end - started) * 1000


def row(name: str, ours: list[float], base: list[float]) -> None:
    p50, p95, b50, b95 = pct(ours, 50), pct(ours, 95), pct(base, 50), pct(base, 95)
    print(f"{name:<44} {p50:8.1f} {p95:8.1f} {b50:8.1f} {b95:8.1f} {p50 / b50:7.2f} {p95 / b95:7.2f}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=30)
    rounds = parser.parse_args().rounds
    fake = Upstream()
    with tempfile.TemporaryDirectory() as tmp, serve_in_thread(fake.app()) as upstream_url:
        db = f"sqlite:///{Path(tmp) / 'bench.db'}"
        settings = Settings(data_dir=tmp, database_url=db, provider="openai", openai_base_url=upstream_url + "/v1",
                            openai_model="echo", secret_key="bench-secret", rate_limit_messages=100000)
        with serve_in_thread(create_app(settings)) as url:
            keys = asyncio.run(_setup(settings.resolved_database_url))
            auth = {"Authorization": f"Bearer {keys['sk']}"}
            client = httpx.Client(base_url=url, headers={"Accept": "text/html"}, timeout=120)
            assert sign_in(client, keys["email"], PASSWORD).status_code == 303
            token = csrf_of(client.get("/console/playground").text)
            made = {m: httpx.post(f"{url}/v1/personas", headers=auth, json={
                "name": m, "slug": m.replace("-", ""), "provider": {"kind": "openai", "model": m}}).json()["id"]
                for m in ("pace-20-30", "echo")}
            assert httpx.put(f"{url}/v1/safety-policy", json=POLICY, headers=auth, timeout=120).status_code == 200

            def console_turn(persona: str, message: str, draft: dict[str, str] | None = None) -> Any:
                body: dict[str, Any] = {"persona": persona, "message": message}
                if draft is not None:
                    body["draft"] = draft
                return client.stream("POST", "/console/playground/turn", content=json.dumps(body),
                                     headers={"X-CSRF-Token": token, "Content-Type": "application/json"})

            rest = httpx.Client(base_url=url, headers=auth, timeout=120)  # kept open, as the console's is

            def rest_turn(persona: str, message: str) -> Any:
                return rest.stream("POST", f"/v1/personas/{persona}/prompt/stream", json={"message": message})

            draft = {"policy": yaml.safe_dump(POLICY)}
            for _ in range(3):  # warm up: models loaded, policy compiled, connections open
                first_delta(lambda: console_turn(made["echo"], MESSAGES[0], draft))
                first_delta(lambda: rest_turn(made["echo"], MESSAGES[0]))
            ours, base = [], []
            for i in range(rounds):
                ours.append(first_delta(partial(console_turn, made["pace-20-30"], f"Do you sell helmets? {i}"))[0])
                base.append(first_delta(partial(rest_turn, made["pace-20-30"], f"Do you sell helmets? {i}"))[0])
            drafted, saved = [], []
            for i in range(rounds):
                message = MESSAGES[i % len(MESSAGES)]
                drafted.append(first_delta(partial(console_turn, made["echo"], message, draft))[1])
                saved.append(first_delta(partial(console_turn, made["echo"], message))[1])
            client.close()
            rest.close()
    _, compiled = validate(POLICY)
    alone, traced = [], []
    for i in range(rounds * 10):
        message = MESSAGES[i % len(MESSAGES)] + f" {i}"
        started = time.perf_counter()
        check_input(compiled, message)
        alone.append((time.perf_counter() - started) * 1000)
        message += "!"
        started = time.perf_counter()
        decision = check_input(compiled, message)
        assert decision.topics is not None
        decision.topics.trace()
        traced.append((time.perf_counter() - started) * 1000)
    print(f"{'ms (ratio = ours / baseline)':<44} {'p50':>8} {'p95':>8} {'base p50':>8} {'base p95':>8} "
          f"{'x p50':>7} {'x p95':>7}")
    row("(a) TTFT playground / REST SSE", ours, base)
    row("(b) whole turn: draft policy / saved policy", drafted, saved)
    row("(c) check_input + trace / check_input", traced, alone)
    print(f"rounds: {rounds} (c: {rounds * 10}); mean TTFT playground {statistics.mean(ours):.1f} ms, "
          f"REST {statistics.mean(base):.1f} ms")


if __name__ == "__main__":
    main()
