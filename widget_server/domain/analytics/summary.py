"""`GET /v1/analytics/summary`: a tenant's figures over a time range, from one consistent set of events."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC
from typing import Any

from widget_server.backends.storage import Storage
from widget_server.backends.storage.aggregates import Aggregates
from widget_server.backends.storage.analytics import EventFilter
from widget_server.domain.analytics.query import parse_filter
from widget_server.errors import InvalidRequest


async def parse_summary(storage: Storage, tenant_id: str, params: Mapping[str, str]) -> EventFilter:
    """`from`, `to`, `persona` (and `visitor`, `conversation`); `type` is refused: the summary covers every type."""
    if params.get("type"):
        raise InvalidRequest("type does not apply to the summary (it counts every type of event)",
                             code="query.invalid", details={"param": "type"})
    return await parse_filter(storage, tenant_id, params)


async def summarize(storage: Storage, tenant_id: str, filters: EventFilter) -> dict[str, Any]:
    """Conversations and messages per UTC day, time to first token p50/p95 (ms), tokens in and out, guardrail
    triggers by reason, escalations, feedback (the latest rating of each reply). Days without events are left out."""
    upto = await storage.events.high_water(tenant_id)
    raw = await Aggregates(storage.engine).summary(tenant_id, filters, upto)
    by_type: dict[str, int] = raw["by_type"]
    ttft = raw["ttft"]
    rules = dict(sorted(raw["rules"].items(), key=lambda kv: (-kv[1], kv[0] or "")))
    return {
        "from": filters.ts_from.astimezone(UTC).isoformat() if filters.ts_from else None,
        "to": filters.ts_to.astimezone(UTC).isoformat() if filters.ts_to else None,
        "persona_id": filters.persona_id,
        "conversations": by_type.get("conversation.started", 0),
        "messages": by_type.get("message.received", 0),
        "replies": by_type.get("reply.completed", 0),
        "days": [{"day": day, "conversations": convs, "messages": msgs} for day, convs, msgs in raw["days"]],
        "ttft_ms": {"p50": _ms(ttft["p50"]), "p95": _ms(ttft["p95"]), "replies": ttft["count"]},
        "tokens": {"input": raw["tokens"][0], "output": raw["tokens"][1]},
        "guardrails": {"triggered": by_type.get("guardrail.triggered", 0), "by_reason": rules},
        "escalations": {"triggered": by_type.get("escalation.triggered", 0),
                        "resolved": by_type.get("escalation.resolved", 0)},
        "feedback": {"up": raw["ratings"].get("up", 0), "down": raw["ratings"].get("down", 0)},
        "errors": by_type.get("error", 0),
    }


def _ms(value: float | None) -> float | None:
    return None if value is None else round(value, 1)
