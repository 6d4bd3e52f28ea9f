"""`widget-server test SUITE.yaml… --tenant ID`: run persona test suites in this process, against the database
and providers the settings name (local mode), through the same turn visitors get.

Exit 0 when every case passed, 1 when an assertion failed (or a case could not complete), 2 when a suite could
not run (a bad file: the message names the file, the line and the field). `--server URL --key sk_…` and
`--redteam` are not built yet: they exit 2 saying so.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

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
from widget_server.domain.testing.results import SuiteResult
from widget_server.domain.testing.runner import run_suite
from widget_server.domain.testing.suite import Suite, SuiteInvalid, load_suite
from widget_server.edges.cli.common import require_tenant
from widget_server.errors import InvalidRequest, WidgetError
from widget_server.ids import new_id
from widget_server.metrics import Metrics
from widget_server.private_files import private_file
from widget_server.settings import Settings

MAX_REPEAT = 100
NOT_YET = {"server": "--server/--key (running against a remote server) is not built yet: use --tenant",
           "redteam": "--redteam is not built yet"}


def add_parser(sub: Any) -> None:
    """The `test` command's arguments, on the command line's subparsers."""
    t = sub.add_parser("test", help="run persona test suites (YAML) through the production pipeline")
    t.add_argument("suites", nargs="+", type=Path, metavar="SUITE.yaml")
    t.add_argument("--tenant", help="the tenant whose personas and policy the suites test")
    t.add_argument("--junit", type=Path, metavar="FILE", help="write a JUnit XML report")
    t.add_argument("--json", type=Path, metavar="FILE", help="write the results as JSON")
    t.add_argument("--repeat", type=int, default=1, metavar="K", help="run each case K times; report pass^K")
    tape = t.add_mutually_exclusive_group()
    tape.add_argument("--record", type=Path, metavar="FILE", help="record the model's outputs into a cassette")
    tape.add_argument("--replay", type=Path, metavar="FILE", help="replay a cassette: no model is called")
    t.add_argument("--only", metavar="NAME", help="run only the case of this name")
    t.add_argument("--server", help="(not yet) a remote server's URL")
    t.add_argument("--key", help="(not yet) the remote server's secret key")
    t.add_argument("--redteam", action="store_true", help="(not yet) the red-team pack of the tenant's policy")


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise InvalidRequest(f"cannot read {path}: {exc.strerror or exc}") from None


def _check(args: argparse.Namespace) -> tuple[list[Suite], Cassette | None]:
    """Everything that can be wrong before anything runs: arguments, suite files, the cassette."""
    if args.server or args.key:
        raise InvalidRequest(NOT_YET["server"])
    if args.redteam:
        raise InvalidRequest(NOT_YET["redteam"])
    if not args.tenant:
        raise InvalidRequest("--tenant is required")
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


async def _run(settings: Settings, args: argparse.Namespace, suites: list[Suite],
               cassette: Cassette | None) -> list[SuiteResult]:
    results = []
    async with local_deps(settings) as deps:
        await require_tenant(deps.storage, args.tenant)
        for suite in suites:
            bar = reports.ProgressBar(sys.stderr, len(suite.cases) if args.only is None else 1)
            try:
                results.append(await run_suite(deps, args.tenant, suite, repeat=args.repeat, cassette=cassette,
                                               record=bool(args.record), only=args.only, on_progress=bar.step))
            finally:
                bar.close()
    return results


def _write(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    private_file(tmp).write_text(text)
    tmp.replace(path)


def cmd_test(settings: Settings, args: argparse.Namespace) -> int:
    try:
        suites, cassette = _check(args)
        results = asyncio.run(_run(settings, args, suites, cassette))
    except (SuiteInvalid, CassetteInvalid) as exc:
        print(f"widget-server: error: {' '.join(exc.message.split())}", file=sys.stderr)
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
