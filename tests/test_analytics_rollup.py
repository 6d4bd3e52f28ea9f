"""The summary from the per-day rollup is the summary from the events, to the event, on SQLite and PostgreSQL.

A seeded tenant of varied events (four personas and none, five channels, events a second either side of midnight
UTC, repeated and missing times to first token, rules and none, ratings changed), then one visitor erased and the
oldest days expired: after each step the summary read the new way (`storage.summaries`, the rollup for whole days)
equals the one read the old way (`from_events`, every figure from the events) over many ranges — whole days, days
cut by a `from`/`to` with a time zone's offset, a range within one day, unbounded ends — with and without a persona.
A rollup off by one event is caught (the last test takes one away and sees the summaries differ).
"""

from __future__ import annotations

import asyncio
import random
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
import sqlalchemy as sa

from widget_server.backends.storage import Storage, open_storage
from widget_server.backends.storage import analytics as analytics_storage
from widget_server.backends.storage.connect import migrate
from widget_server.backends.storage.tables import analytics_days, analytics_ttft, events
from widget_server.domain import tenants
from widget_server.domain.analytics.query import parse_filter
from widget_server.domain.analytics.summary import summarize
from widget_server.ids import new_id

START = datetime(2026, 3, 1, tzinfo=UTC)
DAYS = 12
PERSONAS = ["per_a", "per_b", "per_c", "per_d", None]
CHANNELS = ["widget", "api", "openai", "console", "test"]
RULES = ["term.rival", "pii.email", "topic.off_topic", None]


def _event(tenant: str, persona: str | None, conv: str, visitor: str, channel: str, ts: datetime, type_: str,
           **attributes: Any) -> dict[str, Any]:
    return {"id": new_id("evt"), "ts": ts, "tenant_id": tenant, "persona_id": persona, "conversation_id": conv,
            "visitor_id": visitor, "channel": channel, "type": type_, "schema_version": 1, "attributes": attributes}


def dataset(tenant: str, rng: random.Random) -> list[dict[str, Any]]:
    """About 150 conversations over 12 days, many of them starting within a minute of midnight UTC."""
    out: list[dict[str, Any]] = []
    for n in range(150):
        day = START + timedelta(days=rng.randrange(DAYS))
        ts = day + (timedelta(seconds=rng.choice([-1, 0, 1, 59])) if n % 3 == 0
                    else timedelta(seconds=rng.randrange(86400)))
        persona, channel = rng.choice(PERSONAS), rng.choice(CHANNELS)
        conv, visitor = f"conv_{n}", f"vis_{n % 40}"

        def add(type_: str, at: datetime, persona: str | None = persona, conv: str = conv, visitor: str = visitor,
                channel: str = channel, **attributes: Any) -> None:
            out.append(_event(tenant, persona, conv, visitor, channel, at, type_, **attributes))

        add("conversation.started", ts)
        for turn in range(rng.randrange(1, 4)):
            ts += timedelta(seconds=rng.randrange(1, 400))
            add("message.received", ts, message_id=f"m{n}.{turn}")
            if rng.random() < 0.2:
                add("guardrail.triggered", ts, rule=rng.choice(RULES), action="refuse", source="input")
            ttft = rng.choice([None, 100, 100, 250, rng.randrange(50, 3000), rng.randrange(50, 3000) + 0.5])
            add("reply.completed", ts + timedelta(milliseconds=900), message_id=f"r{n}.{turn}", ttft_ms=ttft,
                **{"gen_ai.usage.input_tokens": rng.randrange(0, 400), "gen_ai.usage.output_tokens": rng.randrange(90)})
            if rng.random() < 0.2:
                add("feedback.submitted", ts + timedelta(seconds=5), message_id=f"r{n}.{turn}",
                    rating=rng.choice(["up", "down"]))
                if rng.random() < 0.5:  # changed later, sometimes the next day
                    add("feedback.submitted", ts + timedelta(hours=rng.choice([1, 30])), message_id=f"r{n}.{turn}",
                        rating=rng.choice(["up", "down"]))
        if rng.random() < 0.15:
            add("escalation.triggered", ts + timedelta(seconds=10), reason="escalation.requested")
            if rng.random() < 0.5:
                add("escalation.resolved", ts + timedelta(minutes=20), escalated_ms=1_200_000)
        if rng.random() < 0.1:
            add("error", ts + timedelta(seconds=2), code="provider.error")
        if channel == "widget":
            add("widget.opened", ts)
    rng.shuffle(out)
    return out


def ranges(rng: random.Random) -> list[dict[str, str]]:
    """Query parameters of the REST summary: whole days, cut days (with offsets), one day's part, open ends."""
    day = lambda k: (START + timedelta(days=k)).date().isoformat()  # noqa: E731
    out: list[dict[str, str]] = [{}, {"from": day(2)}, {"to": day(7)}, {"from": day(0), "to": day(DAYS)},
                                 {"from": day(3), "to": day(4)}, {"from": day(-30), "to": day(90)}]
    for _ in range(4):
        a, b = sorted(rng.sample(range(-(2 * 86400), (DAYS + 2) * 86400), 2))
        zone = timezone(timedelta(hours=rng.choice([-8, 0, 2, 5.5])))

        def stamp(s: int, zone: timezone = zone) -> str:
            return (START + timedelta(seconds=s)).astimezone(zone).isoformat()
        out += [{"from": stamp(a), "to": stamp(b)}, {"from": stamp(a)}, {"to": stamp(b)},
                {"from": stamp(a), "to": stamp(min(b, a + 3600))}]
    return out


