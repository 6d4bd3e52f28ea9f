"""Idempotency keys (every query tenant-scoped): claimed by an insert, so that of two nodes racing for one key
exactly one runs the request; finished with the answer, or released when there is none worth keeping."""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine

from widget_server.backends.storage.rows import Row, as_row
from widget_server.backends.storage.tables import idempotency_keys

K = idempotency_keys.c


class IdempotencyStore:
    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine

    async def claim(self, row: Row, now: datetime, *, stale_before: datetime) -> bool:
        """Insert `row` (state running) unless a live row holds the key (False). A row past its expiry, or still
        running since before `stale_before` (its node died), is replaced in the same transaction."""
        where = (K.tenant_id == row["tenant_id"], K.key_hash == row["key_hash"])
        gone = sa.or_(K.expires_at <= now, sa.and_(K.state == "running", K.created_at < stale_before))
        try:
            async with self.engine.begin() as conn:
                await conn.execute(sa.delete(idempotency_keys).where(*where, gone))
                await conn.execute(sa.insert(idempotency_keys).values(**row))
        except IntegrityError:
            return False
        return True

    async def get(self, tenant_id: str, key_hash: str) -> Row | None:
        query = sa.select(idempotency_keys).where(K.tenant_id == tenant_id, K.key_hash == key_hash)
        async with self.engine.connect() as conn:
            row = (await conn.execute(query)).mappings().first()
        return as_row(row) if row else None

    async def finish(self, tenant_id: str, key_hash: str, response: str) -> None:
        async with self.engine.begin() as conn:
            await conn.execute(sa.update(idempotency_keys).where(K.tenant_id == tenant_id, K.key_hash == key_hash)
                               .values(state="done", response=response))

    async def release(self, tenant_id: str, key_hash: str) -> None:
        async with self.engine.begin() as conn:
            await conn.execute(sa.delete(idempotency_keys).where(K.tenant_id == tenant_id, K.key_hash == key_hash))

    async def sweep(self, now: datetime) -> int:
        """Delete every expired key (of all tenants: expiry is the one rule they share); how many went."""
        async with self.engine.begin() as conn:
            result = await conn.execute(sa.delete(idempotency_keys).where(K.expires_at <= now))
        return int(result.rowcount or 0)
