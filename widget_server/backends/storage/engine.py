"""Opening the database, running migrations, and the queries the domain needs (all tenant-scoped)."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from sqlalchemy import event
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from widget_server.backends.storage.analytics import EventStore
from widget_server.backends.storage.deliveries import DeliveryStore
from widget_server.backends.storage.group_commit import GroupCommit
from widget_server.backends.storage.rows import Row, now
from widget_server.backends.storage.rows import as_row as _row
from widget_server.backends.storage.tables import (
    api_keys,
    conversations,
    feedback,
    messages,
    personas,
    policies,
    tenants,
)
from widget_server.backends.storage.webhooks import WebhookStore

log = logging.getLogger(__name__)
__all__ = ["DuplicateError", "Storage", "now", "open_storage"]
MIGRATIONS = Path(__file__).parent / "migrations"
MESSAGE_COLUMNS = [c.name for c in messages.columns]


class DuplicateError(Exception):
    """A unique constraint refused the write."""


def async_url(url: str) -> str:
    """`sqlite:///x.db` and `postgresql://…` as the async drivers spell them."""
    scheme, _, rest = url.partition("://")
    base = scheme.split("+")[0]
    if base == "sqlite":
        return f"sqlite+aiosqlite://{rest}"
    if base in ("postgresql", "postgres"):
        return f"postgresql+asyncpg://{rest}"
    raise ValueError(f"unsupported database URL scheme {scheme!r}: use sqlite:/// or postgresql://")


async def open_storage(url: str) -> Storage:
    """Connect and bring the schema to the newest migration."""
    aurl = async_url(url)
    if aurl.startswith("sqlite"):
        Path(aurl.split(":///", 1)[1]).parent.mkdir(parents=True, exist_ok=True)
        engine = create_async_engine(aurl, connect_args={"timeout": 30})
        event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
    else:
        engine = create_async_engine(aurl, pool_size=10, max_overflow=20, pool_pre_ping=True)
    storage = Storage(engine)
    await storage.migrate()
    return storage


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA busy_timeout=30000")
    cur.close()


def _upgrade(sync_conn: sa.Connection) -> None:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.attributes["connection"] = sync_conn
    command.upgrade(cfg, "head")


class Storage:
    """Every query takes the tenant id; none reads across tenants."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        self.dialect = engine.dialect.name
        self._messages = GroupCommit(self._insert_messages)
        self.events = EventStore(engine)
        self.webhooks = WebhookStore(engine)
        self.deliveries = DeliveryStore(engine)

    async def migrate(self) -> None:
        async with self.engine.begin() as conn:
            if self.dialect == "postgresql":
                # Several nodes may start at once: one migrates, the others wait for it.
                await conn.execute(sa.text("SELECT pg_advisory_xact_lock(727274)"))
            await conn.run_sync(_upgrade)

    async def close(self) -> None:
        await self._messages.aclose()
        await self.engine.dispose()

    async def ping(self) -> None:
        async with self.engine.connect() as conn:
            await conn.execute(sa.text("SELECT 1"))

    async def _one(self, query: sa.Executable) -> Row | None:
        async with self.engine.connect() as conn:
            row = (await conn.execute(query)).mappings().first()
        return _row(row) if row else None

    async def _all(self, query: sa.Executable) -> list[Row]:
        async with self.engine.connect() as conn:
            return [_row(r) for r in (await conn.execute(query)).mappings().all()]

    async def _write(self, *queries: sa.Executable) -> None:
        try:
            async with self.engine.begin() as conn:
                for query in queries:
                    await conn.execute(query)
        except IntegrityError as exc:
            raise DuplicateError(str(exc.orig)) from exc

    # tenants and keys

    async def create_tenant(self, tenant_id: str, name: str, identity_secret: str | None = None) -> Row:
        row = {"id": tenant_id, "name": name, "identity_secret": identity_secret, "created_at": now()}
        await self._write(sa.insert(tenants).values(**row))
        return row

    async def get_tenant(self, tenant_id: str) -> Row | None:
        return await self._one(sa.select(tenants).where(tenants.c.id == tenant_id))

    async def list_tenant_ids(self) -> list[str]:
        async with self.engine.connect() as conn:
            return list((await conn.execute(sa.select(tenants.c.id).order_by(tenants.c.id))).scalars())

    async def find_tenant_by_name(self, name: str) -> Row | None:
        return await self._one(sa.select(tenants).where(tenants.c.name == name).order_by(tenants.c.id).limit(1))

    async def add_key(
        self, key_id: str, tenant_id: str, kind: str, key_hash: str, hint: str, origins: list[str]
    ) -> Row:
        row = {
            "id": key_id, "tenant_id": tenant_id, "kind": kind, "key_hash": key_hash,
            "hint": hint, "origins": origins, "created_at": now(),
        }
        await self._write(sa.insert(api_keys).values(**row))
        return row

    async def find_key(self, key_hash: str, kind: str) -> Row | None:
        query = sa.select(api_keys).where(
            api_keys.c.key_hash == key_hash, api_keys.c.kind == kind, api_keys.c.revoked_at.is_(None)
        )
        return await self._one(query)

    async def list_keys(self, tenant_id: str, kind: str) -> list[Row]:
        query = sa.select(api_keys).where(api_keys.c.tenant_id == tenant_id, api_keys.c.kind == kind)
        return await self._all(query.order_by(api_keys.c.id))

    # personas

    async def list_personas(self, tenant_id: str) -> list[Row]:
        return await self._all(sa.select(personas).where(personas.c.tenant_id == tenant_id).order_by(personas.c.id))

    async def get_persona(self, tenant_id: str, ref: str) -> Row | None:
        query = sa.select(personas).where(
            personas.c.tenant_id == tenant_id, sa.or_(personas.c.id == ref, personas.c.slug == ref)
        )
        return await self._one(query.limit(1))

    async def insert_persona(self, row: Row) -> None:
        await self._write(sa.insert(personas).values(**row))

    async def update_persona(self, tenant_id: str, persona_id: str, slug: str, doc: dict[str, Any]) -> None:
        query = (
            sa.update(personas)
            .where(personas.c.tenant_id == tenant_id, personas.c.id == persona_id)
            .values(slug=slug, doc=doc, updated_at=now())
        )
        await self._write(query)

    async def delete_persona(self, tenant_id: str, persona_id: str) -> bool:
        async with self.engine.begin() as conn:
            result = await conn.execute(
                sa.delete(personas).where(personas.c.tenant_id == tenant_id, personas.c.id == persona_id)
            )
        return bool(result.rowcount)

    # conversations and messages

    async def create_conversation(self, row: Row) -> None:
        await self._write(sa.insert(conversations).values(**row))

    async def get_conversation(self, tenant_id: str, conversation_id: str) -> Row | None:
        query = sa.select(conversations).where(
            conversations.c.tenant_id == tenant_id, conversations.c.id == conversation_id
        )
        return await self._one(query)

    async def list_conversations(
        self, tenant_id: str, *, limit: int, before: str | None = None, persona_id: str | None = None
    ) -> list[Row]:
        query = sa.select(conversations).where(conversations.c.tenant_id == tenant_id)
        if before:
            query = query.where(conversations.c.id < before)
        if persona_id:
            query = query.where(conversations.c.persona_id == persona_id)
        return await self._all(query.order_by(conversations.c.id.desc()).limit(limit))

    async def set_conversation_status(self, tenant_id: str, conversation_id: str, status: str) -> None:
        query = (
            sa.update(conversations)
            .where(conversations.c.tenant_id == tenant_id, conversations.c.id == conversation_id)
            .values(status=status, updated_at=now())
        )
        await self._write(query)

    async def add_message(self, row: Row) -> None:
        """Returns once the message is committed; concurrent messages share a transaction (group commit)."""
        await self._messages.add({column: row.get(column) for column in MESSAGE_COLUMNS})

    async def _insert_messages(self, rows: list[Row]) -> None:
        latest: dict[tuple[str, str], datetime] = {}
        for row in rows:
            key = (row["tenant_id"], row["conversation_id"])
            latest[key] = max(latest.get(key, row["created_at"]), row["created_at"])
        touch = (
            sa.update(conversations)
            .where(conversations.c.tenant_id == sa.bindparam("t"), conversations.c.id == sa.bindparam("c"))
            .values(updated_at=sa.bindparam("stamp"))
        )
        async with self.engine.begin() as conn:  # two executemany calls, however many rows and conversations
            await conn.execute(sa.insert(messages), rows)
            await conn.execute(touch, [{"t": t, "c": c, "stamp": stamp} for (t, c), stamp in latest.items()])

    async def list_messages(self, tenant_id: str, conversation_id: str, limit: int | None = None) -> list[Row]:
        query = sa.select(messages).where(
            messages.c.tenant_id == tenant_id, messages.c.conversation_id == conversation_id
        )
        if limit is None:
            return await self._all(query.order_by(messages.c.id))
        rows = await self._all(query.order_by(messages.c.id.desc()).limit(limit))
        return rows[::-1]

    async def get_message(self, tenant_id: str, message_id: str) -> Row | None:
        query = sa.select(messages).where(messages.c.tenant_id == tenant_id, messages.c.id == message_id)
        return await self._one(query)

    async def save_feedback(self, row: Row) -> None:
        """One rating per message: a second rating replaces the first."""
        async with self.engine.begin() as conn:
            await _delete_feedback(conn, row["tenant_id"], row["message_id"])
            await conn.execute(sa.insert(feedback).values(**row))

    async def get_feedback(self, tenant_id: str, message_ids: Sequence[str]) -> list[Row]:
        query = sa.select(feedback).where(feedback.c.tenant_id == tenant_id, feedback.c.message_id.in_(message_ids))
        return await self._all(query)

    # guardrail policies

    async def get_policy(self, tenant_id: str) -> Row | None:
        return await self._one(sa.select(policies).where(policies.c.tenant_id == tenant_id))

    async def put_policy(self, tenant_id: str, doc: dict[str, Any]) -> Row:
        """Create or replace the tenant's policy (delete and insert in one transaction, on either database)."""
        row = {"tenant_id": tenant_id, "doc": doc, "updated_at": now()}
        delete = sa.delete(policies).where(policies.c.tenant_id == tenant_id)
        try:
            await self._write(delete, sa.insert(policies).values(**row))
        except DuplicateError:  # a concurrent PUT inserted between our delete and insert: the last one wins
            await self._write(delete, sa.insert(policies).values(**row))
        return row

    async def delete_policy(self, tenant_id: str) -> bool:
        async with self.engine.begin() as conn:
            result = await conn.execute(sa.delete(policies).where(policies.c.tenant_id == tenant_id))
        return bool(result.rowcount)


async def _delete_feedback(conn: AsyncConnection, tenant_id: str, message_id: str) -> None:
    query = sa.delete(feedback).where(feedback.c.tenant_id == tenant_id, feedback.c.message_id == message_id)
    await conn.execute(query)
