"""`/v1/analytics`: the event query (keyset cursor), a visitor's erasure, the tenant's retention period."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from widget_server.backends.storage.engine import now
from widget_server.domain.analytics.query import (
    decode_cursor,
    encode_cursor,
    event_json,
    parse_filter,
    parse_limit,
)
from widget_server.domain.analytics.writer import EventWriter
from widget_server.edges.http import deps, json_body, only_fields, tenant_of
from widget_server.errors import InvalidRequest, StorageUnavailable


def writer(request: Request) -> EventWriter:
    return request.state.writer  # type: ignore[no-any-return]


async def list_events(request: Request) -> Response:
    """Oldest first. `next_cursor` is always set: polling it later returns only events committed since."""
    tenant_id = await tenant_of(request)
    storage = deps(request).storage
    params = request.query_params
    filters = await parse_filter(storage, tenant_id, params)
    limit = parse_limit(params.get("limit"))
    after = decode_cursor(params["cursor"]) if params.get("cursor") else 0
    rows = await storage.events.page(tenant_id, filters, after=after, limit=limit)
    cursor = encode_cursor(rows[-1]["seq"] if rows else after)
    return JSONResponse({"data": [event_json(r) for r in rows], "next_cursor": cursor,
                         "has_more": len(rows) == limit})


async def erase_visitor(request: Request) -> Response:
    """Everything of one visitor goes, in one transaction, including events not yet written."""
    tenant_id = await tenant_of(request)
    visitor_id = request.path_params["visitor_id"]
    w = writer(request)
    try:
        await w.flush()  # so that no event of theirs is committed after the delete below
    except Exception as exc:
        raise StorageUnavailable("the database is unavailable; nothing was erased") from exc
    pending = w.forget(tenant_id, visitor_id)
    counts = await deps(request).storage.events.erase_visitor(tenant_id, visitor_id)
    counts["events"] += pending
    return JSONResponse({"visitor_id": visitor_id, "deleted": counts})


async def get_retention(request: Request) -> Response:
    tenant_id = await tenant_of(request)
    days = await deps(request).storage.events.get_retention(tenant_id)
    return JSONResponse(_retention(request, days))


async def put_retention(request: Request) -> Response:
    tenant_id = await tenant_of(request)
    body = only_fields(await json_body(request), {"retention_days"}, {"retention_days"})
    days = body["retention_days"]
    if days is not None and (not isinstance(days, int) or isinstance(days, bool) or not 1 <= days <= 36500):
        raise InvalidRequest("retention_days must be null or an integer from 1 to 36500",
                             details={"errors": [{"field": "retention_days", "message": "out of range"}]})
    await deps(request).storage.events.set_retention(tenant_id, days, now())
    return JSONResponse(_retention(request, days))


def _retention(request: Request, days: int | None) -> dict[str, Any]:
    """`retention_days` null means the server's default applies (`effective_days`; null there: kept until erased)."""
    default = deps(request).settings.retention_days
    return {"retention_days": days, "effective_days": days or default}
