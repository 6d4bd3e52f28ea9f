"""Generated avatars: one per owner, replaced in one transaction with the owner's `avatar_url`, so that an owner
deleted meanwhile leaves no avatar behind and a regenerated one leaves no old one. Read by id alone: the id is the
unguessable part of a public URL."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from widget_server.backends.storage.group_tables import group_personas
from widget_server.backends.storage.rows import Row, as_row, now
from widget_server.backends.storage.tables import avatars, personas, test_personas

A = avatars.c


class OwnerGone(Exception):
    """The persona the avatar was for is not there (deleted, or another tenant's)."""


async def delete_owned(conn: AsyncConnection, tenant_id: str, kind: str, owner_id: str) -> int:
    """Delete the owner's avatar within the caller's transaction (the owner's own deletion)."""
    query = sa.delete(avatars).where(A.tenant_id == tenant_id, A.owner_kind == kind, A.owner_id == owner_id)
    return int((await conn.execute(query)).rowcount or 0)


class AvatarStore:
    """The avatars table; writes also set the owner's `avatar_url`, in the same transaction."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine

    async def get(self, avatar_id: str) -> Row | None:
        async with self.engine.connect() as conn:
            row = (await conn.execute(sa.select(avatars).where(A.id == avatar_id))).mappings().first()
        return as_row(row) if row else None

    async def of_owner(self, tenant_id: str, kind: str, owner_id: str) -> Row | None:
        query = sa.select(avatars).where(A.tenant_id == tenant_id, A.owner_kind == kind, A.owner_id == owner_id)
        async with self.engine.connect() as conn:
            row = (await conn.execute(query)).mappings().first()
        return as_row(row) if row else None

    async def put_for_persona(self, row: Row, doc: dict[str, Any]) -> bool:
        """Store the persona's avatar and its document (with the new `avatar_url`); whether one was replaced."""
        update = (sa.update(personas).where(personas.c.tenant_id == row["tenant_id"], personas.c.id == row["owner_id"])
                  .values(doc=doc, updated_at=now()))
        return await self._put(row, update)

    async def put_for_test_persona(self, row: Row, url: str) -> bool:
        t = test_personas.c
        update = (sa.update(test_personas).where(t.tenant_id == row["tenant_id"], t.id == row["owner_id"])
                  .values(avatar_url=url, updated_at=now()))
        return await self._put(row, update)

    async def put_for_group_persona(self, row: Row) -> bool:
        """A group persona has no column to set (its image_url is looked up here): the no-op update only proves,
        in the same transaction, that the member is still there."""
        m = group_personas.c
        update = (sa.update(group_personas).where(m.tenant_id == row["tenant_id"], m.id == row["owner_id"])
                  .values(id=m.id))
        return await self._put(row, update)

    async def of_owners(self, tenant_id: str, kind: str, owner_ids: list[str]) -> dict[str, Row]:
        """The avatars of these owners, by owner id (one query for a whole group)."""
        if not owner_ids:
            return {}
        query = sa.select(A.id, A.owner_id, A.media_type).where(A.tenant_id == tenant_id, A.owner_kind == kind,
                                                                A.owner_id.in_(owner_ids))
        async with self.engine.connect() as conn:
            return {r["owner_id"]: dict(r) for r in (await conn.execute(query)).mappings().all()}

    async def _put(self, row: Row, owner_update: sa.Update) -> bool:
        for attempt in (1, 2):  # a concurrent regeneration may insert between our delete and insert: once more
            try:
                async with self.engine.begin() as conn:
                    replaced = await delete_owned(conn, row["tenant_id"], row["owner_kind"], row["owner_id"]) > 0
                    await conn.execute(sa.insert(avatars).values(**row))
                    if not (await conn.execute(owner_update)).rowcount:
                        raise OwnerGone(row["owner_id"])  # rolls the insert back
                    return replaced
            except IntegrityError:
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")
