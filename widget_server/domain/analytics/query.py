"""Reading events back: filters from query parameters, the keyset cursor, and the one JSON shape of an event.

The API, the JSONL export and the CLI all use `event_json`, so an export parses back to what the query returns.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Mapping
from datetime import UTC, date, datetime
from typing import Any

from widget_server.backends.storage import Storage
from widget_server.backends.storage.analytics import EventFilter
from widget_server.errors import InvalidRequest

EXPORT_SCHEMA = "widget_server.events/1"
EVENT_TYPES = ("conversation.started", "message.received", "reply.completed", "guardrail.triggered",
               "escalation.triggered", "escalation.claimed", "escalation.released", "escalation.resolved",
               "escalation.closed", "escalation.unanswered", "agent.message", "feedback.submitted", "widget.opened",
               "widget.closed", "error")
COLUMNS = ("id", "ts", "tenant_id", "persona_id", "conversation_id", "visitor_id", "channel", "type",
           "schema_version", "attributes")
FILTERS = ("type", "persona", "conversation", "visitor", "from", "to")


def event_json(row: Mapping[str, Any]) -> dict[str, Any]:
    """An event as the API shows it: the columns of DESIGN.md, `ts` in ISO 8601 UTC with microseconds."""
    ts: datetime = row["ts"]
    return {**{c: row[c] for c in COLUMNS}, "ts": ts.astimezone(UTC).isoformat(timespec="microseconds")}


# The times `from` and `to` accept, as one regular expression that the OpenAPI document repeats: a calendar date
# (years 0001 to 9999, February 29 in leap years only), optionally followed by a time and an offset. Every string
# it matches parses, so the document promises exactly what the parser takes. ASCII digits only ([0-9], never \d,
# which in Python also matches other scripts' digits), and matched whole.
_LEAP_YEAR = "(?:[0-9]{2}(?:0[48]|[2468][048]|[13579][26])|(?:0[48]|[2468][048]|[13579][26])00)"
_DAY = ("(?:(?!0000)[0-9]{4}-(?:(?:0[13578]|1[02])-(?:0[1-9]|[12][0-9]|3[01])|(?:0[469]|11)-(?:0[1-9]|[12][0-9]|30)"
        f"|02-(?:0[1-9]|1[0-9]|2[0-8]))|{_LEAP_YEAR}-02-29)")
_HOUR = "(?:[01][0-9]|2[0-3])"
_TIME = f"[Tt]{_HOUR}:[0-5][0-9](?::[0-5][0-9](?:[.][0-9]{{1,9}})?)?(?:[Zz]|[+-]{_HOUR}:[0-5][0-9])?"
TIME_PATTERN = f"^{_DAY}(?:{_TIME})?$"
_TIME_RE = re.compile(TIME_PATTERN)
_FRACTION = re.compile("[.]([0-9]+)")


def parse_time(name: str, value: str) -> datetime:
    """`2026-11-22` (midnight UTC), `2026-11-22T10:00:00Z`, with an offset, or without one (UTC)."""
    if not _TIME_RE.fullmatch(value):
        raise InvalidRequest(f"{name} must be a date (2026-11-22) or a date-time (2026-11-22T10:00:00Z), "
                             f"got {value[:40]!r}", code="query.invalid", details={"param": name})
    if len(value) == 10:
        return _day(value)
    micro = _FRACTION.sub(lambda m: "." + m[1][:6], value.upper())  # nanoseconds given: microseconds kept
    parsed = datetime.fromisoformat(micro)
    if parsed.tzinfo is None:
        return parsed.replace(tzinfo=UTC)
    try:
        return parsed.astimezone(UTC)
    except OverflowError:  # an offset reaching past year 1 or 9999, where no event is
        return datetime.min.replace(tzinfo=UTC) if parsed.year == 1 else datetime.max.replace(tzinfo=UTC)


def _day(value: str) -> datetime:
    d = date.fromisoformat(value)
    return datetime(d.year, d.month, d.day, tzinfo=UTC)


async def parse_filter(storage: Storage, tenant_id: str, params: Mapping[str, str]) -> EventFilter:
    """Filters from query parameters (`type` may be comma-separated; `persona` is an id or a slug)."""
    types = tuple(params["type"].split(",")) if params.get("type") else ()
    unknown = [t for t in types if t not in EVENT_TYPES]
    if unknown:
        raise InvalidRequest(f"unknown event type {unknown[0][:40]!r}; types are {', '.join(EVENT_TYPES)}",
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


# A cursor is "e1:<seq>" in unpadded URL-safe base64, and this is exactly the set of such strings for a seq of
# 1 to 18 digits: three digits make four characters (the first two say which digit each byte is, the others
# follow), and one or two digits left over make two or three.
_THREE_DIGITS = "(?:[MN][DTjz]|O[DT])[AEIMQUYcgk][w-z0-5]"
_LEFT_OVER = "(?:[MN][AQgw]|O[AQ]|(?:[MN][DTjz]|O[DT])[AEIMQUYcgk])"
CURSOR_PATTERN = f"^ZTE6(?:{_THREE_DIGITS}){{0,5}}(?:{_THREE_DIGITS}|{_LEFT_OVER})$"
_CURSOR_RE = re.compile(CURSOR_PATTERN)


def encode_cursor(seq: int) -> str:
    return base64.urlsafe_b64encode(f"e1:{seq}".encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> int:
    if not _CURSOR_RE.fullmatch(cursor):
        raise InvalidRequest("cursor is not one this API returned", code="query.invalid",
                             details={"param": "cursor"})
    return int(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()[3:])


def parse_limit(value: str | None, default: int = 100, most: int = 1000) -> int:
    """A page size given as decimal digits, from 1 to `most`; `default` when none is given."""
    if value is None:
        return default
    if not (value.isascii() and value.isdigit() and len(value.lstrip("0")) <= 9 and 1 <= int(value) <= most):
        raise InvalidRequest(f"limit must be an integer from 1 to {most}", code="query.invalid",
                             details={"param": "limit"})
    return int(value)
