"""Reading events back: filters from query parameters, the keyset cursor, and the one JSON shape of an event.

The API, the JSONL export and the CLI all use `event_json`, so an export parses back to what the query returns.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from datetime import UTC, date, datetime
from typing import Any

from widget_server.backends.storage import Storage
from widget_server.backends.storage.analytics import EventFilter
from widget_server.errors import InvalidRequest

EXPORT_SCHEMA = "widget_server.events/1"
EVENT_TYPES = ("conversation.started", "message.received", "reply.completed", "guardrail.triggered",
               "escalation.triggered", "escalation.resolved", "feedback.submitted", "widget.opened", "widget.closed",
               "error")
COLUMNS = ("id", "ts", "tenant_id", "persona_id", "conversation_id", "visitor_id", "channel", "type",
           "schema_version", "attributes")
FILTERS = ("type", "persona", "conversation", "visitor", "from", "to")


def event_json(row: Mapping[str, Any]) -> dict[str, Any]:
    """An event as the API shows it: the columns of DESIGN.md, `ts` in ISO 8601 UTC with microseconds."""
    ts: datetime = row["ts"]
    return {**{c: row[c] for c in COLUMNS}, "ts": ts.astimezone(UTC).isoformat(timespec="microseconds")}


def parse_time(name: str, value: str) -> datetime:
    """`2026-11-22`, `2026-11-22T10:00:00Z` or with an offset; without a zone it is UTC."""
    try:
        parsed = datetime.fromisoformat(value) if "T" in value or " " in value else _day(value)
    except ValueError:
        raise InvalidRequest(f"{name} must be an ISO 8601 date or date-time, got {value[:40]!r}",
                             code="query.invalid", details={"param": name}) from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _day(value: str) -> datetime:
    d = date.fromisoformat(value)
    return datetime(d.year, d.month, d.day, tzinfo=UTC)


async def parse_filter(storage: Storage, tenant_id: str, params: Mapping[str, str]) -> EventFilter:
    """Filters from query parameters (`type` may be comma-separated; `persona` is an id or a slug)."""
    types = tuple(t for t in (params.get("type") or "").split(",") if t)
    unknown = [t for t in types if t not in EVENT_TYPES]
    if unknown:
        raise InvalidRequest(f"unknown event type {unknown[0]!r}; types are {', '.join(EVENT_TYPES)}",
                             code="query.invalid", details={"param": "type"})
    persona_id = None
    if ref := params.get("persona"):
        row = await storage.get_persona(tenant_id, ref)
        persona_id = row["id"] if row else ref  # an erased or unknown persona simply matches nothing
    ts_from = parse_time("from", params["from"]) if params.get("from") else None
    ts_to = parse_time("to", params["to"]) if params.get("to") else None
    if ts_from and ts_to and ts_to <= ts_from:
        raise InvalidRequest("to must be later than from", code="query.invalid", details={"param": "to"})
    return EventFilter(types, persona_id, params.get("conversation") or None, params.get("visitor") or None,
                       ts_from, ts_to)


def encode_cursor(seq: int) -> str:
    return base64.urlsafe_b64encode(f"e1:{seq}".encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> int:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        prefix, _, seq = raw.partition(":")
        if prefix != "e1" or not seq.isascii() or not seq.isdigit() or len(seq) > 18:  # a BIGINT holds 18 digits
            raise ValueError(raw)
        return int(seq)
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise InvalidRequest("cursor is not one this API returned", code="query.invalid",
                             details={"param": "cursor"}) from None


def parse_limit(value: str | None, default: int = 100, most: int = 1000) -> int:
    try:
        limit = int(value) if value is not None else default
    except ValueError:
        limit = 0
    if not 1 <= limit <= most:
        raise InvalidRequest(f"limit must be an integer from 1 to {most}", code="query.invalid",
                             details={"param": "limit"})
    return limit
