"""`widget-server`: serve, the demo, tenants, keys, console users, persona files, guardrail checks, exports,
test suites, the MCP server over stdio.

One-line errors on stderr and non-zero exit codes: 2 for bad arguments or input, 1 for other failures.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path
from typing import NoReturn

from widget_server.edges.cli import commands, demo, export, guard, mcp, people, serve, suites, users
from widget_server.edges.cli.export import EXPORT_FILTERS
from widget_server.errors import WidgetError
from widget_server.settings import Settings


class Parser(argparse.ArgumentParser):
    """Bad arguments get one line on stderr (no usage dump) and exit status 2; subcommands inherit this."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"widget-server: error: {message} (see {self.prog} --help)\n")


def _parser() -> argparse.ArgumentParser:
    p = Parser(prog="widget-server", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)
    serve_cmd = sub.add_parser("serve", help="run the server")
    demo_cmd = sub.add_parser("demo", help="create the demo tenant, persona and key (idempotent), then serve")
    for cmd in (serve_cmd, demo_cmd):
        cmd.add_argument("--host", default="127.0.0.1")
        cmd.add_argument("--port", type=int, default=8000)
        cmd.add_argument("--workers", type=int, default=1,
                         help="worker processes on this port (above 1 needs WIDGET_REDIS_URL; default 1)")
    demo_cmd.add_argument("--no-serve", action="store_true", help="only set up the demo and print it")

    tenant = sub.add_parser("tenant").add_subparsers(dest="action", required=True)
    tc = tenant.add_parser("create", help="create a tenant and print its secret key once")
    tc.add_argument("name")
    tc.add_argument("--json", action="store_true")

    key = sub.add_parser("key").add_subparsers(dest="action", required=True)
    kc = key.add_parser("create", help="create a publishable key for some origins")
    kc.add_argument("--tenant", required=True)
    kc.add_argument("--origin", action="append", help="an allowed origin of a publishable key; repeat for several")
    kc.add_argument("--kind", choices=["publishable", "secret"], help="default: publishable with --origin, else secret")
    kc.add_argument("--persona-quota", type=int, help="GET /v1/persona requests a month (default: the server's)")
    kc.add_argument("--json", action="store_true")
    kl = key.add_parser("list", help="the tenant's keys (never the keys themselves), active or ended")
    kr = key.add_parser("rotate", help="a new key like KEY_ID; the old one works --grace seconds more")
    kr.add_argument("key_id")
    kr.add_argument("--grace", type=int, default=86400, help="seconds the old key keeps working (default a day)")
    kv = key.add_parser("revoke", help="KEY_ID stops working now")
    kv.add_argument("key_id")
    for cmd in (kl, kr, kv):
        cmd.add_argument("--tenant", required=True)
        cmd.add_argument("--json", action="store_true")

    user = sub.add_parser("user", help="console users: the people of a tenant who sign in to /console")
    user_sub = user.add_subparsers(dest="action", required=True)
    uc = user_sub.add_parser("create", help="create a console user; prints a generated password once")
    uc.add_argument("email")
    uc.add_argument("--role", choices=["owner", "agent", "viewer"], default="owner",
                    help="owner: everything; agent: conversations; viewer: read only (default: owner)")
    uc.add_argument("--password-stdin", action="store_true", help="read the password from the first line of stdin")
    user_sub.add_parser("list", help="the tenant's console users")
    ud = user_sub.add_parser("delete", help="delete a console user (by id or e-mail); their sessions end")
    ud.add_argument("user")
    for cmd in user_sub.choices.values():
        cmd.add_argument("--tenant", required=True)
        cmd.add_argument("--json", action="store_true")

    ident = sub.add_parser("identity", help="identity verification: user.hash = HMAC-SHA256(secret, user.id)")
    ident_sub = ident.add_subparsers(dest="action", required=True)
    ident_sub.add_parser("show", help="whether verified users are required, and whether a secret is set")
    ident_sub.add_parser("rotate", help="make a new identity secret (printed once); the old one stops verifying")
    ir = ident_sub.add_parser("require", help="require a verified user for every widget session, or not")
    ir.add_argument("state", choices=["on", "off"])
    for cmd in ident_sub.choices.values():
        cmd.add_argument("--tenant", required=True)
        cmd.add_argument("--json", action="store_true")

    persona = sub.add_parser("persona").add_subparsers(dest="action", required=True)
    pi = persona.add_parser("import", help="create or update a persona from a YAML file")
    pi.add_argument("file", type=Path)
    pe = persona.add_parser("export", help="print a persona as YAML")
    pe.add_argument("slug")
    for cmd in (pi, pe):
        cmd.add_argument("--tenant", help="tenant id (default: the demo tenant)")
    people.add_parser(persona)

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
    suites.add_parser(sub)
    mcp.add_parser(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        if args.command == "guard":  # needs no settings: a policy file and texts
            return guard.cmd_guard_check(args) if args.action == "check" else guard.cmd_guard_eval(args)
        if (args.command, getattr(args, "action", None)) == ("persona", "generate"):  # the generator needs no database
            return people.cmd_persona_generate(args)
        settings = Settings()
        if args.command == "serve":
            return serve.serve(settings, args.host, args.port, args.workers)
        if args.command == "demo":
            return demo.cmd_demo(settings, args)
        if args.command == "test":
            return suites.cmd_test(settings, args)
        handler = {("tenant", "create"): commands.cmd_tenant_create, ("key", "create"): commands.cmd_key_create,
                   ("key", "list"): commands.cmd_key_list, ("key", "rotate"): commands.cmd_key_rotate,
                   ("key", "revoke"): commands.cmd_key_revoke, ("persona", "import"): commands.cmd_persona_import,
                   ("persona", "export"): commands.cmd_persona_export,
                   ("user", "create"): users.cmd_user_create, ("user", "list"): users.cmd_user_list,
                   ("user", "delete"): users.cmd_user_delete,
                   **{("identity", a): commands.cmd_identity for a in ("show", "rotate", "require")}}
        if args.command == "export":
            return asyncio.run(export.cmd_export(settings, args))
        if args.command == "mcp":
            return asyncio.run(mcp.cmd_mcp(settings, args))
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

