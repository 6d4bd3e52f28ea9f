"""The webhook outbox: pending deliveries, written with their events, claimed by a worker on any node.

A row is one event still to be delivered to one webhook. `enqueue` runs inside the transaction that stores the
events, so an event is committed together with its deliveries or not at all: no crash can separate them. A worker
claims due rows for a lease (`claimed_until`); on PostgreSQL `FOR UPDATE SKIP LOCKED` lets several nodes claim at
once without taking the same row. A row is deleted once delivered or out of tries (each try is in
`webhook_attempts`), so the table holds only what is still to do.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Collection, Sequence
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from widget_server.backends.storage.rows import Row, as_row, now
from widget_server.backends.storage.tables import events, webhook_attempts, webhook_deliveries, webhooks
from widget_server.ids import new_id

EVENT_COLUMNS = tuple(c.name for c in events.columns if c.name != "seq")


def wants(event_types: Sequence[str], event_type: str) -> bool:
    """Whether a webhook subscribed to `event_types` (or `["*"]`) gets an event of this type."""
    return "*" in event_types or event_type in event_types


async def enqueue(conn: AsyncConnection, stored: Sequence[Row]) -> int:
    """In the transaction that stored these events: a pending delivery for each webhook that wants one."""
    tenants = {e["tenant_id"] for e in stored}
    query = sa.select(webhooks.c.id, webhooks.c.tenant_id, webhooks.c.event_types).where(
        webhooks.c.tenant_id.in_(tenants))
    hooks: dict[str, list[tuple[str, list[str]]]] = defaultdict(list)
    for hook_id, tenant_id, types in (await conn.execute(query)).all():
        hooks[tenant_id].append((hook_id, types))
    if not hooks:
        return 0
    stamp = now()
    rows = [{"id": new_id("whd"), "tenant_id": e["tenant_id"], "webhook_id": hook_id, "event_id": e["id"],
             "event_type": e["type"], "attempts": 0, "next_attempt_at": stamp, "created_at": stamp}
            for e in stored for hook_id, types in hooks.get(e["tenant_id"], ()) if wants(types, e["type"])]
    if rows:
        insert: Any = postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert
        await conn.execute(insert(webhook_deliveries).on_conflict_do_nothing(
            index_elements=["webhook_id", "event_id"]), rows)
    return len(rows)


class DeliveryStore:
    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        self.dialect = engine.dialect.name

    async def claim(self, owner: str, *, limit: int, lease_s: float, skip: Collection[str] = ()) -> list[Row]:
        """Claim up to `limit` due deliveries (none to the webhooks in `skip`), oldest due first, for `lease_s`.

        Each row comes with its webhook's `url` and `salt` and its `event` (None when the event was erased or
        purged since)."""
        stamp = now()
        c = webhook_deliveries.c
        free = sa.and_(c.next_attempt_at <= stamp, sa.or_(c.claimed_until.is_(None), c.claimed_until < stamp))
        due = sa.select(c.id).where(free)
        if skip:
            due = due.where(c.webhook_id.not_in(list(skip)))
        async with self.engine.connect() as conn:  # a read first: an idle poll takes no write lock
            if (await conn.execute(due.limit(1))).first() is None:
                return []
        due = due.order_by(c.next_attempt_at).limit(limit)
        if self.dialect == "postgresql":
            due = due.with_for_update(skip_locked=True)
        claim = (sa.update(webhook_deliveries).where(c.id.in_(due.scalar_subquery()), free)  # checked again
                 .values(claimed_until=stamp + timedelta(seconds=lease_s), claimed_by=owner).returning(c.id))
        async with self.engine.begin() as conn:
            ids = list((await conn.execute(claim)).scalars())
        return await self._claimed(owner, ids) if ids else []

    async def _claimed(self, owner: str, ids: list[str]) -> list[Row]:
        c = webhook_deliveries.c
        query = (
            sa.select(c.id, c.tenant_id, c.webhook_id, c.event_id, c.event_type, c.attempts, webhooks.c.url,
                      webhooks.c.salt, events.c.seq.label("ev_seq"),
                      *[events.c[name].label(f"ev_{name}") for name in EVENT_COLUMNS])
            .join(webhooks, webhooks.c.id == c.webhook_id)
            .outerjoin(events, sa.and_(events.c.id == c.event_id, events.c.tenant_id == c.tenant_id))
            .where(c.id.in_(ids), c.claimed_by == owner)
            .order_by(c.next_attempt_at)
        )
        async with self.engine.connect() as conn:
            rows = [as_row(r) for r in (await conn.execute(query)).mappings().all()]
        out = []
        for row in rows:
            event = {name: row.pop(f"ev_{name}") for name in EVENT_COLUMNS}
            out.append({**row, "event": event if row.pop("ev_seq") is not None else None})
        return out

    async def finish(self, delivery_id: str, owner: str, attempt: Row, retry_at: datetime | None) -> bool:
        """Store a try and, in the same transaction, schedule the next one (`retry_at`) or remove the delivery.

        False when the webhook was deleted meanwhile: the foreign key refuses the attempt and nothing is stored."""
        c = webhook_deliveries.c
        mine = sa.and_(c.id == delivery_id, c.claimed_by == owner)  # a claim lost to an expired lease is not ours
        change = (sa.delete(webhook_deliveries).where(mine) if retry_at is None else
                  sa.update(webhook_deliveries).where(mine).values(
                      attempts=attempt["attempt"], next_attempt_at=retry_at, claimed_until=None, claimed_by=None))
        try:
            async with self.engine.begin() as conn:
                await conn.execute(sa.insert(webhook_attempts).values(**attempt))
                await conn.execute(change)
        except IntegrityError:
            return False
        return True

    async def drop(self, delivery_id: str, owner: str) -> None:
        """Remove a claimed delivery without a try (its event is gone)."""
        c = webhook_deliveries.c
        async with self.engine.begin() as conn:
            await conn.execute(sa.delete(webhook_deliveries).where(c.id == delivery_id, c.claimed_by == owner))

    async def release(self, owner: str, ids: Collection[str] | None = None) -> int:
        """Give claims back (all of `owner`'s, or these), due at once for whichever worker looks next."""
        c = webhook_deliveries.c
        query = sa.update(webhook_deliveries).where(c.claimed_by == owner)
        if ids is not None:
            query = query.where(c.id.in_(list(ids)))
        async with self.engine.begin() as conn:
            result = await conn.execute(query.values(claimed_until=None, claimed_by=None))
        return int(result.rowcount or 0)

    async def pending(self, tenant_id: str) -> list[Row]:
        """The tenant's deliveries still to be made, oldest first."""
        c = webhook_deliveries.c
        query = sa.select(webhook_deliveries).where(c.tenant_id == tenant_id).order_by(c.created_at, c.id)
        async with self.engine.connect() as conn:
            return [as_row(r) for r in (await conn.execute(query)).mappings().all()]
