"""Test personas (the simulated visitors of test suites), every query tenant-scoped. The unique constraint on
(tenant, folded name) decides between two writers of one name: the loser gets `NameTaken`, never a 500."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine

from widget_server.backends.storage.avatars import delete_owned
from widget_server.backends.storage.rows import Row, as_row, now
from widget_server.backends.storage.tables import test_personas

T = test_personas.c


class NameTaken(Exception):
    """The tenant has a test persona with this name already."""


class TestPersonaStore:
    __test__ = False  # a store, not a test class, whatever pytest makes of the name

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine

    async def _write(self, query: sa.Executable) -> int:
        try:
            async with self.engine.begin() as conn:
                return int((await conn.execute(query)).rowcount or 0)
        except IntegrityError as exc:
            raise NameTaken(str(exc.orig)) from exc

    async def add(self, row: Row) -> None:
        await self._write(sa.insert(test_personas).values(**row))

    async def get(self, tenant_id: str, persona_id: str) -> Row | None:
        query = sa.select(test_personas).where(T.tenant_id == tenant_id, T.id == persona_id)
        async with self.engine.connect() as conn:
            row = (await conn.execute(query)).mappings().first()
        return as_row(row) if row else None

    async def get_by_name(self, tenant_id: str, name_key: str) -> Row | None:
        """The tenant's test persona of this folded name (`domain.testing.personas.name_key`)."""
        query = sa.select(test_personas).where(T.tenant_id == tenant_id, T.name_key == name_key)
        async with self.engine.connect() as conn:
            row = (await conn.execute(query)).mappings().first()
        return as_row(row) if row else None

    async def page(self, tenant_id: str, *, after: str | None = None, limit: int) -> list[Row]:
        """In id order (creation order), from after `after` (a keyset cursor)."""
        query = sa.select(test_personas).where(T.tenant_id == tenant_id)
        if after:
            query = query.where(T.id > after)
        async with self.engine.connect() as conn:
            rows = (await conn.execute(query.order_by(T.id).limit(limit))).mappings().all()
        return [as_row(r) for r in rows]

    async def count(self, tenant_id: str) -> int:
        query = sa.select(sa.func.count()).select_from(test_personas).where(T.tenant_id == tenant_id)
        async with self.engine.connect() as conn:
            return int((await conn.execute(query)).scalar_one())

    async def update(self, tenant_id: str, persona_id: str, name_key: str, doc: dict[str, Any]) -> bool:
        """Whether there was such a test persona to change."""
        query = (sa.update(test_personas).where(T.tenant_id == tenant_id, T.id == persona_id)
                 .values(name_key=name_key, doc=doc, updated_at=now()))
        return await self._write(query) > 0

    async def delete(self, tenant_id: str, persona_id: str) -> bool:
        """The test persona and its avatar, in one transaction."""
        async with self.engine.begin() as conn:
            await delete_owned(conn, tenant_id, "test_persona", persona_id)
            query = sa.delete(test_personas).where(T.tenant_id == tenant_id, T.id == persona_id)
            return int((await conn.execute(query)).rowcount or 0) > 0
