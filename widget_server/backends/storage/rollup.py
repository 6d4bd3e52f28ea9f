"""The per-day rollup of the analytics events (`analytics_days`, `analytics_ttft`; migration 0023).

The summary of a long range read every event of it (90 days of a tenant with 100,000 conversations in 180 days:
some 360,000 events, 545-639 ms). The rollup holds, per tenant, UTC day and persona, the count of each type of
event, of each guardrail rule, the tokens in and out, and each time to first token with how many replies had it:
what the summary counts for whole days. It is changed in the transaction that writes the events (`EventStore.insert`,
only the events it stored) and in those that delete them (erasure, retention: from the deleted rows themselves,
`DELETE … RETURNING`), so it cannot disagree with them. Each change is a sum added to a row (an upsert), so batches
from several nodes commute; on PostgreSQL they are taken under the events' advisory lock anyway.

What it cannot give is read from the events (`summary_rollup.py`): the parts of days a range cuts, the latest rating
of each reply (a later rating within the range replaces an earlier one), the takeover figures (an order of events).
The time to first token is exact: a histogram whose bars are the stored values themselves.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from widget_server.backends.storage.tables import analytics_days, analytics_ttft

DayKey = tuple[str, str, str, str, str]  # tenant, day, persona, figure, item
TtftKey = tuple[str, str, int, float, str]  # tenant, day, bucket, time to first token, persona
STEP = math.log(1.1)  # a bucket's values are within 10% of each other: some 30 buckets a day hold a day's replies
TOKENS = (("tokens-in", "gen_ai.usage.input_tokens"), ("tokens-out", "gen_ai.usage.output_tokens"))
# (the columns RETURNING gives back from a delete: what `fold` reads)
FOLDED = ("tenant_id", "ts", "persona_id", "type", "attributes")


def utc_day(ts: datetime, dialect: str) -> str:
    """The day the database's own summary query puts an event in: PostgreSQL converts to UTC; SQLite compares the
    wall clock the row holds (SQLAlchemy stores it without its offset, and the writer's clock is UTC)."""
    if dialect != "sqlite" and ts.tzinfo is not None:
        ts = ts.astimezone(UTC)
    return ts.date().isoformat()


def bucket(ms: float) -> int:
    """The bucket of a time to first token: buckets grow with the value (every value of a bucket is below every
    value of the next)."""
    return 0 if ms < 1 else 1 + int(math.log(ms) / STEP)


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def fold(rows: Iterable[Mapping[str, Any]] | Sequence[sa.RowMapping],
         dialect: str) -> tuple[Counter[DayKey], Counter[TtftKey]]:
    """What these events add to the rollup."""
    days: Counter[DayKey] = Counter()
    ttft: Counter[TtftKey] = Counter()
    for row in rows:
        tenant, day, persona = row["tenant_id"], utc_day(row["ts"], dialect), row["persona_id"] or ""
        attributes = row["attributes"] if isinstance(row["attributes"], dict) else {}
        days[(tenant, day, persona, "type", row["type"])] += 1
        if row["type"] == "guardrail.triggered":
            rule = attributes.get("rule")
            days[(tenant, day, persona, "no-rule", "") if rule is None else (tenant, day, persona, "rule",
                                                                               str(rule))] += 1
        elif row["type"] == "reply.completed":
            for figure, name in TOKENS:
                value = _number(attributes.get(name))
                if value:
                    days[(tenant, day, persona, figure, "")] += int(value)
            value = _number(attributes.get("ttft_ms"))
            if value is not None:
                ttft[(tenant, day, bucket(value), value, persona)] += 1
                days[(tenant, day, persona, "ttft-bucket", str(bucket(value)))] += 1
    return days, ttft


def statements(dialect: str, days: Counter[DayKey], ttft: Counter[TtftKey],
               sign: int = 1) -> list[tuple[Any, list[dict[str, Any]]]]:
    """The upserts that add (`sign` 1) or take away (-1) these sums, in key order (two transactions changing the
    same rows take their locks in one order). Works on a sync or an async connection."""
    out: list[tuple[Any, list[dict[str, Any]]]] = []
    for table, counts, names in ((analytics_days, days, ("tenant_id", "day", "persona_id", "figure", "item")),
                                 (analytics_ttft, ttft, ("tenant_id", "day", "bucket", "ttft_ms", "persona_id"))):
        params = [{**dict(zip(names, key, strict=True)), "n": sign * n} for key, n in sorted(counts.items()) if n]
        if not params:
            continue
        insert: Any = postgresql.insert(table) if dialect == "postgresql" else sqlite.insert(table)
        out.append((insert.on_conflict_do_update(index_elements=list(names),
                                                 set_={"n": table.c.n + insert.excluded.n}), params))
    return out


def emptied(tenant_id: str) -> list[Any]:
    """After a take-away: the rows left at zero (nothing in the summary reads a zero differently from no row)."""
    return [sa.delete(table).where(table.c.tenant_id == tenant_id, table.c.n == 0)
            for table in (analytics_days, analytics_ttft)]
