"""Counting GET /v1/persona requests against a key's monthly quota, atomically: one INSERT … ON CONFLICT DO UPDATE
… WHERE count < quota per request, so two nodes (or two requests of one) can never both take the last one."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncEngine

from widget_server.backends.storage.tables import persona_usage


class PersonaUsageStore:
    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        self.dialect = engine.dialect.name

    async def take(self, key_id: str, period_start: datetime, quota: int) -> int | None:
        """Count one request: the count so far this period, this one included; None when the quota was used up."""
        if quota <= 0:
            return None
        insert: Any = (postgresql.insert if self.dialect == "postgresql" else sqlite.insert)(persona_usage)
        table = persona_usage.c
        statement = insert.values(key_id=key_id, period_start=period_start, count=1).on_conflict_do_update(
            index_elements=[table.key_id, table.period_start], set_={"count": table.count + 1},
            where=table.count < quota).returning(table.count)
        async with self.engine.begin() as conn:
            count = (await conn.execute(statement)).scalar_one_or_none()
        return None if count is None else int(count)

    async def used(self, key_id: str, period_start: datetime) -> int:
        t = persona_usage.c
        async with self.engine.connect() as conn:
            count = (await conn.execute(sa.select(t.count).where(t.key_id == key_id, t.period_start == period_start))
                     ).scalar_one_or_none()
        return int(count or 0)
