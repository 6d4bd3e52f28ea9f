"""`GET /v1/analytics/export`: a streamed file of events (or one row per conversation)."""

from __future__ import annotations

from collections.abc import Mapping

from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from widget_server.clock import now
from widget_server.domain.analytics import export as exports
from widget_server.edges.analytics import FILTER_PARAMS, settle
from widget_server.edges.http import query, tenant_of
from widget_server.edges.query_params import Param, declare
from widget_server.edges.state import app_state

EXPORT = declare(*FILTER_PARAMS,
                 Param("format", {"enum": list(exports.MEDIA_TYPES), "default": "jsonl"}, "the file's format"),
                 Param("level", {"enum": list(exports.LEVELS), "default": "event"},
                       "event: one row per event; conversation: one row per conversation (then without type)"))


async def export(request: Request) -> Response:
    return await streamed(request, await tenant_of(request), query(request))


async def streamed(request: Request, tenant_id: str, params: Mapping[str, str]) -> Response:
    """The export of `params` (the declared ones of `EXPORT`) for `tenant_id`, as an attachment: the REST endpoint's
    and the console's download. Errors come before the first byte; once streaming, a failure cuts the connection (no
    truncated file that looks whole: the chunked body is left unterminated). Paced by `WIDGET_EXPORT_PACE`, so that
    live conversations in this process keep their time to first token (bench/analytics.py); the CLI is not paced."""
    state = app_state(request)
    storage = state.deps.storage
    planned = await exports.parse_export(storage, tenant_id, params)
    await settle(request)
    planned = await exports.begin(storage, planned)
    headers = {"Content-Disposition": f'attachment; filename="{planned.filename(now())}"',
               "X-Export-Schema": planned.schema.name, "Cache-Control": "no-store"}
    body = exports.stream(storage, planned, pace=state.settings.export_pace)
    return StreamingResponse(body, media_type=planned.media_type, headers=headers)
