"""`widget-server test SUITE.yaml… --tenant ID`: run persona test suites in this process, against the database
and providers the settings name (local mode), through the same turn visitors get.

With `--server URL --key sk_…` the suites run on that server instead (`POST /v1/test-runs`, followed over its
event stream), and are reported here the same way. `--redteam` adds the red-team pack generated from the tenant's
own policy for a persona (`--persona`, or the tenant's only one): what gets through fails.

Exit 0 when every case passed, 1 when an assertion failed (or a case could not complete), 2 when a suite could
not run (a bad file: the message names the file, the line and the field).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import yaml

from widget_server.backends.bus import open_bus
from widget_server.backends.providers import Providers
from widget_server.backends.ratelimit import Limits
from widget_server.backends.storage import open_storage
from widget_server.domain.analytics.writer import EventWriter
from widget_server.domain.chat.channels import Hub
from widget_server.domain.chat.deps import Deps
from widget_server.domain.guardrails.tenant_guard import TenantGuard
from widget_server.domain.sealed import Sealer
from widget_server.domain.testing import reports
from widget_server.domain.testing.cassette import Cassette, CassetteInvalid
from widget_server.domain.testing.redteam import redteam_suite
from widget_server.domain.testing.results import SuiteResult, suite_result_of
from widget_server.domain.testing.runner import Judging, run_suite
from widget_server.domain.testing.suite import Suite, SuiteInvalid, load_suite, parse_suite
from widget_server.edges.cli.common import require_tenant
from widget_server.errors import InvalidRequest, WidgetError
from widget_server.ids import new_id
from widget_server.metrics import Metrics
from widget_server.private_files import private_file
from widget_server.settings import Settings

MAX_REPEAT = 100
REMOTE_REPEAT = 10  # what POST /v1/test-runs accepts
REMOTE_TIMEOUT_S = 3600.0  # a remote run followed this long at most


def add_parser(sub: Any) -> None:
    """The `test` command's arguments, on the command line's subparsers."""
    t = sub.add_parser("test", help="run persona test suites (YAML) through the production pipeline")
    t.add_argument("suites", nargs="*", type=Path, metavar="SUITE.yaml")
    t.add_argument("--tenant", help="the tenant whose personas and policy the suites test")
    t.add_argument("--junit", type=Path, metavar="FILE", help="write a JUnit XML report")
    t.add_argument("--json", type=Path, metavar="FILE", help="write the results as JSON")
    t.add_argument("--repeat", type=int, default=1, metavar="K", help="run each case K times; report pass^K")
    tape = t.add_mutually_exclusive_group()
    tape.add_argument("--record", type=Path, metavar="FILE", help="record the model's outputs into a cassette")
    tape.add_argument("--replay", type=Path, metavar="FILE", help="replay a cassette: no model is called")
    t.add_argument("--only", metavar="NAME", help="run only the case of this name")
    t.add_argument("--server", help="run on this server (its URL) instead of in this process; needs --key")
    t.add_argument("--key", help="the server's secret key (sk_…) of the tenant, with --server")
    t.add_argument("--redteam", action="store_true", help="add the red-team pack of the tenant's own policy")
    t.add_argument("--persona", metavar="SLUG", help="the persona the red-team pack tests (default: the only one)")
    t.add_argument("--seed", type=int, default=0, help="the red-team pack's seed (0)")
    judge = t.add_mutually_exclusive_group()
    judge.add_argument("--no-judge", action="store_true", help="skip the judged assertions (the judge is not asked)")
    judge.add_argument("--strict-judge", action="store_true",
                       help="a judged assertion skipped (no judge) or failed fails the run")


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise InvalidRequest(f"cannot read {path}: {exc.strerror or exc}") from None


def _check(args: argparse.Namespace) -> tuple[list[Suite], Cassette | None]:
    """Everything that can be wrong before anything runs: arguments, suite files, the cassette."""
    if not args.suites and not args.redteam:
        raise InvalidRequest("name a suite file (or --redteam)")
    if args.server or args.key:
        if not (args.server and args.key) or args.tenant:
            raise InvalidRequest("--server needs --key (and no --tenant: the key names the tenant)")
        if args.record or args.replay:
            raise InvalidRequest("--record and --replay run in this process: use --tenant")
        if not 1 <= args.repeat <= REMOTE_REPEAT:
            raise InvalidRequest(f"--repeat must be from 1 to {REMOTE_REPEAT} on a server")
    elif not args.tenant:
        raise InvalidRequest("--tenant is required (or --server and --key)")
    if not 1 <= args.repeat <= MAX_REPEAT:
        raise InvalidRequest(f"--repeat must be from 1 to {MAX_REPEAT}")
    suites = [load_suite(_read(p), str(p)) for p in args.suites]
    names = [s.suite for s in suites]
    if len(set(names)) != len(names):
        raise InvalidRequest("two suite files have the same suite name: a cassette keeps suites by name")
    cassette = Cassette.from_json(_read(args.replay).decode("utf-8", "replace"), str(args.replay)) \
        if args.replay else Cassette() if args.record else None
    return suites, cassette


@contextlib.asynccontextmanager
async def local_deps(settings: Settings) -> AsyncIterator[Deps]:
    """What a turn needs, in this process: the settings' database and providers, an in-process bus, the
    events written to the tenant's analytics (channel `test`)."""
    storage = await open_storage(settings.resolved_database_url)
    bus = open_bus(None, new_id("node"), max_frames=settings.resume_log_frames, ttl_s=settings.session_ttl_s,
                   lease_s=settings.bus_lease_s)
    await bus.start()
    writer = EventWriter(storage.events.insert, Metrics(), batch=settings.events_batch,
                         flush_s=settings.events_flush_ms / 1000, max_buffer=settings.events_buffer)
    writer.start()
    providers = Providers(settings)
    deps = Deps(settings=settings, storage=storage, providers=providers, guard=TenantGuard(storage), events=writer,
                hub=Hub(bus, settings.resume_grace_s, settings.bus_lease_s), limits=Limits(None, {}),
                sealer=Sealer(settings.signing_secret()))
    try:
        yield deps
    finally:
        await providers.aclose()
        await writer.aclose()
        await bus.aclose()
        await storage.close()


