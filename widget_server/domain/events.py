"""Analytics events as small frozen dataclasses, and the sink they go to (the analytics writer plugs in here)."""

from __future__ import annotations

import logging
from collections import deque
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

from widget_server.ids import new_id

log = logging.getLogger(__name__)
SCHEMA_VERSION = 1


@dataclass(frozen=True)
class Event:
    type: str
    tenant_id: str
    persona_id: str | None = None
    conversation_id: str | None = None
    visitor_id: str | None = None
    channel: str | None = None
    attributes: dict[str, Any] = field(default_factory=dict)
    id: str = field(default_factory=lambda: new_id("evt"))
    ts: datetime = field(default_factory=lambda: datetime.now(UTC))
    schema_version: int = SCHEMA_VERSION


class EventSink(Protocol):
    def emit(self, event: Event) -> None:
        """Must not block or raise: a reply never waits on an event write."""
        ...

    async def aclose(self) -> None: ...


class MemorySink:
    """Keeps the most recent events in memory; the batched database writer replaces it (analytics issue)."""

    def __init__(self, maxlen: int = 10_000) -> None:
        self.events: deque[Event] = deque(maxlen=maxlen)

    def emit(self, event: Event) -> None:
        self.events.append(event)
        log.debug("event", extra={"event_type": event.type, "conversation_id": event.conversation_id})

    async def aclose(self) -> None:
        return None