async def compare(storage: Storage, tenant: str, rng: random.Random, *, rounds: int = 0) -> int:
    """Every range with every persona filter, both ways, the dashboard's options too; returns how many differ."""
    differ = 0
    for params in ranges(rng)[: rounds or None]:
        for persona in ["", "per_a"]:
            filters = await parse_filter(storage, tenant, {**params, "persona": persona} if persona else params)
            for per_day, tokens in ((False, True), (True, False), (True, True)):
                new = await summarize(storage, tenant, filters, ttft_per_day=per_day, tokens=tokens)
                old = await summarize(storage, tenant, filters, ttft_per_day=per_day, tokens=tokens, from_events=True)
                differ += new != old
                if rounds == 0:
                    assert new == old, (params, persona, per_day, tokens)
    return differ


async def seeded(url: str) -> tuple[Storage, str, random.Random]:
    storage = await open_storage(url)
    tenant, _ = await tenants.create_tenant(storage, "rollup " + new_id("t")[-6:])
    rng = random.Random(12)
    rows = dataset(tenant, rng)
    for i in range(0, len(rows), 97):  # batches as the writer makes them, one retried
        await storage.events.insert(rows[i:i + 97])
    await storage.events.insert(rows[:97])
    other, _ = await tenants.create_tenant(storage, "other " + new_id("t")[-6:])  # counted apart
    await storage.events.insert(dataset(other, random.Random(3))[:200])
    return storage, tenant, rng


@pytest.mark.parametrize("batch", [5_000, 7])
def test_the_rollup_gives_the_events_summary_through_writes_erasure_and_retention(
        db_url: str, batch: int, monkeypatch: pytest.MonkeyPatch) -> None:
    # (batch 7: erasure and retention delete in many batches, each taken out of the rollup)
    monkeypatch.setattr(analytics_storage, "DELETE_BATCH", batch)

    async def run() -> None:
        storage, tenant, rng = await seeded(db_url)
        try:
            await compare(storage, tenant, rng)
            erased = await storage.events.erase_visitor(tenant, "vis_7")
            assert erased["events"] > 0
            async with storage.engine.connect() as conn:  # every batch of them, not the first only
                left = (await conn.execute(sa.select(sa.func.count()).select_from(events).where(
                    events.c.tenant_id == tenant, events.c.visitor_id == "vis_7"))).scalar()
            assert left == 0
            await compare(storage, tenant, rng)
            purged = await storage.events.purge_before(tenant, START + timedelta(days=3, hours=5))  # cuts a day
            assert purged["events"] > 0
            await compare(storage, tenant, rng)
        finally:
            await storage.close()
    asyncio.run(run())


async def _rollup_rows(storage: Storage) -> dict[str, list[tuple[Any, ...]]]:
    async with storage.engine.connect() as conn:
        return {t.name: sorted(tuple(r) for r in (await conn.execute(sa.select(t))).all())
                for t in (analytics_days, analytics_ttft)}


def test_the_migration_fills_the_rollup_from_the_events_already_stored(db_url: str) -> None:
    async def run() -> None:
        storage, _tenant, _rng = await seeded(db_url)
        try:
            written = await _rollup_rows(storage)
            assert written["analytics_days"] and written["analytics_ttft"]
            async with storage.engine.begin() as conn:  # back to before 0023, with the events kept
                await conn.execute(sa.text("DROP TABLE analytics_days"))
                await conn.execute(sa.text("DROP TABLE analytics_ttft"))
                await conn.execute(sa.text("UPDATE alembic_version SET version_num = '0022'"))
            await migrate(storage.engine)
            assert await _rollup_rows(storage) == written
        finally:
            await storage.close()
    asyncio.run(run())


async def _nudge(storage: Storage, rows: list[tuple[sa.Table, Any]], by: int) -> None:
    async with storage.engine.begin() as conn:
        for table, row in rows:
            key = [col == getattr(row, col.name) for col in table.primary_key.columns]
            await conn.execute(sa.update(table).where(*key).values(n=table.c.n + by))


def test_a_rollup_off_by_one_event_is_seen(db_url: str) -> None:
    async def run() -> None:
        storage, tenant, _rng = await seeded(db_url)
        try:
            assert await compare(storage, tenant, random.Random(5), rounds=8) == 0
            d, t = analytics_days.c, analytics_ttft.c
            async with storage.engine.connect() as conn:
                message = (await conn.execute(sa.select(analytics_days).where(
                    d.tenant_id == tenant, d.item == "message.received").order_by(d.day).limit(1))).one()
                bar = (await conn.execute(sa.select(analytics_ttft).where(t.tenant_id == tenant)
                                          .order_by(t.day, t.bucket).limit(1))).one()
                bucket = (await conn.execute(sa.select(analytics_days).where(
                    d.tenant_id == tenant, d.day == bar.day, d.persona_id == bar.persona_id,
                    d.figure == "ttft-bucket", d.item == str(bar.bucket)))).one()
            # one visitor message of one day too few; one reply's time to first token too few
            for rows in ([(analytics_days, message)], [(analytics_ttft, bar), (analytics_days, bucket)]):
                await _nudge(storage, rows, -1)
                assert await compare(storage, tenant, random.Random(5), rounds=8) > 0
                await _nudge(storage, rows, +1)
                assert await compare(storage, tenant, random.Random(5), rounds=8) == 0
        finally:
            await storage.close()
    asyncio.run(run())
