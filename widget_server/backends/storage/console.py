"""Console users, their sessions and the playground's saved test cases (every query tenant-scoped, but the two
that find an account by e-mail or a session by its hash: sign-in is where the tenant is learnt)."""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine

from widget_server.backends.storage.rows import Row, as_row
from widget_server.backends.storage.tables import canned_replies, console_sessions, console_users, test_cases


class EmailTaken(Exception):
    """Another console user already signs in with this e-mail."""


class ShortcutTaken(Exception):
    """The tenant has a canned reply with this shortcut already."""


class ConsoleStore:
    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine

    async def _one(self, query: sa.Executable) -> Row | None:
        async with self.engine.connect() as conn:
            row = (await conn.execute(query)).mappings().first()
        return as_row(row) if row else None

    async def _all(self, query: sa.Executable) -> list[Row]:
        async with self.engine.connect() as conn:
            return [as_row(r) for r in (await conn.execute(query)).mappings().all()]

    # users

    async def add_user(self, row: Row) -> None:
        try:
            async with self.engine.begin() as conn:
                await conn.execute(sa.insert(console_users).values(**row))
        except IntegrityError as exc:
            raise EmailTaken(row["email"]) from exc

    async def user_by_email(self, email: str) -> Row | None:
        return await self._one(sa.select(console_users).where(console_users.c.email == email))

    async def get_user(self, tenant_id: str, user_id: str) -> Row | None:
        u = console_users.c
        return await self._one(sa.select(console_users).where(u.tenant_id == tenant_id, u.id == user_id))

    async def list_users(self, tenant_id: str) -> list[Row]:
        u = console_users.c
        return await self._all(sa.select(console_users).where(u.tenant_id == tenant_id).order_by(u.id))

    async def delete_user(self, tenant_id: str, user_id: str) -> bool:
        u = console_users.c
        async with self.engine.begin() as conn:  # sessions go with it (ON DELETE CASCADE, and explicitly for SQLite
            await conn.execute(sa.delete(console_sessions).where(  # connections opened without foreign keys)
                console_sessions.c.tenant_id == tenant_id, console_sessions.c.user_id == user_id))
            result = await conn.execute(sa.delete(console_users).where(u.tenant_id == tenant_id, u.id == user_id))
        return bool(result.rowcount)

    # sessions

    async def agents_online(self, tenant_id: str, seen_since: datetime) -> int:
        """How many owners and agents of the tenant have a console session seen since `seen_since`."""
        query = (sa.select(sa.func.count(sa.distinct(console_sessions.c.user_id)))
                 .select_from(console_sessions.join(console_users, console_users.c.id == console_sessions.c.user_id))
                 .where(console_sessions.c.tenant_id == tenant_id, console_sessions.c.last_seen_at >= seen_since,
                        console_users.c.role.in_(("owner", "agent"))))
        async with self.engine.connect() as conn:
            return int((await conn.execute(query)).scalar() or 0)

    async def add_session(self, row: Row) -> None:
        async with self.engine.begin() as conn:
            await conn.execute(sa.insert(console_sessions).values(**row))

    async def session_user(self, id_hash: str) -> Row | None:
        """The session with this hash and its user's columns (`user_*`), or None."""
        s, u = console_sessions.c, console_users.c
        query = (sa.select(s.id_hash, s.tenant_id, s.created_at, s.last_seen_at, u.id.label("user_id"),
                           u.email, u.role, u.display_name)
                 .select_from(console_sessions.join(console_users, u.id == s.user_id))
                 .where(s.id_hash == id_hash, u.tenant_id == s.tenant_id))
        return await self._one(query)

    async def touch_session(self, id_hash: str, at: datetime) -> None:
        async with self.engine.begin() as conn:
            await conn.execute(sa.update(console_sessions).where(console_sessions.c.id_hash == id_hash)
                               .values(last_seen_at=at))

    async def end_session(self, id_hash: str) -> None:
        async with self.engine.begin() as conn:
            await conn.execute(sa.delete(console_sessions).where(console_sessions.c.id_hash == id_hash))

    async def end_sessions_before(self, last_seen: datetime, created: datetime) -> int:
        """Forget sessions idle since `last_seen` or made before `created` (they can no longer sign anyone in)."""
        s = console_sessions.c
        async with self.engine.begin() as conn:
            result = await conn.execute(sa.delete(console_sessions).where(
                sa.or_(s.last_seen_at < last_seen, s.created_at < created)))
        return int(result.rowcount or 0)

    # canned replies (the inbox)

    async def add_canned(self, row: Row) -> None:
        """`ShortcutTaken` when the tenant has a canned reply with this shortcut already."""
        try:
            async with self.engine.begin() as conn:
                await conn.execute(sa.insert(canned_replies).values(**row))
        except IntegrityError as exc:
            raise ShortcutTaken(row["shortcut"]) from exc

    async def list_canned(self, tenant_id: str) -> list[Row]:
        c = canned_replies.c
        return await self._all(sa.select(canned_replies).where(c.tenant_id == tenant_id).order_by(c.shortcut))

    async def delete_canned(self, tenant_id: str, canned_id: str) -> bool:
        c = canned_replies.c
        async with self.engine.begin() as conn:
            result = await conn.execute(sa.delete(canned_replies).where(c.tenant_id == tenant_id,
                                                                        c.id == canned_id))
        return bool(result.rowcount)

    # test cases saved from the playground

    async def add_test_case(self, row: Row) -> None:
        async with self.engine.begin() as conn:
            await conn.execute(sa.insert(test_cases).values(**row))

    async def list_test_cases(self, tenant_id: str, persona_id: str | None = None) -> list[Row]:
        t = test_cases.c
        query = sa.select(test_cases).where(t.tenant_id == tenant_id)
        if persona_id is not None:
            query = query.where(t.persona_id == persona_id)
        return await self._all(query.order_by(t.id))

    async def delete_test_case(self, tenant_id: str, case_id: str) -> bool:
        t = test_cases.c
        async with self.engine.begin() as conn:
            result = await conn.execute(sa.delete(test_cases).where(t.tenant_id == tenant_id, t.id == case_id))
        return bool(result.rowcount)
