"""Persona groups, their members and the tenant library; every query names the tenant (another's id is absent)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from widget_server.backends.storage.group_tables import group_personas, library_personas, persona_groups
from widget_server.backends.storage.rows import Row, as_row
from widget_server.backends.storage.tables import avatars

G, M, L = persona_groups.c, group_personas.c, library_personas.c


class PersonaGroupStore:
    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine

    async def _rows(self, query: sa.Select[tuple[object, ...]]) -> list[Row]:
        async with self.engine.connect() as conn:
            return [as_row(r) for r in (await conn.execute(query)).mappings().all()]

    async def _one(self, query: sa.Select[tuple[object, ...]]) -> Row | None:
        rows = await self._rows(query.limit(1))
        return rows[0] if rows else None

    async def add_group(self, group: Row, members: list[Row]) -> None:
        """The group and its members in one transaction: never a group half made."""
        async with self.engine.begin() as conn:
            await conn.execute(sa.insert(persona_groups).values(**group))
            if members:
                await conn.execute(sa.insert(group_personas), members)

    async def groups(self, tenant_id: str, project_id: str, *, after: str | None, limit: int) -> list[Row]:
        """Oldest first (ids sort by creation), from after `after` (a keyset cursor)."""
        chosen = sa.and_(G.tenant_id == tenant_id, G.project_id == project_id, *([G.id > after] if after else []))
        return await self._rows(sa.select(persona_groups).where(chosen).order_by(G.id).limit(limit))

    async def group(self, tenant_id: str, project_id: str, group_id: str) -> Row | None:
        return await self._one(sa.select(persona_groups).where(G.tenant_id == tenant_id, G.project_id == project_id,
                                                                 G.id == group_id))

    def _members(self, tenant_id: str, project_id: str, group_id: str) -> sa.ColumnElement[bool]:
        return sa.and_(M.tenant_id == tenant_id, M.project_id == project_id, M.group_id == group_id)

    async def members(self, tenant_id: str, project_id: str, group_id: str, *, after: str | None,
                      limit: int) -> list[Row]:
        chosen = sa.and_(self._members(tenant_id, project_id, group_id), *([M.id > after] if after else []))
        return await self._rows(sa.select(group_personas).where(chosen).order_by(M.id).limit(limit))

    async def member(self, tenant_id: str, project_id: str, group_id: str, persona_id: str) -> Row | None:
        return await self._one(sa.select(group_personas).where(self._members(tenant_id, project_id, group_id),
                                                                 M.id == persona_id))

    async def change_overrides(self, tenant_id: str, project_id: str, group_id: str, persona_id: str,
                               change: Callable[[dict[str, Any]], dict[str, Any]]) -> Row | None:
        """The member with `change` applied to its overrides, read and written in one transaction (the row locked
        on PostgreSQL; SQLite has one writer), so that two patches of different fields both hold."""
        chosen = sa.and_(self._members(tenant_id, project_id, group_id), M.id == persona_id)
        async with self.engine.begin() as conn:
            found = (await conn.execute(sa.select(group_personas).where(chosen).with_for_update())).mappings().first()
            if found is None:
                return None
            row = as_row(found)
            row["overrides"] = change(dict(row["overrides"]))
            await conn.execute(sa.update(group_personas).where(chosen).values(overrides=row["overrides"]))
            return row

    async def add_member(self, row: Row) -> None:
        async with self.engine.begin() as conn:
            await conn.execute(sa.insert(group_personas).values(**row))

    async def delete_members(self, tenant_id: str, project_id: str, group_id: str,
                             persona_id: str | None = None) -> int:
        """The group's personas (or one of them); test runs are other rows and stay."""
        chosen = self._members(tenant_id, project_id, group_id)
        if persona_id is not None:
            chosen = sa.and_(chosen, M.id == persona_id)
        images = sa.delete(avatars).where(avatars.c.tenant_id == tenant_id, avatars.c.owner_kind == "group_persona",
                                          avatars.c.owner_id.in_(sa.select(M.id).where(chosen)))
        async with self.engine.begin() as conn:  # their avatars with them, in one transaction
            await conn.execute(images)
            return int((await conn.execute(sa.delete(group_personas).where(chosen))).rowcount or 0)

    async def add_library(self, row: Row) -> None:
        async with self.engine.begin() as conn:
            await conn.execute(sa.insert(library_personas).values(**row))

    async def library(self, tenant_id: str, *, after: str | None, limit: int) -> list[Row]:
        chosen = sa.and_(L.tenant_id == tenant_id, *([L.id > after] if after else []))
        return await self._rows(sa.select(library_personas).where(chosen).order_by(L.id).limit(limit))

    async def library_persona(self, tenant_id: str, persona_id: str) -> Row | None:
        return await self._one(sa.select(library_personas).where(L.tenant_id == tenant_id, L.id == persona_id))

    async def delete_library(self, tenant_id: str, persona_id: str) -> bool:
        query = sa.delete(library_personas).where(L.tenant_id == tenant_id, L.id == persona_id)
        async with self.engine.begin() as conn:
            return int((await conn.execute(query)).rowcount or 0) > 0
