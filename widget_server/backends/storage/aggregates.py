"""Aggregates over events: one row per conversation (keyset pages), counts for progress, the summary's figures.

Every query is tenant-scoped and bounded by `upto` (a `seq` high-water mark), so the figures of one export or one
summary come from one consistent set of events. The SQL is the same on SQLite and PostgreSQL except for the UTC day.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any, TypeVar

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from widget_server.backends.storage.analytics import EventFilter
from widget_server.backends.storage.rows import Row, as_row
from widget_server.backends.storage.tables import events

c = events.c
T = TypeVar("T")
FEEDBACK = "feedback.submitted"
COUNTED = ("conversation.started", "message.received", "reply.completed", "guardrail.triggered",
           "escalation.triggered", "escalation.resolved", "error")  # the types whose counts the summary shows
PERCENTS = {"p50": 50, "p95": 95}
HANDOFF_TYPES = ("escalation.triggered", "escalation.claimed", "escalation.resolved", "escalation.closed")
# Group by the first output column: an expression with bound parameters (a JSON key, a format) would be sent twice
# as two parameters, and PostgreSQL would not see the GROUP BY expression as the selected one.
FIRST = sa.text("1")


def _count(condition: sa.ColumnElement[bool]) -> sa.ColumnElement[int]:
    return sa.func.coalesce(sa.func.sum(sa.case((condition, 1), else_=0)), 0)


def _text(name: str) -> sa.ColumnElement[str]:
    text: sa.ColumnElement[str] = c.attributes[name].as_string()
    return text


def _latest_feedback(upto: int, ts_to: datetime | None) -> sa.ColumnElement[bool]:
    """A rating that no later rating of the same reply replaced (a second rating replaces the first)."""
    later = events.alias("later")
    clauses = [later.c.tenant_id == c.tenant_id, later.c.conversation_id == c.conversation_id,
               later.c.type == FEEDBACK, later.c.seq > c.seq, later.c.seq <= upto,
               later.c.attributes["message_id"].as_string() == _text("message_id")]
    if ts_to is not None:
        clauses.append(later.c.ts < ts_to)
    return sa.and_(c.type == FEEDBACK, ~sa.exists().where(*clauses))


def _conversation_where(tenant_id: str, filters: EventFilter, upto: int) -> list[sa.ColumnElement[bool]]:
    """Time bounds select conversations by their first event (in HAVING), so a row always covers all of it."""
    scope = EventFilter(persona_id=filters.persona_id, conversation_id=filters.conversation_id,
                        visitor_id=filters.visitor_id)
    return [*scope.where(tenant_id), c.seq <= upto, c.conversation_id.is_not(None)]


def _started_within(filters: EventFilter) -> list[sa.ColumnElement[bool]]:
    having = []
    if filters.ts_from is not None:
        having.append(sa.func.min(c.ts) >= filters.ts_from)
    if filters.ts_to is not None:
        having.append(sa.func.min(c.ts) < filters.ts_to)
    return having


class Aggregates:
    """Read-only queries for the export's conversation level, export progress and the summary."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        self.dialect = engine.dialect.name

    async def count_events(self, tenant_id: str, filters: EventFilter, upto: int) -> int:
        query = sa.select(sa.func.count()).select_from(events).where(*filters.where(tenant_id), c.seq <= upto)
        async with self.engine.connect() as conn:
            return int((await conn.execute(query)).scalar() or 0)

    async def count_conversations(self, tenant_id: str, filters: EventFilter, upto: int) -> int:
        grouped = (sa.select(c.conversation_id).where(*_conversation_where(tenant_id, filters, upto))
                   .group_by(c.conversation_id).having(*_started_within(filters)).subquery())
        async with self.engine.connect() as conn:
            return int((await conn.execute(sa.select(sa.func.count()).select_from(grouped))).scalar() or 0)

    async def conversation_page(
        self, tenant_id: str, filters: EventFilter, *, upto: int, after: str = "", limit: int = 500
    ) -> list[Row]:
        """Conversations ordered by id, above `after` (the keyset), each aggregated from its events up to `upto`."""
        typ = c.type
        latest = _latest_feedback(upto, None)
        query = (
            sa.select(
                c.conversation_id, sa.func.max(c.persona_id).label("persona_id"),
                sa.func.max(c.visitor_id).label("visitor_id"), sa.func.max(c.channel).label("channel"),
                sa.func.min(c.ts).label("started"), sa.func.max(c.ts).label("ended"),
                _count(typ == "message.received").label("messages"),
                _count(sa.and_(typ == "guardrail.triggered", _text("action") == "refuse")).label("refusals"),
                sa.func.max(sa.case((typ == "escalation.triggered", c.seq), else_=0)).label("escalated_seq"),
                sa.func.max(sa.case((typ == "escalation.resolved", c.seq), else_=0)).label("resolved_seq"),
                _count(sa.and_(latest, _text("rating") == "up")).label("feedback_up"),
                _count(sa.and_(latest, _text("rating") == "down")).label("feedback_down"),
                sa.func.avg(sa.case((typ == "reply.completed", c.attributes["ttft_ms"].as_float()))).label("ttft"),
            )
            .where(*_conversation_where(tenant_id, filters, upto), c.conversation_id > after)
            .group_by(c.conversation_id).having(*_started_within(filters))
            .order_by(c.conversation_id).limit(limit)
        )
        async with self.engine.connect() as conn:
            return [_conversation(as_row(r)) for r in (await conn.execute(query)).mappings().all()]

    async def summary(self, tenant_id: str, filters: EventFilter, upto: int, *, per_day: bool = False,
                      tokens: bool = True) -> dict[str, Any]:
        """The raw figures of `GET /v1/analytics/summary`; the domain shapes them. With `per_day`, also each UTC
        day's time to first token percentiles (`ttft_days`), from the same read of the replies as the whole range's.
        Without `tokens` (a page that does not show them), `tokens` is None: two of the three JSON values read from
        each reply are left unread (per_day only; the other figures stay the same)."""
        # `seq + 0`: a bound that no index may serve, so that SQLite (without statistics, as the app leaves it)
        # reads each type's days from (tenant_id, type, ts, seq) rather than every event up to `upto` by seq
        where = [*filters.where(tenant_id), c.seq + 0 <= upto]
        # Three reads at once, each on a connection of its own: every statement already saw its own snapshot (read
        # committed; SQLite outside a transaction), and `upto` alone makes them one set of events, so nothing is
        # lost by not running them one after another, and the page waits for the longest (the replies) only.
        async with asyncio.TaskGroup() as group:
            counted = group.create_task(self._on_own(self._counted, where))
            handoffs = group.create_task(self._on_own(self._handoffs, where))
            replies = group.create_task(self._on_own(self._replies_per_day, where, tokens) if per_day
                                        else self._on_own(self._replies, where))
            rules = group.create_task(self._on_own(self._rules, where))
            ratings = group.create_task(self._on_own(self._ratings, where, upto, filters.ts_to))
        (by_type, days), (summed, ttft, ttft_days) = counted.result(), replies.result()
        return {"by_type": by_type, "days": days,
                "tokens": (int(summed[0]), int(summed[1])) if summed is not None else None,
                "rules": rules.result(), "ratings": ratings.result(), "ttft": ttft, "ttft_days": ttft_days,
                "handoffs": handoffs.result()}

    async def _handoffs(self, conn: AsyncConnection, where: list[sa.ColumnElement[bool]]) -> list[tuple[Any, ...]]:
        """The takeover events of the range, oldest first: (conversation, type, ts, waited_ms, escalated_ms,
        whether a transfer). Far fewer than the replies; `takeover_figures` reads them."""
        query = (sa.select(c.conversation_id, c.type, c.ts, c.attributes["waited_ms"].as_float(),
                           c.attributes["escalated_ms"].as_float(), c.attributes["from_agent_id"].as_string())
                 .where(*where, c.type.in_(HANDOFF_TYPES)).order_by(c.seq + 0))  # (by seq, SQLite read them all)
        return [tuple(row) for row in (await conn.execute(query)).all()]

    async def _on_own(self, read: Callable[..., Awaitable[T]], *args: Any) -> T:
        async with self.engine.connect() as conn:
            return await read(conn, *args)

    async def _replies(
        self, conn: AsyncConnection, where: list[sa.ColumnElement[bool]]
    ) -> tuple[tuple[int, int] | None, dict[str, Any], dict[str, dict[str, Any]]]:
        """The tokens in and out and the time to first token percentiles of a range of any length, in the database."""
        tokens = (await conn.execute(sa.select(
            sa.func.coalesce(sa.func.sum(c.attributes["gen_ai.usage.input_tokens"].as_integer()), 0),
            sa.func.coalesce(sa.func.sum(c.attributes["gen_ai.usage.output_tokens"].as_integer()), 0),
        ).where(*where, c.type == "reply.completed"))).one()
        return (int(tokens[0]), int(tokens[1])), await _percentiles(conn, where), {}

    async def _rules(self, conn: AsyncConnection, where: list[sa.ColumnElement[bool]]) -> dict[Any, int]:
        rules = (await conn.execute(sa.select(_text("rule"), sa.func.count()).where(
            *where, c.type == "guardrail.triggered").group_by(FIRST))).all()
        return {r: int(n) for r, n in rules}

    async def _ratings(self, conn: AsyncConnection, where: list[sa.ColumnElement[bool]], upto: int,
                       ts_to: datetime | None) -> dict[str, int]:
        ratings = (await conn.execute(sa.select(_text("rating"), sa.func.count()).where(
            *where, _latest_feedback(upto, ts_to)).group_by(FIRST))).all()
        return {r: int(n) for r, n in ratings}

    async def _replies_per_day(
        self, conn: AsyncConnection, where: list[sa.ColumnElement[bool]], tokens: bool = True
    ) -> tuple[tuple[int, int] | None, dict[str, Any], dict[str, dict[str, Any]]]:
        """The tokens in and out (if `tokens`: on PostgreSQL each JSON value read parses the whole of the reply's
        `json` attributes again, two thirds of this read's cost), and the time to first token percentiles of the
        whole range and of each UTC day, from one read of the replies (day, time to first token, tokens), ranked
        here. A bounded range's query (the dashboard's, at most a year: some 16,000 replies for two weeks of a busy
        tenant); one pass costs less than the two scans and the ranking windows the database would need (0.6x,
        measured on SQLite)."""
        summed = [c.attributes["gen_ai.usage.input_tokens"].as_integer(),
                  c.attributes["gen_ai.usage.output_tokens"].as_integer()] if tokens else []
        query = sa.select(self._utc_day(c.ts), c.attributes["ttft_ms"].as_float(), *summed,
                          ).where(*where, c.type == "reply.completed")
        tokens_in = tokens_out = 0
        by_day: dict[str, list[float]] = {}
        everything: list[float] = []
        for day, ttft, *got in (await conn.execute(query)).all():
            if got:
                tokens_in += got[0] or 0
                tokens_out += got[1] or 0
            if ttft is not None:
                by_day.setdefault(str(day)[:10], []).append(float(ttft))
                everything.append(float(ttft))
        days = {d: {"count": len(values), **_ranked(values)} for d, values in by_day.items()}
        return ((tokens_in, tokens_out) if tokens else None), {"count": len(everything), **_ranked(everything)}, days

    async def _counted(self, conn: AsyncConnection, where: list[sa.ColumnElement[bool]]
                       ) -> tuple[dict[str, int], list[tuple[str, int, int]]]:
        """The count of each counted type, and the conversations and visitor messages of each UTC day, from one
        GROUP BY over the range's counted events (from the (tenant_id, type, ts, seq) index alone on SQLite): one
        scan where a query per figure read the started conversations and the messages twice."""
        query = (sa.select(c.type, self._utc_day(c.ts), sa.func.count())
                 .where(*where, c.type.in_(COUNTED)).group_by(c.type, sa.text("2")))
        by_type: dict[str, int] = {}
        days: dict[str, list[int]] = {}
        for typ, day, n in (await conn.execute(query)).all():
            by_type[typ] = by_type.get(typ, 0) + int(n)
            if typ in ("conversation.started", "message.received"):
                days.setdefault(str(day)[:10], [0, 0])[typ == "message.received"] += int(n)
        return by_type, [(d, convs, msgs) for d, (convs, msgs) in sorted(days.items())]

    def _utc_day(self, ts: sa.ColumnElement[datetime]) -> sa.ColumnElement[Any]:
        """The UTC day, read as `str(day)[:10]` (`YYYY-MM-DD`). PostgreSQL converts in the session's time zone
        unless told UTC, and casts to a date (a third of the cost of `to_char` per row, and a smaller group key);
        SQLite keeps the UTC wall clock the writer stored, without an offset."""
        if self.dialect == "postgresql":
            return sa.cast(sa.func.timezone(sa.literal_column("'UTC'"), ts), sa.Date)
        return sa.func.substr(sa.cast(ts, sa.String), 1, 10, type_=sa.String)


