"""`/v1/webhooks`: a tenant's webhook endpoints (the signing secret is shown once, at creation) and their attempts."""

from __future__ import annotations

import secrets
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from widget_server.backends.storage.rows import Row, now
from widget_server.backends.storage.webhooks import WebhookLimit
from widget_server.domain.analytics.destinations import UnsafeURL, parse_url, resolve
from widget_server.domain.analytics.query import EVENT_TYPES, parse_limit
from widget_server.domain.analytics.webhooks import WebhookDispatcher
from widget_server.edges.http import deps, json_body, only_fields, tenant_of
from widget_server.errors import Conflict, InvalidRequest, WebhookInvalid, WebhookNotFound
from widget_server.ids import new_id

MAX_WEBHOOKS = 20


def dispatcher(request: Request) -> WebhookDispatcher:
    return request.state.webhooks  # type: ignore[no-any-return]


def to_public(row: Row) -> dict[str, Any]:
    return {"id": row["id"], "url": row["url"], "event_types": row["event_types"],
            "created_at": row["created_at"].isoformat()}


async def list_webhooks(request: Request) -> Response:
    tenant_id = await tenant_of(request)
    rows = await deps(request).storage.webhooks.for_tenant(tenant_id)
    return JSONResponse({"data": [to_public(r) for r in rows]})


async def create_webhook(request: Request) -> Response:
    """201 with `secret`: the only time it is shown (it is derived on demand, never stored)."""
    tenant_id = await tenant_of(request)
    body = only_fields(await json_body(request), {"url", "event_types"}, {"url"})
    url = await _checked_url(body["url"], allow_private=deps(request).settings.webhook_allow_private)
    row: Row = {"id": new_id("wh"), "tenant_id": tenant_id, "url": url,
           "event_types": _event_types(body.get("event_types", ["*"])), "salt": secrets.token_urlsafe(24),
           "created_at": now()}
    try:
        await deps(request).storage.webhooks.create(row, most=MAX_WEBHOOKS)
    except WebhookLimit:
        raise Conflict(f"a tenant may have at most {MAX_WEBHOOKS} webhooks; delete one first",
                       code="webhook.limit_reached") from None
    secret = dispatcher(request).secret_for(row["id"], row["salt"])
    return JSONResponse({**to_public(row), "secret": secret}, status_code=201,
                        headers={"Location": f"/v1/webhooks/{row['id']}"})


async def delete_webhook(request: Request) -> Response:
    tenant_id = await tenant_of(request)
    if not await deps(request).storage.webhooks.delete(tenant_id, request.path_params["id"]):
        raise WebhookNotFound("no such webhook")
    return Response(status_code=204)


async def list_attempts(request: Request) -> Response:
    """Newest first; `cursor` is the `next_cursor` of the previous page."""
    tenant_id = await tenant_of(request)
    storage = deps(request).storage
    webhook_id = request.path_params["id"]
    if await storage.webhooks.get(tenant_id, webhook_id) is None:
        raise WebhookNotFound("no such webhook")
    limit = parse_limit(request.query_params.get("limit"), default=50, most=500)
    cursor = request.query_params.get("cursor") or None
    if cursor is not None and not (cursor.startswith("wha_") and len(cursor) <= 40):
        raise InvalidRequest("cursor is not one this API returned", code="query.invalid",
                             details={"param": "cursor"})
    rows = await storage.webhooks.list_attempts(tenant_id, webhook_id, limit=limit, before=cursor)
    return JSONResponse({"data": [_attempt(r) for r in rows], "next_cursor": rows[-1]["id"] if rows else None,
                         "has_more": len(rows) == limit})


def _attempt(row: Row) -> dict[str, Any]:
    keys = ("id", "webhook_id", "event_id", "event_type", "attempt", "outcome", "status_code", "error", "duration_ms")
    return {**{k: row[k] for k in keys}, "created_at": row["created_at"].isoformat()}


async def _checked_url(value: Any, *, allow_private: bool) -> str:
    if not isinstance(value, str):
        raise _invalid("url", "must be a string")
    try:
        await resolve(parse_url(value), allow_private=allow_private)
    except UnsafeURL as exc:
        raise _invalid("url", str(exc)) from None
    return value


def _event_types(value: Any) -> list[str]:
    """A non-empty list of known event types, or `["*"]` for all of them."""
    if not isinstance(value, list) or not value or not all(isinstance(t, str) for t in value):
        raise _invalid("event_types", 'must be a non-empty list of event types, or ["*"]')
    for name in value:
        if name != "*" and name not in EVENT_TYPES:
            raise _invalid("event_types", f"unknown event type {name[:40]!r}; types are {', '.join(EVENT_TYPES)}")
    return ["*"] if "*" in value else sorted(set(value))


def _invalid(field: str, message: str) -> WebhookInvalid:
    return WebhookInvalid(f"{field} {message}", details={"errors": [{"field": field, "message": message}]})
