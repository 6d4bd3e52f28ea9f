"""`/v1/analytics/export` (a streamed file) and `/v1/analytics/summary` (JSON aggregates)."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse

from widget_server.backends.storage.rows import now
from widget_server.domain.analytics import export as exports
from widget_server.domain.analytics.summary import parse_summary, summarize
from widget_server.edges.http import deps, tenant_of
from widget_server.errors import StorageUnavailable


async def _settle(request: Request) -> None:
    """Write the events still in the writer's buffer, so the answer includes everything before the request."""
    try:
        await request.state.writer.flush()
    except Exception as exc:
        raise StorageUnavailable("the database is unavailable") from exc


async def export(request: Request) -> Response:
    """Errors come as JSON before the first byte; once streaming, a failure cuts the connection (no truncated
    file that looks whole: the chunked body is left unterminated). Paced by `WIDGET_EXPORT_PACE`, so that live
    conversations in this process keep their time to first token (bench/analytics.py); the CLI is not paced."""
    tenant_id = await tenant_of(request)
    storage = deps(request).storage
    planned = await exports.parse_export(storage, tenant_id, request.query_params)
    await _settle(request)
    planned = await exports.begin(storage, planned)
    headers = {"Content-Disposition": f'attachment; filename="{planned.filename(now())}"',
               "X-Export-Schema": planned.schema.name, "Cache-Control": "no-store"}
    body = exports.stream(storage, planned, pace=deps(request).settings.export_pace)
    return StreamingResponse(body, media_type=planned.media_type, headers=headers)


async def summary(request: Request) -> Response:
    tenant_id = await tenant_of(request)
    storage = deps(request).storage
    filters = await parse_summary(storage, tenant_id, request.query_params)
    await _settle(request)
    return JSONResponse(await summarize(storage, tenant_id, filters))