async def _percentiles(conn: AsyncConnection, where: list[sa.ColumnElement[bool]]) -> dict[str, Any]:
    """Time to first token percentiles with linear interpolation (PostgreSQL's `percentile_cont`), computed the
    same way on both databases: the count, then the one or two ranked values each percentile needs."""
    value = c.attributes["ttft_ms"].as_float()
    scope = [*where, c.type == "reply.completed", value.is_not(None)]
    n = int((await conn.execute(sa.select(sa.func.count()).where(*scope))).scalar() or 0)
    ranks: dict[int, float] = {}
    for percent in PERCENTS.values() if n else ():
        low = (n - 1) * percent // 100
        got = (await conn.execute(sa.select(value).where(*scope).order_by(value).offset(low).limit(2))).scalars()
        ranks |= {low + i: float(v) for i, v in enumerate(got)}
    return {"count": n, **_interpolated(ranks, n)}


REOPEN_S = 24 * 3600


def takeover_figures(rows: list[tuple[Any, ...]], conversations: int) -> dict[str, Any]:
    """Handoffs from the takeover events of a range (oldest first): the share of conversations handed to a person,
    the share of escalations nobody claimed (before they were resolved, closed, or by the end of the range), the time
    to claim and to resolve (p50/p95, ms), and the share of resolves escalated again within 24 hours (reopened)."""
    escalated: set[Any] = set()
    current: dict[Any, bool] = {}  # a conversation's escalation in progress: claimed yet?
    resolved_at: dict[Any, datetime] = {}
    claimed_ms: list[float] = []
    resolved_ms: list[float] = []
    escalations = unclaimed = resolves = reopened = 0
    for conversation, typ, ts, waited, took, transfer in rows:
        if typ == "escalation.triggered":
            escalations += 1
            escalated.add(conversation)
            if current.get(conversation) is False:
                unclaimed += 1  # escalated again (a playground's report) before anyone claimed the last one
            current[conversation] = False
            before = resolved_at.pop(conversation, None)
            if before is not None and (ts - before).total_seconds() <= REOPEN_S:
                reopened += 1
        elif typ == "escalation.claimed" and not transfer:
            if conversation in current:
                current[conversation] = True
            if waited is not None:
                claimed_ms.append(float(waited))
        elif typ in ("escalation.resolved", "escalation.closed"):
            if current.pop(conversation, True) is False:
                unclaimed += 1  # handed back or closed with nobody having claimed it
            if typ == "escalation.resolved":
                resolves += 1
                resolved_at[conversation] = ts
                if took is not None:
                    resolved_ms.append(float(took))
    unclaimed += sum(1 for claimed in current.values() if not claimed)  # still waiting at the range's end
    return {"escalations": escalations, "conversations_escalated": len(escalated),
            # (at most 1: a conversation started before the range may be escalated within it)
            "handoff_rate": round(min(len(escalated) / conversations, 1.0), 4) if conversations else None,
            "unclaimed": unclaimed, "unclaimed_share": round(unclaimed / escalations, 4) if escalations else None,
            "time_to_claim_ms": {**_rounded(_ranked(claimed_ms)), "count": len(claimed_ms)},
            "time_to_resolve_ms": {**_rounded(_ranked(resolved_ms)), "count": len(resolved_ms)},
            "reopened": reopened, "reopen_rate": round(reopened / resolves, 4) if resolves else None}


