"""Prompt jobs in storage. Reads a tenant asks for are tenant-scoped; the worker's claims are not (any node runs
any tenant's job) and are all conditional UPDATEs: a claim succeeds only while the row is still as it was seen,
so two nodes that look at once never both run a job."""

from __future__ import annotations

from collections.abc import Collection
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from widget_server.backends.storage.job_tables import prompt_jobs
from widget_server.backends.storage.rows import Row, as_row

ENDED = ("succeeded", "failed", "cancelled")


class PromptJobStore:
    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine

    async def add(self, row: Row) -> None:
        async with self.engine.begin() as conn:
            await conn.execute(sa.insert(prompt_jobs).values(**row))

    async def get(self, tenant_id: str, job_id: str) -> Row | None:
        j = prompt_jobs.c
        return await self._one(sa.select(prompt_jobs).where(j.tenant_id == tenant_id, j.id == job_id))

    async def get_any(self, job_id: str) -> Row | None:
        """A job of whichever tenant (the worker, which was handed its id by a claim)."""
        return await self._one(sa.select(prompt_jobs).where(prompt_jobs.c.id == job_id))

    async def newest(self, tenant_id: str, *, limit: int, before: str | None = None) -> list[Row]:
        """Newest first (ids are time-ordered); `before` is the id the previous page ended with."""
        j = prompt_jobs.c
        query = sa.select(prompt_jobs).where(j.tenant_id == tenant_id)
        if before is not None:
            query = query.where(j.id < before)
        async with self.engine.connect() as conn:
            rows = (await conn.execute(query.order_by(j.id.desc()).limit(limit))).mappings().all()
        return [as_row(r) for r in rows]

    async def due(self, at: datetime, limit: int) -> list[Row]:
        """Candidates for a claim, oldest first: queued jobs, running ones whose lease lapsed, and ended ones whose
        callback is still to be delivered by nobody. Only candidates: `claim` decides."""
        j = prompt_jobs.c
        lapsed = sa.or_(j.lease_until.is_(None), j.lease_until < at)
        query = (sa.select(j.id, j.status, j.attempts, j.lease_until, j.callback_state, j.callback_url, j.request_id)
                 .where(sa.or_(j.status == "queued", sa.and_(j.status == "running", j.lease_until < at),
                               sa.and_(j.status.in_(ENDED), j.callback_state == "pending", lapsed)))
                 .order_by(j.id).limit(limit))
        async with self.engine.connect() as conn:
            return [as_row(r) for r in (await conn.execute(query)).mappings().all()]

    async def update(self, job_id: str, values: Row, *, status: Collection[str] | None = None,
                     claimed_by: str | None = None, lapsed_at: datetime | None = None, attempts: int | None = None,
                     tenant_id: str | None = None) -> bool:
        """Change a job only while it is as given (its status one of `status`, claimed by `claimed_by`, its lease
        lapsed at `lapsed_at`, `attempts` runs so far): whether it changed. This is the claim: never read-then-write."""
        j = prompt_jobs.c
        where: list[Any] = [j.id == job_id]
        if tenant_id is not None:
            where.append(j.tenant_id == tenant_id)
        if status is not None:
            where.append(j.status.in_(tuple(status)))
        if claimed_by is not None:
            where.append(j.claimed_by == claimed_by)
        if lapsed_at is not None:
            where.append(sa.or_(j.lease_until.is_(None), j.lease_until < lapsed_at))
        if attempts is not None:
            where.append(j.attempts == attempts)
        async with self.engine.begin() as conn:
            result = await conn.execute(sa.update(prompt_jobs).where(*where).values(**values))
        return bool(result.rowcount)

    async def _one(self, query: Any) -> Row | None:
        async with self.engine.connect() as conn:
            row = (await conn.execute(query)).mappings().first()
        return as_row(row) if row else None
