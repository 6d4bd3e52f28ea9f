"""`widget-server`: serve, the demo, tenants, keys, persona files, exports. One-line errors, non-zero exit codes."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, NoReturn

import yaml

from widget_server import guard_eval
from widget_server.backends.storage import Storage, open_storage
from widget_server.domain import personas, tenants
from widget_server.domain.analytics import export as exports
from widget_server.errors import SlugTaken, TenantNotFound, WidgetError
from widget_server.settings import Settings

DEMO_PERSONA: dict[str, Any] = {
    "name": "Ada", "slug": "ada",
    "description": "The demo persona: a friendly guide to the Crumb & Co bakery.",
    "system_prompt": "Ada is the friendly assistant of Crumb & Co, a small bakery. Ada answers in one or two short, "
                     "kind sentences about bread, cakes, opening hours (8am to 6pm, Monday to Saturday) and orders.",
    "greeting": "Hi, I'm Ada from Crumb & Co. What can I bake for you today?",
    "starters": ["What bread do you have?", "When are you open?", "Can I order a cake?"],
}
EXPORT_FILTERS = ("persona", "conversation", "visitor", "from", "to")


class Parser(argparse.ArgumentParser):
    """Bad arguments get one line on stderr (no usage dump) and exit status 2; subcommands inherit this."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"widget-server: error: {message} (see {self.prog} --help)\n")


def _parser() -> argparse.ArgumentParser:
    p = Parser(prog="widget-server", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="run the server")
    demo = sub.add_parser("demo", help="create the demo tenant, persona and key (idempotent), then serve")
    for cmd in (serve, demo):
        cmd.add_argument("--host", default="127.0.0.1")
        cmd.add_argument("--port", type=int, default=8000)
    demo.add_argument("--no-serve", action="store_true", help="only set up the demo and print it")

    tenant = sub.add_parser("tenant").add_subparsers(dest="action", required=True)
    tc = tenant.add_parser("create", help="create a tenant and print its secret key once")
    tc.add_argument("name")
    tc.add_argument("--json", action="store_true")

    key = sub.add_parser("key").add_subparsers(dest="action", required=True)
    kc = key.add_parser("create", help="create a publishable key for some origins")
    kc.add_argument("--tenant", required=True)
    kc.add_argument("--origin", action="append", required=True, help="repeat for several origins")
    kc.add_argument("--json", action="store_true")

    persona = sub.add_parser("persona").add_subparsers(dest="action", required=True)
    pi = persona.add_parser("import", help="create or update a persona from a YAML file")
    pi.add_argument("file", type=Path)
    pe = persona.add_parser("export", help="print a persona as YAML")
    pe.add_argument("slug")
    for cmd in (pi, pe):
        cmd.add_argument("--tenant", help="tenant id (default: the demo tenant)")

    guard = sub.add_parser("guard").add_subparsers(dest="action", required=True)
    gc = guard.add_parser("check", help="print the decision of a policy file on one text")
    gc.add_argument("text")
    gc.add_argument("--source", choices=["input", "output"], default="input")
    ge = guard.add_parser("eval", help="score a policy file on labelled cases (JSON lines); exit 1 on a failure")
    ge.add_argument("--cases", type=Path, required=True)
    ge.add_argument("--json", action="store_true")
    for cmd in (gc, ge):
        cmd.add_argument("--policy", type=Path, required=True, help="the policy, YAML or JSON")

    ex = sub.add_parser("export", help="write a tenant's analytics events (or conversations) to a file")
    ex.add_argument("--tenant", required=True)
    ex.add_argument("--format", choices=["csv", "jsonl", "parquet"], required=True)
    ex.add_argument("--out", type=Path, required=True, help="the file to write (replaced only once complete)")
    ex.add_argument("--level", choices=["event", "conversation"], default="event")
    ex.add_argument("--type", action="append", default=[], help="event type; repeat, or separate by commas")
    for name in EXPORT_FILTERS:
        ex.add_argument(f"--{name}", dest=f"filter_{name}")
    return p


async def _with_storage(settings: Settings, fn: Callable[[Storage], Awaitable[int]]) -> int:
    storage = await open_storage(settings.resolved_database_url)
    try:
        return await fn(storage)
    finally:
        await storage.close()


def _tenant_arg(settings: Settings, given: str | None) -> str:
    if given:
        return given
    demo = _read_demo(settings)
    if demo is None:
        raise WidgetError("--tenant is required (there is no demo tenant)")
    return str(demo["tenant_id"])


async def _require_tenant(storage: Storage, tenant_id: str) -> None:
    if await storage.get_tenant(tenant_id) is None:
        raise TenantNotFound(f"no tenant {tenant_id}")


