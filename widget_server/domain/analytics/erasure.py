"""Erasing a visitor: everything of theirs goes in one transaction, including events not yet written."""

from __future__ import annotations

from widget_server.backends.storage import Storage
from widget_server.domain.analytics.writer import EventWriter
from widget_server.errors import StorageUnavailable


async def erase_visitor(storage: Storage, writer: EventWriter, tenant_id: str, visitor_id: str) -> dict[str, int]:
    """The counts of what was deleted: events (buffered ones included), conversations, messages, feedback."""
    try:
        await writer.flush()  # so that no event of theirs is committed after the delete below
    except Exception as exc:
        raise StorageUnavailable("the database is unavailable; nothing was erased") from exc
    pending = writer.forget(tenant_id, visitor_id)
    counts = await storage.events.erase_visitor(tenant_id, visitor_id)
    counts["events"] += pending
    return counts
