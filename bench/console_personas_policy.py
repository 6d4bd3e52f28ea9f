"""Server time of the console's Personas and Safety policy pages at their largest: a tenant with the most personas
it may have (500) and a policy near its limits (1,000 blocked terms, 50 patterns, PII).

    .venv/bin/python -m bench.console_personas_policy [--runs 40] [--database-url postgresql://…]

Each figure is the `Server-Timing: app;dur=` of the response (the server's time to the response's start, what the
console's ≤ 100 ms target is about), p50 and p95 over `--runs` requests, and its ratio to the sign-in form measured
in the same run (a console page that reads nothing). The server runs under uvicorn in a thread of this process, on
a fresh SQLite file unless `--database-url` names another database. Prints figures; asserts nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import re
import secrets
import statistics
import tempfile
from pathlib import Path
from typing import Any

import httpx

from tests.support.servers import serve_in_thread
from widget_server.app import create_app
from widget_server.backends.storage import open_storage
from widget_server.clock import now
from widget_server.domain import personas, tenants
from widget_server.domain.console_users import hash_password
from widget_server.ids import new_id
from widget_server.settings import Settings

PASSWORD = "bench password for the console"
PERSONAS = 500


def big_policy() -> str:
    terms = [f"blocked{g}x{t}" for g in range(20) for t in range(50)]
    lines = ["version: 1", "blocked_terms:"]
    lines += [f"  - {{id: g{g}, terms: [{', '.join(terms[g * 50:(g + 1) * 50])}], action: refuse}}" for g in range(20)]
    lines += ["patterns:"] + [f"  - {{id: p{p}, regex: 'TCK{p}-\\d{{6}}', action: mask}}" for p in range(50)]
    lines += ["pii: {entities: [email, phone, credit_card, iban, us_ssn], action: mask}"]
    return "\n".join(lines) + "\n"


async def seed(url: str) -> tuple[str, str, str]:
    storage = await open_storage(url)
    try:
        tenant_id, _ = await tenants.create_tenant(storage, "Bench")
        email = f"owner-{secrets.token_hex(4)}@bench.example"
        await storage.console.add_user({"id": new_id("usr"), "tenant_id": tenant_id, "email": email, "role": "owner",
                                        "display_name": "Bench Owner", "password_hash": hash_password(PASSWORD),
                                        "created_at": now()})
        first = ""
        for n in range(PERSONAS):
            made = await personas.create(storage, tenant_id, {
                "name": f"Persona {n}", "greeting": "Hello! " * 20, "system_prompt": "You help. " * 200,
                "starters": [f"Starter {i}" for i in range(8)], "provider": {"kind": "openai", "model": "echo"}})
            first = first or made["id"]
    finally:
        await storage.close()
    return tenant_id, email, first


def server_ms(r: httpx.Response) -> float:
    assert r.status_code in (200, 303), (r.request.url, r.status_code, r.text[:500])
    found = re.match(r"app;dur=([\d.]+)", r.headers["server-timing"])
    assert found
    return float(found.group(1))


def measure(runs: int, call: Any) -> tuple[float, float]:
    call()  # warm: templates compiled, the policy compiled once
    values = sorted(server_ms(call()) for _ in range(runs))
    return statistics.median(values), values[min(len(values) - 1, int(0.95 * len(values)))]


def main() -> None:
    args = argparse.ArgumentParser()
    args.add_argument("--runs", type=int, default=40)
    args.add_argument("--database-url")
    opts = args.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        url = opts.database_url or f"sqlite:///{Path(tmp) / 'bench.db'}"
        settings = Settings(data_dir=tmp, database_url=url, secret_key="bench-secret", provider="openai",
                            openai_base_url="http://127.0.0.1:9/v1", openai_model="echo")
        _, email, pid = asyncio.run(seed(url))
        with serve_in_thread(create_app(settings)) as base, httpx.Client(base_url=base, timeout=120,
                                                                         headers={"Accept": "text/html"}) as c:
            form = c.get("/console/login").text
            token = re.search(r'name="csrf" value="([^"]*)"', form)
            assert token
            c.post("/console/login", data={"email": email, "password": PASSWORD, "csrf": token.group(1)})
            csrf = re.search(r'name="csrf" value="([^"]*)"', c.get("/console/policy").text)
            assert csrf
            policy = big_policy()
            assert c.post("/console/policy", data={"policy": policy, "csrf": csrf.group(1)}).status_code == 303
            sample = "is blocked3x7 cheaper? mail ann@example.com or call +1 415 555 0100 about TCK7-123456 " * 20

            def check(use: str) -> httpx.Response:
                return c.post("/console/policy/check", data={"policy": policy, "text": sample, "source": "input",
                                                             "use": use, "csrf": csrf.group(1)})
            cases = [
                ("sign-in form (baseline)", lambda: c.get("/console/login")),
                (f"personas list ({PERSONAS})", lambda: c.get("/console/personas")),
                ("persona form", lambda: c.get(f"/console/personas/{pid}")),
                ("persona export", lambda: c.get(f"/console/personas/{pid}/export")),
                ("policy page (1,000 terms)", lambda: c.get("/console/policy")),
                ("check a text, saved policy", lambda: check("saved")),
                ("check a text, draft policy", lambda: check("draft")),
            ]
            results = [(name, *measure(opts.runs, call)) for name, call in cases]
    base_p50 = results[0][1]
    print(f"database: {url.split(':')[0]}; {opts.runs} runs each; server time (Server-Timing app;dur)")
    print(f"{'page':<30}{'p50 ms':>9}{'p95 ms':>9}{'p50 / baseline':>16}")
    for name, p50, p95 in results:
        print(f"{name:<30}{p50:>9.1f}{p95:>9.1f}{p50 / base_p50:>15.1f}x")


if __name__ == "__main__":
    main()