def _persona_of(personas: list[dict[str, Any]], wanted: str | None) -> dict[str, Any]:
    if wanted is not None:
        found = next((p for p in personas if wanted in (p["slug"], p["id"])), None)
        if found is None:
            raise InvalidRequest(f"--persona: the tenant has no persona {wanted!r}")
        return found
    if len(personas) != 1:
        raise InvalidRequest(f"--redteam: the tenant has {len(personas)} personas: name one with --persona")
    return personas[0]


def _redteam(policy: dict[str, Any] | None, persona: dict[str, Any], seed: int) -> Suite:
    if policy is None:
        raise InvalidRequest("--redteam: the tenant has no safety policy to attack")
    return parse_suite(redteam_suite(policy, persona, seed=seed), "the red-team pack")


def _judging(args: argparse.Namespace) -> Judging:
    return Judging(enabled=not getattr(args, "no_judge", False), strict=getattr(args, "strict_judge", False))


def _judge_options(args: argparse.Namespace) -> dict[str, bool]:
    return {k: True for k in ("no_judge", "strict_judge") if getattr(args, k, False)}


async def _run(settings: Settings, args: argparse.Namespace, suites: list[Suite],
               cassette: Cassette | None) -> list[SuiteResult]:
    results = []
    async with local_deps(settings) as deps:
        await require_tenant(deps.storage, args.tenant)
        if args.redteam:
            rows = await deps.storage.list_personas(args.tenant)
            persona = _persona_of([{"slug": r["slug"], "id": r["id"], **r["doc"]} for r in rows], args.persona)
            policy = await deps.storage.get_policy(args.tenant)
            suites = [*suites, _redteam(policy["doc"] if policy else None, persona, args.seed)]
        for suite in suites:
            bar = reports.ProgressBar(sys.stderr, len(suite.cases) if args.only is None else 1)
            try:
                results.append(await run_suite(deps, args.tenant, suite, repeat=args.repeat, cassette=cassette,
                                               record=bool(args.record), only=args.only, on_progress=bar.step,
                                               judging=_judging(args)))
            finally:
                bar.close()
    return results


