"""`export`: the same bytes as `GET /v1/analytics/export`, to a file, with progress on a terminal."""

from __future__ import annotations

import argparse
import sys
import time

from widget_server.backends.storage import Storage
from widget_server.domain.analytics import export as exports
from widget_server.edges.cli.common import require_tenant, with_storage
from widget_server.settings import Settings

EXPORT_FILTERS = ("persona", "conversation", "visitor", "from", "to")


async def cmd_export(settings: Settings, args: argparse.Namespace) -> int:
    """The same bytes as `GET /v1/analytics/export` (the same domain stream), with progress on a terminal."""
    params = {"format": args.format, "level": args.level, "type": ",".join(args.type),
              **{name: getattr(args, f"filter_{name}") or "" for name in EXPORT_FILTERS}}

    async def run(storage: Storage) -> int:
        await require_tenant(storage, args.tenant)
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
    return await with_storage(settings, run)
