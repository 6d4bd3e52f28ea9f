"""Retention: each tenant's data older than its retention period (or the server's default) is purged."""

from __future__ import annotations

import asyncio
import logging
from datetime import timedelta
from typing import Any

from widget_server.backends.storage import Storage
from widget_server.clock import now
from widget_server.errors import InvalidRequest

log = logging.getLogger(__name__)
MAX_DAYS = 36500


def checked_days(days: Any) -> int | None:
    """A tenant's retention period: null (the server's default) or whole days from 1 to 36500 (30.0 is 30)."""
    if isinstance(days, float) and days.is_integer():
        days = int(days)
    if days is not None and (not isinstance(days, int) or isinstance(days, bool) or not 1 <= days <= MAX_DAYS):
        raise InvalidRequest(f"retention_days must be null or an integer from 1 to {MAX_DAYS}",
                             details={"errors": [{"field": "retention_days", "message": "out of range"}]})
    return days


def view(days: int | None, default_days: int | None) -> dict[str, int | None]:
    """`retention_days` null means the server's default applies (`effective_days`; null there: kept until erased)."""
    return {"retention_days": days, "effective_days": days or default_days}


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
