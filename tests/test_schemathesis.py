"""The server keeps every promise of its OpenAPI document: schemathesis against a real server, `--checks all`.

Clients are generated from /openapi.json, so a schema-valid request the server refuses, an answer that breaks its
own schema, an undocumented status or a wrong `Allow` header is a bug in one or the other. This runs the same
command a developer runs by hand (`schemathesis run URL --checks all` from the repository root, which reads
schemathesis.toml), bounded (EXAMPLES per operation and phase) and deterministic (`--generation-deterministic`:
Hypothesis derandomized, no example database), and prints schemathesis's own summary.

`--checks all` includes a response-time limit, 10 s unless told. It is set to 60 s here: a hang, not a speed
target (those live in bench/). One generated persona has 192 topic examples, which the write embeds: 1 s on an
idle 2-core machine, 14 s measured while other suites ran on it.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import httpx

from tests.conftest import Stack

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = 10


def _seed(stack: Stack) -> None:
    """Personas (and a conversation of one) that the generated requests find through the inferred links."""
    for _ in range(2):
        persona = stack.persona("echo")
    r = httpx.post(f"{stack.url}/v1/personas/{persona}/prompt", json={"message": "hello"}, headers=stack.auth,
                   timeout=30)
    assert r.status_code == 200, r.text


async def _key_id(stack: Stack) -> str:
    """The id of the secret key the run authenticates with (the hooks leave that one key alone)."""
    from widget_server.backends.storage import open_storage

    storage = await open_storage(stack.settings.resolved_database_url)
    try:
        [key] = await storage.list_keys(stack.tenant_id, "secret")
        return str(key["id"])
    finally:
        await storage.close()


def test_schemathesis_finds_no_failure_in_any_operation(stack_factory: Callable[..., Stack], tmp_path: Path) -> None:
    # A generated persona may have a 20,000-character system prompt for the bundled model, which then reads a full
    # 2,048-token window before its first token: seconds on a busy machine, not the fake upstream's 5 s budget.
    # Prompt jobs stay queued here: run, a generated persona's job would hold the bundled model's one thread while
    # the run times the synchronous prompts (test_prompt_jobs.py checks run jobs against the document).
    stack = stack_factory(provider_timeout_s=60, provider_stall_s=30, prompt_jobs_concurrency=0)
    _seed(stack)
    report = tmp_path / "report.json"
    command = [sys.executable, "-m", "schemathesis.cli", "--no-color", "run", f"{stack.url}/openapi.json",
               "--checks", "all", "--max-examples", str(EXAMPLES), "--generation-deterministic",
               "--header", f"Authorization: Bearer {stack.sk}", "--request-timeout", "60", "--max-response-time", "60",
               "--report", "json", "--report-json-path", str(report)]
    started = time.monotonic()
    own_key = asyncio.run(_key_id(stack))
    run = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=600,
                         env={**os.environ, "WIDGET_SCHEMATHESIS_OWN_KEY": own_key})
    print(run.stdout[run.stdout.find("SUMMARY") - 34:] if "SUMMARY" in run.stdout else run.stdout + run.stderr)
    assert report.exists(), run.stdout + run.stderr
    result = json.loads(report.read_text())
    cases, operations = result["test_cases"], result["operations"]
    print(f"schemathesis: {operations['tested']} operations, {cases['generated']} test cases, "
          f"{cases['unique_failures']} failures, {len(result['errors'])} errors, "
          f"{time.monotonic() - started:.0f} s")
    failures = {f"{f['code']} {f['title']}": f["operations"] for f in result["failures"]}
    assert failures == {} and result["errors"] == [], run.stdout
    documented = sum(1 for item in httpx.get(f"{stack.url}/openapi.json").json()["paths"].values()
                     for method in item if method in ("get", "put", "post", "delete", "patch"))
    assert operations["tested"] == documented - 1  # all but GET /openapi.json, which schemathesis reads
    assert cases["generated"] > operations["tested"] * EXAMPLES
    assert run.returncode == 0, run.stdout
