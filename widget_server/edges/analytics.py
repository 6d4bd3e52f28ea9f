"""`/v1/analytics`: the event query (keyset cursor), a visitor's erasure, the tenant's retention period."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from widget_server.clock import now
from widget_server.domain.analytics import retention
from widget_server.domain.analytics.erasure import erase_visitor as erase
from widget_server.domain.analytics.query import (
    CURSOR_PATTERN,
    EVENT_TYPES,
    FILTERS,
    TIME_PATTERN,
    decode_cursor,
    encode_cursor,
    event_json,
    parse_filter,
)
from widget_server.edges.http import json_body, only_fields, query, tenant_of
from widget_server.edges.query_params import Limit, Param, declare, string
from widget_server.edges.state import app_state
from widget_server.errors import StorageUnavailable

_TIME = {"type": "string", "pattern": TIME_PATTERN}
_FILTERS = {p.name: p for p in (
    Param("type", {"type": "array", "items": {"enum": list(EVENT_TYPES)}}, "event types, separated by commas",
          comma_separated=True),
    string("persona", "persona id or slug"),
    string("conversation", "conversation id"),
    string("visitor", "visitor id"),
    Param("from", _TIME, "a date (midnight UTC) or a date-time (UTC when it has no offset), inclusive"),
    Param("to", _TIME, "the same, exclusive; later than from"),
)}
FILTER_PARAMS = tuple(_FILTERS[name] for name in FILTERS)  # the domain's filters, each with its schema
EVENTS_LIMIT = Limit(default=100, most=1000)
EVENTS = declare(*FILTER_PARAMS, Param("cursor", {"type": "string", "pattern": CURSOR_PATTERN},
                                       "next_cursor of the previous page"), EVENTS_LIMIT.param)


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
    params = query(request)
    filters = await parse_filter(storage, tenant_id, params)
    limit = EVENTS_LIMIT.of(params)
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