def _remote_error(r: httpx.Response) -> WidgetError:
    try:
        message = str(r.json()["error"]["message"])
    except (ValueError, KeyError, TypeError):
        message = r.text[:300] or r.reason_phrase
    error = InvalidRequest(f"{r.request.url.path}: HTTP {r.status_code}: {message}")
    error.status_code = r.status_code  # type: ignore[misc]
    return error


def _remote(args: argparse.Namespace, suites: list[Suite], docs: list[Any]) -> list[SuiteResult]:
    """Each suite run on the server (`POST /v1/test-runs`), followed to its end, its results read back."""
    results = []
    with httpx.Client(base_url=args.server.rstrip("/"), headers={"Authorization": f"Bearer {args.key}"},
                      timeout=30) as client:
        bodies: list[Any] = list(docs)
        if args.redteam:
            policy = client.get("/v1/safety-policy")
            if policy.status_code not in (200, 404):
                raise _remote_error(policy)
            listed = client.get("/v1/personas", params={"limit": 200})
            if listed.status_code != 200:
                raise _remote_error(listed)
            persona = _persona_of(listed.json()["data"], args.persona)
            pack = _redteam(policy.json()["policy"] if policy.status_code == 200 else None, persona, args.seed)
            suites = [*suites, pack]
            bodies.append(redteam_suite(policy.json()["policy"], persona, seed=args.seed))
        for suite, body in zip(suites, bodies, strict=True):
            r = client.post("/v1/test-runs", json={"suite": body, "repeat": args.repeat, **_judge_options(args),
                                                   **({"only": args.only} if args.only else {})})
            if r.status_code != 202:
                raise _remote_error(r)
            run_id = r.json()["id"]
            bar = reports.ProgressBar(sys.stderr, len(suite.cases) if args.only is None else 1)
            try:
                with client.stream("GET", f"/v1/test-runs/{run_id}/events", timeout=REMOTE_TIMEOUT_S) as events:
                    if events.status_code != 200:
                        raise _remote_error(events)
                    name = ""
                    for line in events.iter_lines():
                        if line.startswith("event: "):
                            name = line[7:]
                        elif line.startswith("data: ") and name == "progress":
                            bar.step(json.loads(line[6:]))
            finally:
                bar.close()
            run = client.get(f"/v1/test-runs/{run_id}")
            if run.status_code != 200:
                raise _remote_error(run)
            doc = run.json()
            if doc["result"] is None:  # it could not run: the server says why
                raise InvalidRequest(f"{suite.suite}: the run ended as {doc['status']}: {doc['error']}")
            results.append(suite_result_of(doc["result"]))
    return results


def _write(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    private_file(tmp).write_text(text)
    tmp.replace(path)


def cmd_test(settings: Settings, args: argparse.Namespace) -> int:
    try:
        suites, cassette = _check(args)
        if args.server:
            results = _remote(args, suites, [yaml.safe_load(_read(p)) for p in args.suites])  # (they loaded above)
        else:
            results = asyncio.run(_run(settings, args, suites, cassette))
    except (SuiteInvalid, CassetteInvalid) as exc:
        print(f"widget-server: error: {' '.join(exc.message.split())}", file=sys.stderr)
        return 2
    except httpx.HTTPError as exc:
        print(f"widget-server: error: {args.server}: {exc}", file=sys.stderr)
        return 2
    except WidgetError as exc:  # the tenant, a persona or a drafted policy the suite names
        print(f"widget-server: error: {' '.join(exc.message.split())}", file=sys.stderr)
        return 2 if exc.status_code < 500 else 1
    print(reports.table(results))
    if args.junit:
        _write(args.junit, reports.junit(results))
    if args.json:
        _write(args.json, reports.json_report(results))
    if args.record and cassette is not None:
        _write(args.record, cassette.to_json())
    return 0 if all(r.ok for r in results) else 1
