"""The summary's figures from the per-day rollup (`rollup.py`) for whole UTC days, and from the events for the rest.

Read from the rollup: the counts of each type (conversations and messages per day), the guardrail rules, the
tokens, and the time to first token, exactly. Its bars hold each value with its count, grouped in buckets of values
within 10% of each other whose counts per day sit beside the other counts: a percentile's rank is placed in its
bucket from those counts, then only that bucket's bars are read (for the range, over its days; for each day, the
one or two buckets of that day), not the replies. Read from the events: the parts of a day a range cuts (a `from` or
a `to` that is not a midnight UTC), the ratings (the latest of each reply within the range, which no per-day count
can say), the takeover figures (an order of events), and every figure of a filter by visitor or conversation or of a
range within one day (`Aggregates.summary`, the reference the rollup is tested against).

Every read runs in one snapshot (PostgreSQL: REPEATABLE READ; SQLite: one read transaction), so the rollup and the
events it is merged with are one set of events. Measured at 100,000 conversations: bench/README.md.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from widget_server.backends.storage import rollup
from widget_server.backends.storage.aggregates import COUNTED, PERCENTS, Aggregates, _interpolated, _ranked
from widget_server.backends.storage.analytics import EventFilter
from widget_server.backends.storage.tables import analytics_days, analytics_ttft, events

c = events.c
DAYS_OF = ("conversation.started", "message.received")  # the per-day series
PAIRS = 200  # (day, bucket) pairs per query


def _midnight(day: date) -> datetime:
    return datetime.combine(day, time(), tzinfo=UTC)


def whole_days(filters: EventFilter) -> tuple[date | None, date | None] | None:
    """The whole UTC days within the range (first, end exclusive; None: unbounded), or None if it holds none."""
    try:
        first = end = None
        if filters.ts_from is not None:
            start = filters.ts_from.astimezone(UTC)
            first = start.date() if start == _midnight(start.date()) else start.date() + timedelta(days=1)
        if filters.ts_to is not None:
            end = filters.ts_to.astimezone(UTC).date()
    except OverflowError:  # a `from` within the last day of year 9999
        return None
    return None if first is not None and end is not None and first >= end else (first, end)


def _edges(filters: EventFilter, first: date | None, end: date | None) -> list[sa.ColumnElement[bool]]:
    """The parts of days the range cuts, as conditions on the events' time."""
    out = []
    if filters.ts_from is not None and first is not None and filters.ts_from < _midnight(first):
        out.append(sa.and_(c.ts >= filters.ts_from, c.ts < _midnight(first)))
    if filters.ts_to is not None and end is not None and filters.ts_to > _midnight(end):
        out.append(sa.and_(c.ts >= _midnight(end), c.ts < filters.ts_to))
    return out