async def cmd_tenant_create(settings: Settings, args: argparse.Namespace) -> int:
    async def run(storage: Storage) -> int:
        tenant_id, secret = await tenants.create_tenant(storage, args.name)
        if args.json:
            print(json.dumps({"tenant_id": tenant_id, "secret_key": secret}))
        else:
            print(f"tenant_id:  {tenant_id}\nsecret_key: {secret}\n(the secret key is shown only this once)")
        return 0
    return await _with_storage(settings, run)


async def cmd_key_create(settings: Settings, args: argparse.Namespace) -> int:
    async def run(storage: Storage) -> int:
        key, origins = await tenants.create_publishable_key(storage, args.tenant, args.origin)
        text = f"key:     {key}\norigins: {' '.join(origins)}"
        print(json.dumps({"key": key, "origins": origins}) if args.json else text)
        return 0
    return await _with_storage(settings, run)


async def cmd_persona_import(settings: Settings, args: argparse.Namespace) -> int:
    try:
        doc = yaml.safe_load(args.file.read_text())
    except OSError as exc:
        raise WidgetError(f"cannot read {args.file}: {exc.strerror or exc}") from exc
    except yaml.YAMLError as exc:
        raise WidgetError(f"cannot read {args.file}: {_yaml_problem(exc)}") from exc
    tenant_id = _tenant_arg(settings, args.tenant)

    async def run(storage: Storage) -> int:
        await _require_tenant(storage, tenant_id)
        try:
            persona = await personas.create(storage, tenant_id, doc)
            verb = "created"
        except SlugTaken as exc:  # the file names a persona that exists (its slug, or the slug of its name)
            persona = await personas.replace(storage, tenant_id, exc.details["slug"], doc, partial=False)
            verb = "updated"
        print(f"{verb} persona {persona['slug']} ({persona['id']})")
        return 0
    return await _with_storage(settings, run)


def _yaml_problem(exc: yaml.YAMLError) -> str:
    """A YAML error on one line: what is wrong, and where."""
    if isinstance(exc, yaml.MarkedYAMLError) and exc.problem_mark is not None:
        mark = exc.problem_mark
        return f"{exc.problem} (line {mark.line + 1}, column {mark.column + 1})"
    return " ".join(str(exc).split())


async def cmd_persona_export(settings: Settings, args: argparse.Namespace) -> int:
    tenant_id = _tenant_arg(settings, args.tenant)

    async def run(storage: Storage) -> int:
        await _require_tenant(storage, tenant_id)
        row = await personas.get(storage, tenant_id, args.slug)
        print(yaml.safe_dump({"slug": row["slug"], **row["doc"]}, sort_keys=False, allow_unicode=True), end="")
        return 0
    return await _with_storage(settings, run)


def _read_demo(settings: Settings) -> dict[str, Any] | None:
    path = Path(settings.data_dir) / "demo.json"
    return json.loads(path.read_text()) if path.exists() else None


async def ensure_demo(settings: Settings, origin: str) -> dict[str, Any]:
    """The demo tenant, persona and key; made once, then read back (the keys live in data_dir/demo.json)."""
    async def run(storage: Storage) -> dict[str, Any]:
        demo = _read_demo(settings)
        if demo and await storage.get_tenant(demo["tenant_id"]) is not None:
            if origin not in demo["origins"]:
                demo["publishable_key"], demo["origins"] = await tenants.create_publishable_key(
                    storage, demo["tenant_id"], [*demo["origins"], origin])
        else:
            tenant_id, secret = await tenants.create_tenant(storage, "Demo")
            pk, origins = await tenants.create_publishable_key(storage, tenant_id, [origin])
            demo = {"tenant_id": tenant_id, "secret_key": secret, "publishable_key": pk, "origins": origins}
        if await storage.get_persona(demo["tenant_id"], DEMO_PERSONA["slug"]) is None:
            await personas.create(storage, demo["tenant_id"], DEMO_PERSONA)
        demo.update(persona=DEMO_PERSONA["slug"], persona_name=DEMO_PERSONA["name"])
        path = Path(settings.data_dir) / "demo.json"
        path.touch(mode=0o600)
        path.write_text(json.dumps(demo, indent=2))
        return demo
    storage_result: dict[str, Any] = {}

    async def wrapped(storage: Storage) -> int:
        storage_result.update(await run(storage))
        return 0
    await _with_storage(settings, wrapped)
    return storage_result


