"""Webhook endpoints and their delivery attempts (every query tenant-scoped)."""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine

from widget_server.backends.storage.analytics import EVENT_LOCK
from widget_server.backends.storage.rows import Row, as_row
from widget_server.backends.storage.tables import webhook_attempts, webhook_deliveries, webhooks

WEBHOOK_LOCK = 727276  # PostgreSQL advisory lock: the per-tenant limit holds against concurrent creates


class WebhookLimit(Exception):
    """The tenant already has as many webhooks as allowed."""


class WebhookStore:
    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        self.dialect = engine.dialect.name

    async def create(self, row: Row, *, most: int) -> None:
        """Insert unless the tenant already has `most` webhooks: one INSERT … SELECT … WHERE count < most."""
        count = sa.select(sa.func.count()).select_from(webhooks).where(webhooks.c.tenant_id == row["tenant_id"])
        values = sa.select(*[sa.literal(row[c.name], type_=c.type).label(c.name) for c in webhooks.columns])
        insert = sa.insert(webhooks).from_select([c.name for c in webhooks.columns],
                                                 values.where(count.scalar_subquery() < most))
        async with self.engine.begin() as conn:
            if self.dialect == "postgresql":  # READ COMMITTED would let two concurrent creates both pass the count
                await conn.execute(sa.text(f"SELECT pg_advisory_xact_lock({WEBHOOK_LOCK})"))
            if not (await conn.execute(insert)).rowcount:
                raise WebhookLimit(most)

    async def for_tenant(self, tenant_id: str) -> list[Row]:
        query = sa.select(webhooks).where(webhooks.c.tenant_id == tenant_id).order_by(webhooks.c.id)
        async with self.engine.connect() as conn:
            return [as_row(r) for r in (await conn.execute(query)).mappings().all()]

    async def get(self, tenant_id: str, webhook_id: str) -> Row | None:
        query = sa.select(webhooks).where(webhooks.c.tenant_id == tenant_id, webhooks.c.id == webhook_id)
        async with self.engine.connect() as conn:
            row = (await conn.execute(query)).mappings().first()
        return as_row(row) if row else None

    async def delete(self, tenant_id: str, webhook_id: str) -> bool:
        """The webhook, its pending deliveries and its attempts; False when the tenant has no such webhook.

        On PostgreSQL this waits for an event batch being stored (the advisory lock of `EventStore.insert`),
        which may be enqueueing deliveries to this webhook: the batch would otherwise fail on the foreign key."""
        async with self.engine.begin() as conn:
            if self.dialect == "postgresql":
                await conn.execute(sa.text(f"SELECT pg_advisory_xact_lock({EVENT_LOCK})"))
            for table in (webhook_deliveries, webhook_attempts):
                await conn.execute(sa.delete(table).where(table.c.tenant_id == tenant_id,
                                                          table.c.webhook_id == webhook_id))
            result = await conn.execute(
                sa.delete(webhooks).where(webhooks.c.tenant_id == tenant_id, webhooks.c.id == webhook_id))
        return bool(result.rowcount)

    async def record_attempts(self, rows: Sequence[Row]) -> int:
        """Store attempts in one transaction; returns how many were stored.

        An attempt whose webhook was deleted meanwhile is refused by the foreign key: the batch is then
        stored row by row and those rows are left out."""
        if not rows:
            return 0
        try:
            async with self.engine.begin() as conn:
                await conn.execute(sa.insert(webhook_attempts), list(rows))
            return len(rows)
        except IntegrityError:
            if len(rows) == 1:
                return 0
        stored = 0
        for row in rows:
            stored += await self.record_attempts([row])
        return stored

    async def list_attempts(
        self, tenant_id: str, webhook_id: str, *, limit: int, before: str | None = None
    ) -> list[Row]:
        """Newest first; `before` is the id of the last attempt of the previous page."""
        c = webhook_attempts.c
        query = sa.select(webhook_attempts).where(c.tenant_id == tenant_id, c.webhook_id == webhook_id)
        if before:
            query = query.where(c.id < before)
        async with self.engine.connect() as conn:
            result = await conn.execute(query.order_by(c.id.desc()).limit(limit))
            return [as_row(r) for r in result.mappings().all()]
