"""`GET /v1/analytics/summary`: a tenant's figures over a time range, from one consistent set of events."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, date, timedelta
from typing import Any

from widget_server.backends.storage import Storage
from widget_server.backends.storage.aggregates import takeover_figures
from widget_server.backends.storage.analytics import EventFilter
from widget_server.domain.analytics.query import parse_filter
from widget_server.errors import InvalidRequest


async def parse_summary(storage: Storage, tenant_id: str, params: Mapping[str, str]) -> EventFilter:
    """`from`, `to`, `persona` (and `visitor`, `conversation`); `type` is refused: the summary covers every type."""
    if params.get("type"):
        raise InvalidRequest("type does not apply to the summary (it counts every type of event)",
                             code="query.invalid", details={"param": "type"})
    return await parse_filter(storage, tenant_id, params)


async def summarize(storage: Storage, tenant_id: str, filters: EventFilter, *,
                    ttft_per_day: bool = False, tokens: bool = True, from_events: bool = False) -> dict[str, Any]:
    """Conversations and messages per UTC day, time to first token p50/p95 (ms), tokens in and out, guardrail
    triggers by reason, escalations and their takeover by people (`takeover_figures`), feedback (the latest rating
    of each reply). `days` is a continuous series
    (days without events count zero) over `from`..`to`, or from the first to the last day with events. With
    `ttft_per_day` (the console's dashboard), each day also has its own `ttft_ms` {p50, p95, replies}, from the same
    snapshot of events. Without `tokens` (a page that does not show them, such as the dashboard), `tokens` is None
    and the rest is the same. Whole days are read from the per-day rollup (`storage/summary_rollup.py`), exactly;
    `from_events` reads every figure from the events instead (the reference the rollup is tested against)."""
    if from_events:
        upto = await storage.events.high_water(tenant_id)
        raw = await storage.aggregates.summary(tenant_id, filters, upto, per_day=ttft_per_day, tokens=tokens)
    else:
        raw = await storage.summaries.summary(tenant_id, filters, per_day=ttft_per_day, tokens=tokens)
    by_type: dict[str, int] = raw["by_type"]
    ttft = raw["ttft"]
    rules = dict(sorted(raw["rules"].items(), key=lambda kv: (-kv[1], kv[0] or "")))
    days = _every_day(raw["days"], filters)
    if ttft_per_day:
        for day in days:
            got = raw["ttft_days"].get(day["day"], {})
            day["ttft_ms"] = {"p50": _ms(got.get("p50")), "p95": _ms(got.get("p95")), "replies": got.get("count", 0)}
    return {
        "from": filters.ts_from.astimezone(UTC).isoformat() if filters.ts_from else None,
        "to": filters.ts_to.astimezone(UTC).isoformat() if filters.ts_to else None,
        "persona_id": filters.persona_id,
        "conversations": by_type.get("conversation.started", 0),
        "messages": by_type.get("message.received", 0),
        "replies": by_type.get("reply.completed", 0),
        "days": days,
        "ttft_ms": {"p50": _ms(ttft["p50"]), "p95": _ms(ttft["p95"]), "replies": ttft["count"]},
        "tokens": {"input": raw["tokens"][0], "output": raw["tokens"][1]} if raw["tokens"] is not None else None,
        "guardrails": {"triggered": by_type.get("guardrail.triggered", 0), "by_reason": rules},
        "escalations": {"triggered": by_type.get("escalation.triggered", 0),
                        "resolved": by_type.get("escalation.resolved", 0)},
        "takeover": takeover_figures(raw["handoffs"], by_type.get("conversation.started", 0)),
        "feedback": {"up": raw["ratings"].get("up", 0), "down": raw["ratings"].get("down", 0)},
        "errors": by_type.get("error", 0),
    }


MAX_FILLED_DAYS = 3660


def _every_day(rows: list[tuple[str, int, int]], filters: EventFilter) -> list[dict[str, Any]]:
    """A chart wants a point per day: the days with events, and zeros between (and to the range's ends)."""
    counts = {str(day)[:10]: (convs, msgs) for day, convs, msgs in rows}
    if not counts and not (filters.ts_from and filters.ts_to):
        return []
    first = filters.ts_from.astimezone(UTC).date() if filters.ts_from else date.fromisoformat(min(counts))
    if filters.ts_to:  # exclusive: a range ending at midnight does not include that day
        last = (filters.ts_to.astimezone(UTC) - timedelta(microseconds=1)).date()
    else:
        last = date.fromisoformat(max(counts))
    if (last - first).days > MAX_FILLED_DAYS:  # a very long range: only the days with events
        return [{"day": d, "conversations": c, "messages": m} for d, (c, m) in sorted(counts.items())]
    days = (first + timedelta(days=i) for i in range((last - first).days + 1))
    return [{"day": d.isoformat(), "conversations": counts.get(d.isoformat(), (0, 0))[0],
             "messages": counts.get(d.isoformat(), (0, 0))[1]} for d in days]


def _ms(value: float | None) -> float | None:
    return None if value is None else round(value, 1)