def serve(settings: Settings, host: str, port: int) -> int:
    import uvicorn

    from widget_server.app import create_app
    from widget_server.logconfig import setup_logging

    setup_logging()
    # The app refuses frames over 16 KiB itself (an error frame, then 1009); the transport cuts far larger ones.
    uvicorn.run(create_app(settings), host=host, port=port, ws_max_size=4 * settings.max_frame_bytes,
                log_config=None, timeout_graceful_shutdown=10)
    return 0


def cmd_demo(settings: Settings, args: argparse.Namespace) -> int:
    origin = f"http://{'127.0.0.1' if args.host in ('0.0.0.0', '::') else args.host}:{args.port}"
    demo = asyncio.run(ensure_demo(settings, origin))
    print(f"""
widget_server demo
  demo page:        {origin}/
  API docs:         {origin}/openapi.json
  tenant_id:        {demo['tenant_id']}
  secret key:       {demo['secret_key']}
  publishable key:  {demo['publishable_key']}  (origins: {', '.join(demo['origins'])})
  persona:          {demo['persona']}
  provider:         {settings.provider}
  try:  curl -s {origin}/v1/personas/{demo['persona']}/prompt -H 'Authorization: Bearer {demo['secret_key']}' \\
             -H 'content-type: application/json' -d '{{"message": "When are you open?"}}'
""", flush=True)
    return 0 if args.no_serve else serve(settings, args.host, args.port)


async def cmd_export(settings: Settings, args: argparse.Namespace) -> int:
    """The same bytes as `GET /v1/analytics/export` (the same domain stream), with progress on a terminal."""
    params = {"format": args.format, "level": args.level, "type": ",".join(args.type),
              **{name: getattr(args, f"filter_{name}") or "" for name in EXPORT_FILTERS}}

    async def run(storage: Storage) -> int:
        await _require_tenant(storage, args.tenant)
        planned = await exports.begin(storage, await exports.parse_export(storage, args.tenant, params))
        total = await exports.count(storage, planned) if sys.stderr.isatty() else None
        written = [0, 0.0]  # rows, when the bar was last drawn

        def progress(rows: int) -> None:
            written[0] += rows
            if total is not None and (time.monotonic() - written[1] > 0.1 or written[0] >= total):
                written[1] = time.monotonic()
                share = written[0] / total if total else 1.0
                print(f"\r[{'#' * round(share * 30):<30}] {written[0]:,}/{total:,} rows", end="", file=sys.stderr)

        partial = args.out.with_name(args.out.name + ".partial")
        try:
            with partial.open("wb") as out:
                async for chunk in exports.stream(storage, planned, progress):
                    out.write(chunk)
            partial.replace(args.out)
        finally:
            partial.unlink(missing_ok=True)
            if total is not None:
                print(file=sys.stderr)
        print(f"exported {written[0]} {'conversations' if args.level == 'conversation' else 'events'} to {args.out}")
        return 0
    return await _with_storage(settings, run)


def cmd_guard_check(args: argparse.Namespace) -> int:
    decision = guard_eval.judge(guard_eval.load_policy(args.policy), args.text, args.source)
    print(f"{decision.action} {decision.reason or ''}".rstrip())
    if decision.action != "allow":
        print(decision.text)
    return 0


def cmd_guard_eval(args: argparse.Namespace) -> int:
    result = guard_eval.evaluate(guard_eval.load_policy(args.policy), guard_eval.read_cases(args.cases))
    print(json.dumps(result) if args.json else guard_eval.report(result))
    return 1 if result["failed"] else 0


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        if args.command == "guard":  # needs no settings: a policy file and texts
            return cmd_guard_check(args) if args.action == "check" else cmd_guard_eval(args)
        settings = Settings()
        if args.command == "serve":
            return serve(settings, args.host, args.port)
        if args.command == "demo":
            return cmd_demo(settings, args)
        handler = {("tenant", "create"): cmd_tenant_create, ("key", "create"): cmd_key_create,
                   ("persona", "import"): cmd_persona_import, ("persona", "export"): cmd_persona_export}
        if args.command == "export":
            return asyncio.run(cmd_export(settings, args))
        return asyncio.run(handler[(args.command, args.action)](settings, args))
    except WidgetError as exc:
        detail = exc.details.get("errors", [{}])[0] if exc.details.get("errors") else {}
        extra = f" ({detail.get('message')})" if detail.get("message") else ""
        print(" ".join(f"widget-server: error: {exc.message}{extra}".split()), file=sys.stderr)
        return 2 if isinstance(exc.status_code, int) and exc.status_code < 500 else 1
    except (ValueError, OSError) as exc:
        print(" ".join(f"widget-server: error: {exc}".split()), file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    raise SystemExit(main())