class RolledSummary:
    """`summary` as `Aggregates.summary` gives it, read from the rollup where it can be."""

    def __init__(self, engine: AsyncEngine, aggregates: Aggregates) -> None:
        self.engine = engine
        self.aggregates = aggregates
        self.dialect = engine.dialect.name

    async def summary(self, tenant_id: str, filters: EventFilter, *, per_day: bool = False,
                      tokens: bool = True) -> dict[str, Any]:
        """The raw figures of `GET /v1/analytics/summary` (the shape of `Aggregates.summary`)."""
        span = whole_days(filters)
        if span is None or filters.types or filters.conversation_id or filters.visitor_id:
            upto = await self._high_water(self.engine, tenant_id)
            return await self.aggregates.summary(tenant_id, filters, upto, per_day=per_day, tokens=tokens)
        first, end = span
        async with self._snapshot() as conn:
            upto = await self._high_water(conn, tenant_id)
            where = [*filters.where(tenant_id), c.seq + 0 <= upto]
            # The events' reads, bounded by `upto`, each on a connection of its own meanwhile (as the old way did):
            # what was committed up to `upto` is what this snapshot sees.
            async with asyncio.TaskGroup() as group:
                ratings = group.create_task(self.aggregates._on_own(self.aggregates._ratings, where, upto,
                                                                    filters.ts_to))
                handoffs = group.create_task(self.aggregates._on_own(self.aggregates._handoffs, where))
                out = await self._from_rollup(conn, tenant_id, filters, (first, end), upto, per_day, tokens)
        out["ratings"], out["handoffs"] = ratings.result(), handoffs.result()
        return out

    async def _from_rollup(self, conn: AsyncConnection, tenant_id: str, filters: EventFilter,
                           span: tuple[date | None, date | None], upto: int, per_day: bool,
                           tokens: bool) -> dict[str, Any]:
        first, end = span
        out, buckets = await self._rolled(conn, tenant_id, filters.persona_id, first, end, tokens)
        ttft_days = await self._days_ttft(conn, tenant_id, filters.persona_id, buckets) if per_day else {}
        edge_values: list[float] = []
        if edges := _edges(filters, first, end):
            edge = [*EventFilter(persona_id=filters.persona_id).where(tenant_id), c.seq + 0 <= upto, sa.or_(*edges)]
            edge_values = await self._add_edges(conn, edge, out, ttft_days)
        counts: Counter[int] = Counter(rollup.bucket(v) for v in edge_values)
        for day_counts in buckets.values():
            counts.update(day_counts)
        scope = _scope(analytics_ttft, tenant_id, filters.persona_id, first, end)
        out["ttft"] = await self._whole_ttft(conn, scope, counts, edge_values)
        out["ttft_days"] = ttft_days
        out["days"] = [(d, convs, msgs) for d, (convs, msgs) in sorted(out["days"].items())]
        return out

    @contextlib.asynccontextmanager
    async def _snapshot(self) -> AsyncIterator[AsyncConnection]:
        async with self.engine.connect() as conn:
            if self.dialect == "postgresql":
                conn = await conn.execution_options(isolation_level="REPEATABLE READ")
                async with conn.begin():
                    await conn.execute(sa.text("SET TRANSACTION READ ONLY"))
                    yield conn
                return
            await conn.exec_driver_sql("BEGIN")  # the driver begins none before a write; the close rolls it back
            yield conn

    async def _high_water(self, conn: Any, tenant_id: str) -> int:
        query = sa.select(sa.func.max(c.seq)).where(c.tenant_id == tenant_id)
        if isinstance(conn, AsyncEngine):
            async with conn.connect() as own:
                return int((await own.execute(query)).scalar() or 0)
        return int((await conn.execute(query)).scalar() or 0)

    async def _rolled(self, conn: AsyncConnection, tenant_id: str, persona_id: str | None, first: date | None,
                      end: date | None, tokens: bool) -> tuple[dict[str, Any], dict[str, Counter[int]]]:
        """The counted figures, and each day's replies per bucket of time to first token."""
        t = analytics_days.c
        query = (sa.select(t.day, t.figure, t.item, sa.func.sum(t.n))
                 .where(*_scope(analytics_days, tenant_id, persona_id, first, end)).group_by(t.day, t.figure, t.item))
        by_type: Counter[str] = Counter()
        rules: Counter[Any] = Counter()
        days: dict[str, list[int]] = {}
        summed = [0, 0]
        buckets: dict[str, Counter[int]] = {}
        for day, figure, item, n in (await conn.execute(query)).all():
            n = int(n)
            if figure == "ttft-bucket":
                buckets.setdefault(day, Counter())[int(item)] += n
            elif figure == "type" and item in COUNTED:
                by_type[item] += n
                if item in DAYS_OF:
                    days.setdefault(day, [0, 0])[item == "message.received"] += n
            elif figure in ("rule", "no-rule"):
                rules[item if figure == "rule" else None] += n
            elif figure in ("tokens-in", "tokens-out"):
                summed[figure == "tokens-out"] += n
        return {"by_type": dict(by_type), "days": days, "rules": dict(rules),
                "tokens": (summed[0], summed[1]) if tokens else None}, buckets

    async def _whole_ttft(self, conn: AsyncConnection, scope: list[sa.ColumnElement[bool]], counts: Counter[int],
                          edge: list[float]) -> dict[str, Any]:
        """The range's percentiles: the bucket of each rank from the buckets' counts, then that bucket's bars."""
        n = sum(counts.values())
        at = _locate(counts, _wanted(n))
        t = analytics_ttft.c
        values: dict[int, float] = {}
        for b in sorted({b for b, _ in at.values()}):
            query = (sa.select(t.ttft_ms, sa.func.sum(t.n)).where(*scope, t.bucket == b).group_by(t.ttft_ms))
            bars = Counter({float(v): int(k) for v, k in (await conn.execute(query)).all()})
            bars.update(v for v in edge if rollup.bucket(v) == b)
            values |= _pick(bars, {r: offset for r, (b_, offset) in at.items() if b_ == b})
        return {"count": n, **_interpolated(values, n)}

    async def _days_ttft(self, conn: AsyncConnection, tenant_id: str, persona_id: str | None,
                         buckets: dict[str, Counter[int]]) -> dict[str, dict[str, Any]]:
        """Each whole day's percentiles, from the bars of only the buckets its ranks fall in: the (day, bucket)
        pairs joined to the bars' primary key (an OR of the pairs was read by SQLite as a scan of every bar)."""
        at = {day: _locate(counts, _wanted(sum(counts.values()))) for day, counts in buckets.items()}
        pairs = sorted({(day, b) for day, got in at.items() for b, _ in got.values()})
        bars: dict[tuple[str, int], Counter[float]] = {}
        for i in range(0, len(pairs), PAIRS):
            chunk = pairs[i:i + PAIRS]
            params: dict[str, Any] = {"tenant": tenant_id, "persona": persona_id}
            rows = []
            for k, (day, b) in enumerate(chunk):
                params |= {f"d{k}": day, f"b{k}": b}
                rows.append(f"(CAST(:d{k} AS VARCHAR(10)), CAST(:b{k} AS INTEGER))")
            persona = "AND t.persona_id = :persona" if persona_id else ""
            sql = (f"WITH want(day, bucket) AS (VALUES {', '.join(rows)}) "
                   "SELECT t.day, t.bucket, t.ttft_ms, sum(t.n) FROM want CROSS JOIN analytics_ttft t "
                   f"WHERE t.tenant_id = :tenant AND t.day = want.day AND t.bucket = want.bucket {persona} "
                   "GROUP BY t.day, t.bucket, t.ttft_ms")
            for day, b, v, k in (await conn.execute(sa.text(sql), params)).all():
                bars.setdefault((day, b), Counter())[float(v)] += int(k)
        out = {}
        for day, got in at.items():
            n = sum(buckets[day].values())
            values: dict[int, float] = {}
            for b in {b for b, _ in got.values()}:
                values |= _pick(bars.get((day, b), Counter()), {r: o for r, (b_, o) in got.items() if b_ == b})
            if n:
                out[day] = {"count": n, **_interpolated(values, n)}
        return out

    async def _add_edges(self, conn: AsyncConnection, edge: list[sa.ColumnElement[bool]], out: dict[str, Any],
                         ttft_days: dict[str, dict[str, Any]]) -> list[float]:
        """Merge in the events of the cut days' parts (never a whole day: the rollup holds none of theirs); returns
        their times to first token."""
        by_type, days = await self.aggregates._counted(conn, edge)
        for typ, n in by_type.items():
            out["by_type"][typ] = out["by_type"].get(typ, 0) + n
        for day, convs, msgs in days:
            out["days"][day] = [convs, msgs]
        for rule, n in (await self.aggregates._rules(conn, edge)).items():
            out["rules"][rule] = out["rules"].get(rule, 0) + n
        query = sa.select(self.aggregates._utc_day(c.ts), c.attributes["ttft_ms"].as_float(),
                          c.attributes["gen_ai.usage.input_tokens"].as_integer(),
                          c.attributes["gen_ai.usage.output_tokens"].as_integer()
                          ).where(*edge, c.type == "reply.completed")
        by_day: dict[str, list[float]] = {}
        summed = list(out["tokens"] or (0, 0))
        for day, ttft, tokens_in, tokens_out in (await conn.execute(query)).all():
            summed = [summed[0] + (tokens_in or 0), summed[1] + (tokens_out or 0)]
            if ttft is not None:
                by_day.setdefault(str(day)[:10], []).append(float(ttft))
        if out["tokens"] is not None:
            out["tokens"] = (int(summed[0]), int(summed[1]))
        for day, values in by_day.items():
            ttft_days[day] = {"count": len(values), **_ranked(list(values))}
        return [v for values in by_day.values() for v in values]


