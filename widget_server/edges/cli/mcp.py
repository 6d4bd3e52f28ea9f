"""`widget-server mcp --tenant ID`: the MCP server over stdio, for an MCP host that starts it as a command.

It serves one tenant, named on the command line (whoever may start the command may read the database anyway), with
the same tools as `/mcp`, in this process: the database and providers of the settings, as `widget-server test` runs
them. Standard output carries the protocol alone: logs go to standard error.
"""

from __future__ import annotations

import argparse
from typing import Any

from widget_server.edges.cli.common import require_tenant, tenant_arg
from widget_server.edges.cli.suites import local_deps
from widget_server.edges.mcp_server import Caller, build
from widget_server.logconfig import setup_logging
from widget_server.settings import Settings


def add_parser(sub: Any) -> None:
    """The `mcp` command's arguments, on the command line's subparsers."""
    m = sub.add_parser("mcp", help="serve the tenant's personas to an MCP host over stdio")
    m.add_argument("--tenant", help="the tenant whose personas are served (default: the demo tenant)")


async def cmd_mcp(settings: Settings, args: argparse.Namespace) -> int:
    setup_logging("WARNING")  # before the SDK's own logging setup, which would otherwise take the root logger
    tenant_id = tenant_arg(settings, args.tenant)
    async with local_deps(settings) as deps:
        await require_tenant(deps.storage, tenant_id)
        caller = Caller(deps, tenant_id)
        await build(lambda ctx: caller).run_stdio_async()
    return 0
