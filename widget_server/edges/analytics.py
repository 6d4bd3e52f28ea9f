"""`/v1/analytics`: the event query (keyset cursor), a visitor's erasure, the tenant's retention period."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from widget_server.clock import now
from widget_server.domain.analytics import retention
from widget_server.domain.analytics.erasure import erase_visitor as erase
from widget_server.domain.analytics.query import decode_cursor, encode_cursor, event_json, parse_filter, parse_limit
from widget_server.edges.http import json_body, only_fields, tenant_of
from widget_server.edges.state import app_state
from widget_server.errors import StorageUnavailable


async def settle(request: Request) -> None:
    """Write the events still in the writer's buffer, so the answer includes everything before the request."""
    try:
        await app_state(request).writer.flush()
    except Exception as exc:
        raise StorageUnavailable("the database is unavailable") from exc


async def list_events(request: Request) -> Response:
    """Oldest first. `next_cursor` is always set: polling it later returns only events committed since."""
    tenant_id = await tenant_of(request)
    storage = app_state(request).deps.storage
    params = request.query_params
    filters = await parse_filter(storage, tenant_id, params)
    limit = parse_limit(params.get("limit"))
    after = decode_cursor(params["cursor"]) if params.get("cursor") else 0
    rows = await storage.events.page(tenant_id, filters, after=after, limit=limit)
    cursor = encode_cursor(rows[-1]["seq"] if rows else after)
    return JSONResponse({"data": [event_json(r) for r in rows], "next_cursor": cursor,
                         "has_more": len(rows) == limit})


async def erase_visitor(request: Request) -> Response:
    tenant_id = await tenant_of(request)
    state = app_state(request)
    visitor_id = request.path_params["visitor_id"]
    counts = await erase(state.deps.storage, state.writer, tenant_id, visitor_id)
    return JSONResponse({"visitor_id": visitor_id, "deleted": counts})


async def get_retention(request: Request) -> Response:
    tenant_id = await tenant_of(request)
    state = app_state(request)
    days = await state.deps.storage.events.get_retention(tenant_id)
    return JSONResponse(retention.view(days, state.settings.retention_days))


async def put_retention(request: Request) -> Response:
    tenant_id = await tenant_of(request)
    state = app_state(request)
    body = only_fields(await json_body(request), {"retention_days"}, {"retention_days"})
    days = retention.checked_days(body["retention_days"])
    await state.deps.storage.events.set_retention(tenant_id, days, now())
    return JSONResponse(retention.view(days, state.settings.retention_days))
