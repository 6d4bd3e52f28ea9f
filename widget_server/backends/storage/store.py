"""`Storage`: the queries the domain needs, every one tenant-scoped (`connect` opens and migrates the database)."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from widget_server.backends.storage.aggregates import Aggregates
from widget_server.backends.storage.analytics import EventStore
from widget_server.backends.storage.avatars import AvatarStore, delete_owned
from widget_server.backends.storage.console import ConsoleStore
from widget_server.backends.storage.deliveries import DeliveryStore
from widget_server.backends.storage.export_rows import ExportReader
from widget_server.backends.storage.group_commit import GroupCommit
from widget_server.backends.storage.idempotency import IdempotencyStore
from widget_server.backends.storage.persona_groups import PersonaGroupStore
from widget_server.backends.storage.persona_usage import PersonaUsageStore
from widget_server.backends.storage.prompt_jobs import PromptJobStore
from widget_server.backends.storage.rows import Row, now
from widget_server.backends.storage.rows import as_row as _row
from widget_server.backends.storage.search import TranscriptSearch
from widget_server.backends.storage.sessions import SessionStore
from widget_server.backends.storage.summary_rollup import RolledSummary
from widget_server.backends.storage.tables import (
    api_keys,
    conversations,
    feedback,
    messages,
    personas,
    policies,
    tenants,
)
from widget_server.backends.storage.test_personas import TestPersonaStore
from widget_server.backends.storage.test_runs import TestRunStore
from widget_server.backends.storage.webhooks import WebhookStore

log = logging.getLogger(__name__)
MESSAGE_COLUMNS = [c.name for c in messages.columns]
CONVERSATION_COLUMNS = [c.name for c in conversations.columns]

GuardColumns = dict[str, Any]  # {"guard_refusals": int, "guard_previous": str | None}


def _active(at: datetime | sa.BindParameter[datetime]) -> sa.ColumnElement[bool]:
    """A key works: not revoked, and not past its rotation's grace period."""
    k = api_keys.c
    return sa.and_(k.revoked_at.is_(None), sa.or_(k.expires_at.is_(None), k.expires_at > at))


# The statements of every widget socket's hello, built once with bound parameters: building an expression costs
# more CPU than running it (SQLAlchemy caches the compiled form, not the Python objects that describe it), and a
# reconnect storm runs them thousands of times a second.
KEY_ACTIVE = sa.select(api_keys.c.id).where(
    api_keys.c.tenant_id == sa.bindparam("t"), api_keys.c.id == sa.bindparam("k"), _active(sa.bindparam("at")))
PERSONA = sa.select(personas).where(
    personas.c.tenant_id == sa.bindparam("t"),
    sa.or_(personas.c.id == sa.bindparam("ref"), personas.c.slug == sa.bindparam("ref"))).limit(1)
PERSONA_AND_KEY = sa.select(personas, sa.exists(KEY_ACTIVE).label("key_active_")).where(
    personas.c.tenant_id == sa.bindparam("t"), personas.c.id == sa.bindparam("p"))
# A secret key's lookup, and a REST prompt's persona read with its key's check (the first read of a key this node
# has seen work: one round trip instead of two before the first token).
FIND_KEY = sa.select(api_keys).where(
    api_keys.c.key_hash == sa.bindparam("h"), api_keys.c.kind == sa.bindparam("kind"), _active(sa.bindparam("at")))
SECRET_ACTIVE = sa.select(api_keys.c.id).where(
    api_keys.c.tenant_id == sa.bindparam("t"), api_keys.c.key_hash == sa.bindparam("h"),
    api_keys.c.kind == "secret", _active(sa.bindparam("at")))
PERSONA_AND_SECRET = sa.select(personas, sa.exists(SECRET_ACTIVE).label("key_active_")).where(
    personas.c.tenant_id == sa.bindparam("t"),
    sa.or_(personas.c.id == sa.bindparam("ref"), personas.c.slug == sa.bindparam("ref"))).limit(1)
CONVERSATION = sa.select(conversations).where(
    conversations.c.tenant_id == sa.bindparam("t"), conversations.c.id == sa.bindparam("c"))


class DuplicateError(Exception):
    """A unique constraint refused the write."""


