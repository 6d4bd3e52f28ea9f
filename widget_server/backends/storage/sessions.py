"""Prompt sessions: a tenant's conversations on some channels (the API's), newest first, with their message counts,
in two queries per page (the conversations, then the counts of all of them at once)."""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from widget_server.backends.storage.rows import Row, as_row
from widget_server.backends.storage.tables import conversations, messages


class SessionStore:
    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine

    async def newest(self, tenant_id: str, channels: Sequence[str], *, limit: int,
                   before: str | None = None) -> list[Row]:
        """The conversations, each with `messages` and `visitor_turns` (counts over its messages)."""
        c = conversations.c
        query = sa.select(conversations).where(c.tenant_id == tenant_id, c.channel.in_(tuple(channels)))
        if before is not None:
            query = query.where(c.id < before)
        async with self.engine.connect() as conn:
            rows = [as_row(r) for r in
                    (await conn.execute(query.order_by(c.id.desc()).limit(limit))).mappings().all()]
            counts = await self._counts(conn, tenant_id, [r["id"] for r in rows]) if rows else {}
        for row in rows:
            row["messages"], row["visitor_turns"] = counts.get(row["id"], (0, 0))
        return rows

    @staticmethod
    async def _counts(conn: AsyncConnection, tenant_id: str,
                      ids: list[str]) -> dict[str, tuple[int, int]]:
        m = messages.c
        visitor = sa.func.sum(sa.case((m.role == "visitor", 1), else_=0))
        query = (sa.select(m.conversation_id, sa.func.count(), visitor)
                 .where(m.tenant_id == tenant_id, m.conversation_id.in_(ids)).group_by(m.conversation_id))
        return {cid: (int(n), int(v or 0)) for cid, n, v in (await conn.execute(query)).all()}
