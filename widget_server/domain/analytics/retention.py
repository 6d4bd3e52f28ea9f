"""Retention: each tenant's data older than its retention period (or the server's default) is purged."""

from __future__ import annotations

import asyncio
import logging
from datetime import timedelta

from widget_server.backends.storage import Storage
from widget_server.backends.storage.engine import now

log = logging.getLogger(__name__)


async def sweep(storage: Storage, default_days: int | None) -> dict[str, dict[str, int]]:
    """Purge every tenant once; returns the counts removed per tenant (only tenants with something removed)."""
    overrides = await storage.events.retention_overrides()
    removed: dict[str, dict[str, int]] = {}
    for tenant_id in await storage.list_tenant_ids():
        days = overrides.get(tenant_id) or default_days  # a tenant's own period, else the server's
        if days is None:
            continue
        counts = await storage.events.purge_before(tenant_id, now() - timedelta(days=days))
        if any(counts.values()):
            removed[tenant_id] = counts
            log.info("retention purge", extra={"tenant_id": tenant_id, "days": days, **counts})
    return removed


async def sweep_forever(storage: Storage, default_days: int | None, every_s: float) -> None:
    while True:
        try:
            await sweep(storage, default_days)
        except Exception:
            log.exception("retention sweep failed; next try in %.0f s", every_s)
        await asyncio.sleep(every_s)