def _scope(table: sa.Table, tenant_id: str, persona_id: str | None, first: date | None,
           end: date | None) -> list[sa.ColumnElement[bool]]:
    out = [table.c.tenant_id == tenant_id]
    if persona_id:
        out.append(table.c.persona_id == persona_id)
    if first is not None:
        out.append(table.c.day >= first.isoformat())
    if end is not None:
        out.append(table.c.day < end.isoformat())
    return out


def _wanted(n: int) -> set[int]:
    """The ranks the percentiles of `n` values are interpolated between (`_interpolated`)."""
    lows = [(n - 1) * percent // 100 for percent in PERCENTS.values()] if n else []
    return {r for low in lows for r in (low, low + 1) if r < n}


def _locate(counts: Counter[int], ranks: set[int]) -> dict[int, tuple[int, int]]:
    """Each rank's bucket and its offset within the bucket."""
    out: dict[int, tuple[int, int]] = {}
    seen = 0
    for b in sorted(counts):
        out |= {r: (b, r - seen) for r in ranks if seen <= r < seen + counts[b]}
        seen += counts[b]
    return out


def _pick(bars: Counter[float], offsets: dict[int, int]) -> dict[int, float]:
    """The value at each offset of a bucket's bars (rank -> offset within the bucket)."""
    out: dict[int, float] = {}
    seen = 0
    for value in sorted(bars):
        out |= {r: value for r, offset in offsets.items() if seen <= offset < seen + bars[value]}
        seen += bars[value]
    return out