class Storage:
    """Every query takes the tenant id; none reads across tenants."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        self.dialect = engine.dialect.name
        self._messages = GroupCommit(self._insert_messages)
        self._conversations = GroupCommit(self._insert_conversations)
        self.events = EventStore(engine)
        self.webhooks = WebhookStore(engine)
        self.deliveries = DeliveryStore(engine)
        self.aggregates = Aggregates(engine)
        self.summaries = RolledSummary(engine, self.aggregates)
        self.export_rows = ExportReader(engine)
        self.console = ConsoleStore(engine)
        self.test_runs = TestRunStore(engine)
        self.prompt_jobs = PromptJobStore(engine)
        self.sessions = SessionStore(engine)
        self.persona_usage = PersonaUsageStore(engine)
        self.transcripts = TranscriptSearch(engine)
        self.test_personas = TestPersonaStore(engine)
        self.idempotency = IdempotencyStore(engine)
        self.avatars = AvatarStore(engine)
        self.persona_groups = PersonaGroupStore(engine)

    async def close(self) -> None:
        await self._conversations.aclose()
        await self._messages.aclose()
        await self.engine.dispose()

    async def ping(self) -> None:
        async with self.engine.connect() as conn:
            await conn.execute(sa.text("SELECT 1"))

    async def _one(self, query: sa.Executable, params: dict[str, Any] | None = None) -> Row | None:
        async with self.engine.connect() as conn:
            row = (await conn.execute(query, params)).mappings().first()
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
        self, key_id: str, tenant_id: str, kind: str, key_hash: str, hint: str, origins: list[str],
        persona_quota: int | None = None,
    ) -> Row:
        row = {
            "id": key_id, "tenant_id": tenant_id, "kind": kind, "key_hash": key_hash,
            "hint": hint, "origins": origins, "created_at": now(), "persona_quota": persona_quota,
        }
        await self._write(sa.insert(api_keys).values(**row))
        return row

    async def find_key(self, key_hash: str, kind: str) -> Row | None:
        """The active key (not revoked, not past its rotation's grace period) with this hash."""
        return await self._one(FIND_KEY, {"h": key_hash, "kind": kind, "at": now()})

    async def key_active(self, tenant_id: str, key_id: str) -> bool:
        return await self._one(KEY_ACTIVE, {"t": tenant_id, "k": key_id, "at": now()}) is not None

    async def get_key(self, tenant_id: str, key_id: str) -> Row | None:
        return await self._one(sa.select(api_keys).where(api_keys.c.tenant_id == tenant_id, api_keys.c.id == key_id))

    async def list_keys(self, tenant_id: str, kind: str | None = None) -> list[Row]:
        query = sa.select(api_keys).where(api_keys.c.tenant_id == tenant_id)
        if kind is not None:
            query = query.where(api_keys.c.kind == kind)
        return await self._all(query.order_by(api_keys.c.id))

    async def end_key(self, tenant_id: str, key_id: str, *, revoked_at: datetime | None = None,
                      expires_at: datetime | None = None) -> None:
        """Revoke a key now, or let it expire (a rotation's grace period)."""
        values = {"revoked_at": revoked_at} if revoked_at is not None else {"expires_at": expires_at}
        await self._write(sa.update(api_keys).where(api_keys.c.tenant_id == tenant_id, api_keys.c.id == key_id)
                          .values(**values))

    async def set_identity(self, tenant_id: str, **values: Any) -> None:
        """`require_identity`, `identity_salt` or `identity_secret` (None clears the legacy plaintext)."""
        await self._write(sa.update(tenants).where(tenants.c.id == tenant_id).values(**values))

    # personas

    async def list_personas(self, tenant_id: str, *, after: str | None = None, limit: int | None = None) -> list[Row]:
        """The tenant's personas in id order (creation order), from after `after` (a keyset cursor)."""
        query = sa.select(personas).where(personas.c.tenant_id == tenant_id)
        if after:
            query = query.where(personas.c.id > after)
        query = query.order_by(personas.c.id)
        return await self._all(query.limit(limit) if limit is not None else query)

    async def count_personas(self, tenant_id: str) -> int:
        query = sa.select(sa.func.count()).select_from(personas).where(personas.c.tenant_id == tenant_id)
        async with self.engine.connect() as conn:
            return int((await conn.execute(query)).scalar_one())

    async def get_persona(self, tenant_id: str, ref: str) -> Row | None:
        return await self._one(PERSONA, {"t": tenant_id, "ref": ref})

    async def persona_and_key(self, tenant_id: str, persona_id: str, key_id: str) -> tuple[Row | None, bool]:
        """A widget hello's reads in one round trip: the persona (by id) and whether the key is still active."""
        params = {"t": tenant_id, "p": persona_id, "k": key_id, "at": now()}
        row = await self._one(PERSONA_AND_KEY, params)
        if row is None:
            return None, await self.key_active(tenant_id, key_id)
        return row, bool(row.pop("key_active_"))

    async def persona_and_secret(self, tenant_id: str, ref: str, key_hash: str) -> tuple[Row | None, bool]:
        """A REST prompt's reads in one round trip: the persona (by id or slug) and whether the secret key with
        this hash is still an active key of this tenant."""
        params = {"t": tenant_id, "ref": ref, "h": key_hash, "at": now()}
        row = await self._one(PERSONA_AND_SECRET, params)
        if row is None:
            return None, await self._one(SECRET_ACTIVE, {"t": tenant_id, "h": key_hash, "at": now()}) is not None
        return row, bool(row.pop("key_active_"))

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
        """The persona and its avatar, in one transaction."""
        async with self.engine.begin() as conn:
            await delete_owned(conn, tenant_id, "persona", persona_id)
            result = await conn.execute(
                sa.delete(personas).where(personas.c.tenant_id == tenant_id, personas.c.id == persona_id)
            )
        return bool(result.rowcount)

    # conversations and messages

    async def create_conversation(self, row: Row) -> None:
        """Returns once the row is committed; conversations started together share a transaction."""
        full = {column: row.get(column) for column in CONVERSATION_COLUMNS}  # one shape for executemany
        full["guard_refusals"] = row.get("guard_refusals") or 0
        await self._conversations.add(full)

    async def _insert_conversations(self, rows: list[Row]) -> None:
        try:
            async with self.engine.begin() as conn:
                await conn.execute(sa.insert(conversations), rows)
        except IntegrityError as exc:
            raise DuplicateError(str(exc.orig)) from exc

    async def get_conversation(self, tenant_id: str, conversation_id: str) -> Row | None:
        return await self._one(CONVERSATION, {"t": tenant_id, "c": conversation_id})

    async def list_conversations(
        self, tenant_id: str, *, limit: int, before: str | None = None, persona_id: str | None = None,
        status: str | None = None,
    ) -> list[Row]:
        query = sa.select(conversations).where(conversations.c.tenant_id == tenant_id)
        if before:
            query = query.where(conversations.c.id < before)
        if persona_id:
            query = query.where(conversations.c.persona_id == persona_id)
        if status:
            query = query.where(conversations.c.status == status)
        return await self._all(query.order_by(conversations.c.id.desc()).limit(limit))

    async def taken_over(self, tenant_id: str, *, limit: int) -> list[Row]:
        """The inbox: conversations waiting for a person or held by one, longest waiting first."""
        c = conversations.c
        query = (sa.select(conversations).where(c.tenant_id == tenant_id, c.status.in_(("escalated", "agent")))
                 .order_by(c.escalated_at, c.id).limit(limit))
        return await self._all(query)

    async def last_messages(self, tenant_id: str, conversation_ids: Sequence[str], per: int) -> list[Row]:
        """The last `per` messages of each of these conversations (one query), oldest first within each."""
        if not conversation_ids:
            return []
        m = messages.c
        rank = sa.func.row_number().over(partition_by=m.conversation_id, order_by=m.id.desc()).label("rank_")
        inner = (sa.select(messages, rank)
                 .where(m.tenant_id == tenant_id, m.conversation_id.in_(list(conversation_ids))).subquery())
        query = sa.select(inner).where(inner.c.rank_ <= per).order_by(inner.c.conversation_id, inner.c.id)
        return await self._all(query)

    async def waiting_since(self, before: datetime, *, limit: int) -> list[Row]:
        """Conversations of every tenant escalated before `before`, unclaimed, whose visitor was not told yet that
        they wait (the wait sweeper's candidates; the tenant's own delay is the policy's)."""
        c = conversations.c
        query = (sa.select(conversations).where(c.status == "escalated", c.escalated_at < before,
                                                c.wait_noticed_at.is_(None))
                 .order_by(c.escalated_at).limit(limit))
        return await self._all(query)

    async def notice_wait(self, tenant_id: str, conversation_id: str) -> Row | None:
        """Mark a waiting conversation's visitor as told they wait: the row once, to one caller of all nodes."""
        c = conversations.c
        query = (sa.update(conversations)
                 .where(c.tenant_id == tenant_id, c.id == conversation_id, c.status == "escalated",
                        c.wait_noticed_at.is_(None))
                 .values(wait_noticed_at=now()).returning(conversations))
        async with self.engine.begin() as conn:
            row = (await conn.execute(query)).mappings().first()
        return _row(row) if row else None

    async def move_conversation(self, tenant_id: str, conversation_id: str, *, from_status: Sequence[str],
                                values: Row, agent_id: str | None = None, touch: bool = True) -> Row | None:
        """A takeover step in one statement, so that of two agents claiming at once exactly one wins: the
        conversation changes only while its status is one of `from_status` (and, with `agent_id`, only while that
        agent holds it). Returns the updated row, or None when it was in no such state."""
        c = conversations.c
        where = [c.tenant_id == tenant_id, c.id == conversation_id, c.status.in_(tuple(from_status))]
        if agent_id is not None:
            where.append(c.agent_id == agent_id)
        changed = {**values, "updated_at": now()} if touch else values  # (presence is not a change of it)
        query = sa.update(conversations).where(*where).values(**changed).returning(conversations)
        async with self.engine.begin() as conn:
            row = (await conn.execute(query)).mappings().first()
        return _row(row) if row else None

    async def set_conversation_status(self, tenant_id: str, conversation_id: str, status: str) -> None:
        query = (
            sa.update(conversations)
            .where(conversations.c.tenant_id == tenant_id, conversations.c.id == conversation_id)
            .values(status=status, updated_at=now())
        )
        await self._write(query)

    async def add_message(self, row: Row, guard_state: GuardColumns | None = None) -> None:
        """Returns once the message is committed; concurrent messages share a transaction (group commit).
        `guard_state` (the conversation's guardrail state after this message) is written in the same transaction."""
        message = {column: row.get(column) for column in MESSAGE_COLUMNS}
        message["internal"] = bool(message["internal"])
        await self._messages.add({"message": message, "guard": guard_state})

    async def _insert_messages(self, items: list[Row]) -> None:
        latest: dict[tuple[str, str], datetime] = {}
        guard: dict[tuple[str, str], GuardColumns] = {}
        for item in items:
            row = item["message"]
            key = (row["tenant_id"], row["conversation_id"])
            latest[key] = max(latest.get(key, row["created_at"]), row["created_at"])
            if item["guard"] is not None:
                guard[key] = item["guard"]  # the last one queued is the newest
        c = conversations.c
        where = (c.tenant_id == sa.bindparam("t"), c.id == sa.bindparam("c"))
        touch = sa.update(conversations).where(*where).values(updated_at=sa.bindparam("stamp"))
        touch_guard = sa.update(conversations).where(*where).values(
            updated_at=sa.bindparam("stamp"), guard_refusals=sa.bindparam("refusals"),
            guard_previous=sa.bindparam("previous"))
        plain = [{"t": t, "c": cid, "stamp": stamp} for (t, cid), stamp in latest.items() if (t, cid) not in guard]
        guarded = [{"t": t, "c": cid, "stamp": latest[(t, cid)], "refusals": g["guard_refusals"],
                    "previous": g["guard_previous"]} for (t, cid), g in guard.items()]
        async with self.engine.begin() as conn:  # at most three executemany calls, however many rows
            await conn.execute(sa.insert(messages), [item["message"] for item in items])
            if plain:
                await conn.execute(touch, plain)
            if guarded:
                await conn.execute(touch_guard, guarded)

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
