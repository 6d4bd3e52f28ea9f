"""Test runs (every query tenant-scoped): stored when asked for, updated as they run, listed newest first."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from widget_server.backends.storage.rows import Row, as_row
from widget_server.backends.storage.tables import test_runs

SUMMARY_COLUMNS = [c for c in test_runs.c if c.name not in ("suite", "result")]  # what a list shows


class TestRunStore:
    __test__ = False  # (not a pytest class)

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine

    async def add(self, row: Row) -> None:
        async with self.engine.begin() as conn:
            await conn.execute(sa.insert(test_runs).values(**row))

    async def get(self, tenant_id: str, run_id: str) -> Row | None:
        t = test_runs.c
        async with self.engine.connect() as conn:
            row = (await conn.execute(sa.select(test_runs).where(t.tenant_id == tenant_id, t.id == run_id))
                   ).mappings().first()
        return as_row(row) if row else None

    async def list(self, tenant_id: str, *, limit: int, before: datetime | None = None) -> list[Row]:
        t = test_runs.c
        query = sa.select(*SUMMARY_COLUMNS).where(t.tenant_id == tenant_id)
        if before is not None:
            query = query.where(t.created_at < before)
        query = query.order_by(t.created_at.desc(), t.id.desc()).limit(limit)
        async with self.engine.connect() as conn:
            return [as_row(r) for r in (await conn.execute(query)).mappings().all()]

    async def update(self, tenant_id: str, run_id: str, values: Row, *,
                     from_status: Sequence[str] | None = None) -> bool:
        """Change a run (only while its status is one of `from_status`, when given): whether it changed."""
        t = test_runs.c
        where = [t.tenant_id == tenant_id, t.id == run_id]
        if from_status is not None:
            where.append(t.status.in_(tuple(from_status)))
        async with self.engine.begin() as conn:
            result = await conn.execute(sa.update(test_runs).where(*where).values(**values))
        return bool(result.rowcount)
