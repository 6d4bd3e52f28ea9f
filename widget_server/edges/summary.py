"""`GET /v1/analytics/summary`: aggregates of one snapshot of events, as JSON."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from widget_server.domain.analytics.summary import parse_summary, summarize
from widget_server.edges.analytics import FILTER_PARAMS, settle
from widget_server.edges.http import query, tenant_of
from widget_server.edges.query_params import declare
from widget_server.edges.state import app_state

SUMMARY = declare(*(p for p in FILTER_PARAMS if p.name != "type"))  # it counts every type of event


async def summary(request: Request) -> Response:
    tenant_id = await tenant_of(request)
    storage = app_state(request).deps.storage
    filters = await parse_summary(storage, tenant_id, query(request))
    await settle(request)
    return JSONResponse(await summarize(storage, tenant_id, filters))