def _rounded(values: dict[str, float | None]) -> dict[str, float | None]:
    return {k: None if v is None else round(v, 1) for k, v in values.items()}


def _ranked(values: list[float]) -> dict[str, float | None]:
    values.sort()
    return _interpolated(dict(enumerate(values)), len(values))


def _interpolated(ranks: dict[int, float], n: int) -> dict[str, float | None]:
    """Each percentile of `n` ranked values, from the values at the ranks it falls between (`ranks`, 0-based):
    rank (n - 1) * p / 100, in integers so that both databases and Python agree on where it falls."""
    out: dict[str, float | None] = {}
    for name, percent in PERCENTS.items():
        if n == 0:
            out[name] = None
            continue
        low, rest = divmod((n - 1) * percent, 100)
        high = ranks.get(low + 1, ranks[low])
        out[name] = ranks[low] + (high - ranks[low]) * rest / 100
    return out


def _conversation(row: Row) -> Row:
    escalated_seq, resolved_seq, ttft = row.pop("escalated_seq"), row.pop("resolved_seq"), row.pop("ttft")
    row["escalated"] = bool(escalated_seq)
    row["status"] = "escalated" if escalated_seq and escalated_seq > resolved_seq else "bot"
    row["ttft_ms_avg"] = round(float(ttft), 1) if ttft is not None else None
    for key in ("messages", "refusals", "feedback_up", "feedback_down"):
        row[key] = int(row[key])
    return row
