"""Persona test suites in replay mode (issue 15): a 200-case suite replayed from its cassette, as CI would run it.

Run from the repository root: `.venv/bin/python -m bench.suite [--cases 200]` (about a minute on two cores).

A tenant with one persona (the fake upstream's `echo` model, `tests/support/upstream.py`, under uvicorn in a thread
of this process) and a policy (a blocked term, e-mail masking, escalation on request) in a fresh SQLite database.
The suite has `--cases` cases of two turns each, mixing every deterministic assertion (`similar_to`, which embeds,
in one case in ten); one case in ten is instead simulated (a visitor model writes its two turns: the scripted fake of
`tests/support/scripted.py`, which also judges one turn in ten). It is recorded once (`widget-server test
--record`, live against the upstream, the visitor model and the judge), then:

(a) `widget-server test SUITE --replay CASSETTE --junit --json` as a subprocess pinned to two cores: wall time
    from start to exit (Python start-up, imports and the embedding model's load included) and cases/s. Target
    <= 20 s for 200 cases on two cores.
(b) The same replay against the recorded (live) run of the same suite, both through the command: the ratio says
    what replaying saves over calling the model, here a loopback upstream that answers at once.
(c) In process, `run_suite` alone on the replayed suite (no start-up), against the live run in process.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

from tests.support.scripted import Scripted
from tests.support.servers import serve_in_thread
from tests.support.upstream import Upstream
from widget_server.backends.storage import open_storage
from widget_server.domain import personas, tenants
from widget_server.domain.guardrails.tenant_guard import validate
from widget_server.domain.testing.cassette import Cassette
from widget_server.domain.testing.runner import run_suite
from widget_server.domain.testing.suite import load_suite
from widget_server.edges.cli.suites import local_deps
from widget_server.settings import Settings

VISITOR = "script:Do you sell helmets?|I want to talk to a human"
POLICY = {"version": 1, "blocked_terms": [{"id": "rival", "terms": ["rivalcycles"], "action": "refuse"}],
          "pii": {"entities": ["email"], "action": "mask"}, "escalation": {"on_request": True}}
TWO_CORES = {0, 1}


def simulated(i: int) -> dict[str, Any]:
    return {"name": f"case {i}", "visitor_persona": {"inline": {"name": f"Rider {i}"}}, "max_turns": 3,
            "at_some_turn": {"escalated": True}, "never": {"refused": True, "contains": ["rivalcycles"]}}


def case(i: int) -> dict[str, Any]:
    if i % 10 == 5:
        return simulated(i)
    first: dict[str, Any] = {"refused": False, "contains": ["helmets"], "not_contains": ["rival"],
                             "regex": [f"size {i}\\b"], "finish_reason": "stop", "max_output_tokens": 50,
                             "no_prompt_leak": True, "events": ["reply.completed"], "provider_called": True}
    if i % 10 == 0:
        first["similar_to"] = {"text": "Do you sell helmets?", "min": 0.5}
    if i % 10 == 1:
        first["judge"] = {"rubric": f"The reply is about helmets in size {i}."}
    second = [{"refused": True, "guardrail": {"reason": "term.rival", "source": "input"}, "provider_called": False},
              {"masked": ["email"], "contains": ["[email]"]}, {"escalated": True}][i % 3]
    visitor = ["Is RivalCycles cheaper?", f"Mail me at rider{i}@example.com", "I want to talk to a human"][i % 3]
    return {"name": f"case {i}", "turns": [{"visitor": f"Do you sell helmets in size {i}?", "expect": first},
                                          {"visitor": visitor, "expect": second}]}


async def setup(url: str) -> str:
    storage = await open_storage(url)
    try:
        tenant_id, _ = await tenants.create_tenant(storage, "Bench suites")
        await personas.create(storage, tenant_id, {"name": "Spokes", "slug": "spokes", "system_prompt": "You sell.",
                                                   "provider": {"kind": "openai", "model": "echo"}})
        await storage.put_policy(tenant_id, validate(POLICY)[0])
    finally:
        await storage.close()
    return tenant_id


def command(env: dict[str, str], *args: str | Path) -> tuple[float, int]:
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "widget_server", "test", *map(str, args)], env=env,
                          capture_output=True, text=True, preexec_fn=lambda: os.sched_setaffinity(0, TWO_CORES))
    elapsed = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"widget-server test exited {done.returncode}: {done.stderr or done.stdout[-2000:]}")
    return elapsed, done.returncode


async def in_process(settings: Settings, tenant_id: str, path: Path, cassette: Cassette | None) -> float:
    suite = load_suite(path.read_text(), str(path))
    async with local_deps(settings) as deps:
        await run_suite(deps, tenant_id, suite, cassette=Cassette(dict(cassette.data)) if cassette else None)
        started = time.perf_counter()  # the second run: caches warm, as in a long CI job
        result = await run_suite(deps, tenant_id, suite, cassette=cassette)
        elapsed = time.perf_counter() - started
    assert result.ok, [c.to_json() for c in result.cases if c.status != "passed"][:1]
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--cases", type=int, default=200)
    n = parser.parse_args().cases
    fake, models = Upstream(), Scripted()
    with tempfile.TemporaryDirectory() as tmp, serve_in_thread(fake.app()) as upstream_url, \
            serve_in_thread(models.app()) as models_url:
        where = Path(tmp)
        settings = Settings(data_dir=where, database_url=f"sqlite:///{where / 'bench.db'}", provider="openai",
                            openai_base_url=upstream_url + "/v1", openai_model="echo", secret_key="bench-secret",
                            simulator_base_url=models_url + "/v1", judge_base_url=models_url + "/v1")
        tenant_id = asyncio.run(setup(settings.resolved_database_url))
        path = where / "suite.yaml"
        path.write_text(yaml.safe_dump({"suite": "bench", "persona": "spokes", "policy": "tenant",
                                        "simulator": {"model": VISITOR}, "judge": {"model": "verdicts:P"},
                                        "cases": [case(i) for i in range(n)]}, sort_keys=False))
        env = {**{k: v for k, v in os.environ.items() if not k.startswith("WIDGET_")},
               "WIDGET_DATA_DIR": tmp, "WIDGET_DATABASE_URL": settings.resolved_database_url,
               "WIDGET_PROVIDER": "openai", "WIDGET_OPENAI_BASE_URL": upstream_url + "/v1",
               "WIDGET_SECRET_KEY": "bench-secret", "WIDGET_SIMULATOR_BASE_URL": models_url + "/v1",
               "WIDGET_JUDGE_BASE_URL": models_url + "/v1"}
        tape = where / "tape.json"
        live_s, _ = command(env, path, "--tenant", tenant_id, "--record", tape)
        calls = len(fake.requests), len(models.requests)
        replay_s, _ = command(env, path, "--tenant", tenant_id, "--replay", tape, "--junit", where / "junit.xml",
                              "--json", where / "out.json")
        assert (len(fake.requests), len(models.requests)) == calls, "a replay called a model"
        cassette = Cassette.from_json(tape.read_text())
        live_in = asyncio.run(in_process(settings, tenant_id, path, None))
        replay_in = asyncio.run(in_process(settings, tenant_id, path, cassette))
    print(f"{'figure':<58} {'value':>10} {'target':>10}")
    print(f"{'(a) replay of ' + str(n) + ' cases, the command on two cores (s)':<58} {replay_s:10.2f} {'<= 20':>10}")
    print(f"{'(a) cases/s':<58} {n / replay_s:10.1f}")
    print(f"{'(b) command: replay / live (record) wall time':<58} {replay_s / live_s:10.2f}"
          f"   (live {live_s:.2f} s)")
    print(f"{'(c) run_suite in process: replay / live':<58} {replay_in / live_in:10.2f}"
          f"   (replay {replay_in:.2f} s, {n / replay_in:.0f} cases/s; live {live_in:.2f} s)")
    print(f"cores: {len(os.sched_getaffinity(0))} available to this process; the command pinned to {sorted(TWO_CORES)}")


if __name__ == "__main__":
    main()
