"""Analytics rows: writing event batches, keyset reads, erasure and retention (every query tenant-scoped)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from widget_server.backends.storage import rollup
from widget_server.backends.storage.deliveries import enqueue
from widget_server.backends.storage.rows import Row, as_row
from widget_server.backends.storage.tables import (
    analytics_settings,
    conversations,
    events,
    feedback,
    messages,
)

DELETE_BATCH = 5_000  # events deleted (and taken out of the rollup) per statement by erasure and retention


class RowsRefused(Exception):
    """The database refused the values of a batch (a NUL byte, a lone surrogate, a number out of range), not
    because it is away: the same batch would be refused again."""


def refused_for_values(exc: sa.exc.StatementError) -> bool:
    """Whether the database (or the driver, before sending) refused the values rather than being unavailable:
    SQLSTATE class 22 (data exception) or 23 (integrity), whatever the driver calls them, or a value that could not
    be serialized at all."""
    if not isinstance(exc, sa.exc.DBAPIError):
        return True
    if isinstance(exc, sa.exc.DataError | sa.exc.IntegrityError):
        return True
    cause = exc.orig.__cause__ if exc.orig is not None else None
    state = str(getattr(exc.orig, "sqlstate", None) or getattr(cause, "sqlstate", None) or "")
    return state[:2] in ("22", "23")


EVENT_LOCK = 727275  # PostgreSQL advisory lock: event batches commit one at a time, in `seq` order


@dataclass(frozen=True)
class EventFilter:
    """The filters shared by the query, the export and the summary; all optional."""

    types: tuple[str, ...] = ()
    persona_id: str | None = None
    conversation_id: str | None = None
    visitor_id: str | None = None
    ts_from: datetime | None = None  # inclusive
    ts_to: datetime | None = None  # exclusive

    def where(self, tenant_id: str) -> list[sa.ColumnElement[bool]]:
        c = events.c
        clauses: list[sa.ColumnElement[bool]] = [c.tenant_id == tenant_id]
        if self.types:
            clauses.append(c.type.in_(self.types))
        if self.persona_id:
            clauses.append(c.persona_id == self.persona_id)
        if self.conversation_id:
            clauses.append(c.conversation_id == self.conversation_id)
        if self.visitor_id:
            clauses.append(c.visitor_id == self.visitor_id)
        if self.ts_from:
            clauses.append(c.ts >= self.ts_from)
        if self.ts_to:
            clauses.append(c.ts < self.ts_to)
        return clauses


class EventStore:
    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        self.dialect = engine.dialect.name

    async def insert(self, rows: Sequence[Row]) -> int:
        """Write a batch in one transaction. An event already stored (a retried batch) is skipped by its `id`.

        The same transaction enqueues each newly stored event's webhook deliveries (the outbox), so a crash
        never leaves an event without them, and a retried batch never enqueues one twice; their number is returned.
        On PostgreSQL an advisory lock makes batches from every node commit one after another, so `seq` (drawn
        inside the lock) grows in commit order and a cursor that passed `seq` N never misses a later commit."""
        if not rows:
            return 0
        insert: Any = (postgresql.insert(events) if self.dialect == "postgresql" else sqlite.insert(events))
        insert = insert.on_conflict_do_nothing(index_elements=["id"]).returning(events.c.id)
        try:
            async with self.engine.begin() as conn:
                if self.dialect == "postgresql":
                    await conn.execute(sa.text(f"SELECT pg_advisory_xact_lock({EVENT_LOCK})"))
                stored = set((await conn.execute(insert, list(rows))).scalars())
                if not stored:
                    return 0
                new = [r for r in rows if r["id"] in stored]
                for statement, params in rollup.statements(self.dialect, *rollup.fold(new, self.dialect)):
                    await conn.execute(statement, params)
                return await enqueue(conn, new)
        except sa.exc.StatementError as exc:
            if refused_for_values(exc):
                raise RowsRefused(str(exc.orig)[:300]) from exc  # the rows, not the database: retrying changes nothing
            raise  # the database is away or busy: worth retrying

    async def high_water(self, tenant_id: str) -> int:
        """The newest committed `seq` of the tenant: an export stops there, so what arrives meanwhile is out."""
        query = sa.select(sa.func.max(events.c.seq)).where(events.c.tenant_id == tenant_id)
        async with self.engine.connect() as conn:
            return int((await conn.execute(query)).scalar() or 0)

    async def page(
        self, tenant_id: str, filters: EventFilter, *, after: int = 0, limit: int = 100, upto: int | None = None
    ) -> list[Row]:
        """Events in commit order with `seq` above `after` (the keyset cursor)."""
        clauses = filters.where(tenant_id)
        clauses.append(events.c.seq > after)
        if upto is not None:
            clauses.append(events.c.seq <= upto)
        query = sa.select(events).where(*clauses).order_by(events.c.seq).limit(limit)
        async with self.engine.connect() as conn:
            return [as_row(r) for r in (await conn.execute(query)).mappings().all()]

    async def scan(self, tenant_id: str, filters: EventFilter, *, upto: int, page: int = 2000) -> AsyncIterator[Row]:
        """Every matching event up to `upto`, page by page: memory stays flat however many there are."""
        after = 0
        while True:
            rows = await self.page(tenant_id, filters, after=after, limit=page, upto=upto)
            for row in rows:
                yield row
            if len(rows) < page:
                return
            after = rows[-1]["seq"]

    # erasure and retention

    async def erase_visitor(self, tenant_id: str, visitor_id: str) -> dict[str, int]:
        """Remove a visitor's events, conversations, messages and feedback in one transaction; return the counts."""
        convs = sa.select(conversations.c.id).where(
            conversations.c.tenant_id == tenant_id, conversations.c.visitor_id == visitor_id
        ).scalar_subquery()
        async with self.engine.begin() as conn:
            counts = {
                "events": await self._delete_events(conn, tenant_id, events.c.visitor_id == visitor_id),
                "feedback": await _delete(conn, feedback, feedback.c.tenant_id == tenant_id,
                                          feedback.c.conversation_id.in_(convs)),
                "messages": await _delete(conn, messages, messages.c.tenant_id == tenant_id,
                                          messages.c.conversation_id.in_(convs)),
                "conversations": await _delete(conn, conversations, conversations.c.tenant_id == tenant_id,
                                               conversations.c.visitor_id == visitor_id),
            }
        return counts

    async def purge_before(self, tenant_id: str, cutoff: datetime) -> dict[str, int]:
        """Retention: events older than `cutoff`, and conversations (with their messages) idle since before it."""
        old = sa.select(conversations.c.id).where(
            conversations.c.tenant_id == tenant_id, conversations.c.updated_at < cutoff
        ).scalar_subquery()
        async with self.engine.begin() as conn:
            return {
                "events": await self._delete_events(conn, tenant_id, events.c.ts < cutoff),
                "feedback": await _delete(conn, feedback, feedback.c.tenant_id == tenant_id,
                                          feedback.c.conversation_id.in_(old)),
                "messages": await _delete(conn, messages, messages.c.tenant_id == tenant_id,
                                          messages.c.conversation_id.in_(old)),
                "conversations": await _delete(conn, conversations, conversations.c.tenant_id == tenant_id,
                                               conversations.c.updated_at < cutoff),
            }

    async def _delete_events(self, conn: AsyncConnection, tenant_id: str, where: sa.ColumnElement[bool]) -> int:
        """Delete events and take what they counted out of the rollup, in the caller's transaction. On PostgreSQL
        under the writers' lock: a batch committed between the delete and the rollup's update cannot slip past
        either."""
        if self.dialect == "postgresql":
            await conn.execute(sa.text(f"SELECT pg_advisory_xact_lock({EVENT_LOCK})"))
        total = 0
        while True:  # in batches, so a first sweep over years of events holds one batch in memory, not all of them
            batch = sa.select(events.c.seq).where(events.c.tenant_id == tenant_id, where).order_by(
                events.c.seq).limit(DELETE_BATCH).scalar_subquery()
            deleted = (await conn.execute(sa.delete(events).where(events.c.seq.in_(batch)).returning(
                *(events.c[name] for name in rollup.FOLDED)))).mappings().all()
            if not deleted:
                break
            total += len(deleted)
            for statement, params in rollup.statements(self.dialect, *rollup.fold(deleted, self.dialect), sign=-1):
                await conn.execute(statement, params)
            if len(deleted) < DELETE_BATCH:
                break
        if total:
            for statement in rollup.emptied(tenant_id):
                await conn.execute(statement)
        return total

    async def get_retention(self, tenant_id: str) -> int | None:
        query = sa.select(analytics_settings.c.retention_days).where(analytics_settings.c.tenant_id == tenant_id)
        async with self.engine.connect() as conn:
            value = (await conn.execute(query)).scalar()
        return int(value) if value is not None else None

    async def set_retention(self, tenant_id: str, days: int | None, stamp: datetime) -> None:
        async with self.engine.begin() as conn:
            await conn.execute(sa.delete(analytics_settings).where(analytics_settings.c.tenant_id == tenant_id))
            await conn.execute(sa.insert(analytics_settings).values(
                tenant_id=tenant_id, retention_days=days, updated_at=stamp))

    async def retention_overrides(self) -> dict[str, int | None]:
        """Each tenant that set its own retention (None: keep until erased)."""
        async with self.engine.connect() as conn:
            rows = (await conn.execute(sa.select(analytics_settings))).mappings().all()
        return {r["tenant_id"]: r["retention_days"] for r in rows}


async def _delete(conn: AsyncConnection, table: sa.Table, *where: sa.ColumnElement[bool]) -> int:
    result = await conn.execute(sa.delete(table).where(*where))
    return int(result.rowcount or 0)
