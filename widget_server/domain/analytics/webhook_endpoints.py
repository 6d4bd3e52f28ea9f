"""A tenant's webhook endpoints: the rules for creating one (a safe URL, known event types, at most 20 per
tenant), its signing secret (derived, shown once), listing, deleting and its delivery attempts."""

from __future__ import annotations

import re
import secrets
from typing import Any

from widget_server.backends.storage import Storage
from widget_server.backends.storage.rows import Row
from widget_server.backends.storage.webhooks import WebhookLimit
from widget_server.clock import now
from widget_server.domain.analytics.destinations import UnsafeURL, parse_url, resolve
from widget_server.domain.analytics.query import EVENT_TYPES
from widget_server.domain.analytics.webhooks import WebhookDispatcher
from widget_server.errors import Conflict, InvalidRequest, WebhookInvalid, WebhookNotFound
from widget_server.ids import new_id

MAX_WEBHOOKS = 20
ATTEMPT_CURSOR = "^wha_[0-9a-z]{1,36}$"  # an attempt's id, as `next_cursor` gives it


def to_public(row: Row) -> dict[str, Any]:
    return {"id": row["id"], "url": row["url"], "event_types": row["event_types"],
            "created_at": row["created_at"].isoformat()}


async def create(storage: Storage, dispatcher: WebhookDispatcher, tenant_id: str, url: Any, event_types: Any,
                 *, allow_private: bool) -> dict[str, Any]:
    """The new webhook with its `secret`: the only time it is shown (it is derived on demand, never stored)."""
    row: Row = {"id": new_id("wh"), "tenant_id": tenant_id, "url": await checked_url(url, allow_private=allow_private),
                "event_types": checked_event_types(event_types), "salt": secrets.token_urlsafe(24),
                "created_at": now()}
    try:
        await storage.webhooks.create(row, most=MAX_WEBHOOKS)
    except WebhookLimit:
        raise Conflict(f"a tenant may have at most {MAX_WEBHOOKS} webhooks; delete one first",
                       code="webhook.limit_reached") from None
    return {**to_public(row), "secret": dispatcher.secret_for(row["id"], row["salt"])}


async def delete(storage: Storage, tenant_id: str, webhook_id: str) -> None:
    if not await storage.webhooks.delete(tenant_id, webhook_id):
        raise WebhookNotFound("no such webhook")


async def attempts(storage: Storage, tenant_id: str, webhook_id: str, limit: int,
                   cursor: str | None) -> dict[str, Any]:
    """A page of delivery attempts, newest first; `cursor` is the `next_cursor` of the previous page."""
    if await storage.webhooks.get(tenant_id, webhook_id) is None:
        raise WebhookNotFound("no such webhook")
    if cursor is not None and not re.fullmatch(ATTEMPT_CURSOR, cursor):
        raise InvalidRequest("cursor is not one this API returned", code="query.invalid",
                             details={"param": "cursor"})
    rows = await storage.webhooks.list_attempts(tenant_id, webhook_id, limit=limit, before=cursor)
    return {"data": [_attempt(r) for r in rows], "next_cursor": rows[-1]["id"] if rows else None,
            "has_more": len(rows) == limit}


def _attempt(row: Row) -> dict[str, Any]:
    keys = ("id", "webhook_id", "event_id", "event_type", "attempt", "outcome", "status_code", "error", "duration_ms")
    return {**{k: row[k] for k in keys}, "created_at": row["created_at"].isoformat()}


async def checked_url(value: Any, *, allow_private: bool) -> str:
    if not isinstance(value, str):
        raise _invalid("url", "must be a string")
    try:
        await resolve(parse_url(value), allow_private=allow_private)
    except UnsafeURL as exc:
        raise _invalid("url", str(exc)) from None
    return value


def checked_event_types(value: Any) -> list[str]:
    """A non-empty list of known event types, or `["*"]` for all of them."""
    if not isinstance(value, list) or not value or not all(isinstance(t, str) for t in value):
        raise _invalid("event_types", 'must be a non-empty list of event types, or ["*"]')
    for name in value:
        if name != "*" and name not in EVENT_TYPES:
            raise _invalid("event_types", f"unknown event type {name[:40]!r}; types are {', '.join(EVENT_TYPES)}")
    return ["*"] if "*" in value else sorted(set(value))


def _invalid(field: str, message: str) -> WebhookInvalid:
    return WebhookInvalid(f"{field} {message}", details={"errors": [{"field": field, "message": message}]})
