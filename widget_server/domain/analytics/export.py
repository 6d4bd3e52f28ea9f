"""Exports: events, or one row per conversation, streamed as JSONL, CSV or Parquet in one versioned schema.

The HTTP endpoint and the CLI both call `parse_export`, then `begin` (which fixes the snapshot: the tenant's newest
`seq`), then iterate `stream`; so they write the same bytes. Rows are read in keyset pages and encoded page by page
(Parquet: a row group at a time), so memory stays flat however large the export.
"""

from __future__ import annotations

import asyncio
import importlib
import time
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

from widget_server.backends.storage import Storage
from widget_server.backends.storage.analytics import EventFilter
from widget_server.backends.storage.rows import Row
from widget_server.domain.analytics.encoders import (
    ENCODERS,
    Encoder,
    RenderedCsvEncoder,
    RenderedJsonlEncoder,
    Schema,
)
from widget_server.domain.analytics.query import COLUMNS, EXPORT_SCHEMA, event_json, parse_filter
from widget_server.errors import InvalidRequest

CONVERSATION_SCHEMA = "widget_server.conversations/1"
CONVERSATION_COLUMNS = ("conversation_id", "persona_id", "visitor_id", "channel", "started", "ended", "messages",
                        "refusals", "escalated", "feedback_up", "feedback_down", "ttft_ms_avg", "status")
MEDIA_TYPES = {"jsonl": "application/x-ndjson", "csv": "text/csv; charset=utf-8",
               "parquet": "application/vnd.apache.parquet"}
LEVELS = ("event", "conversation")
PAGE = 2000


def _conversation_json(row: Row) -> dict[str, Any]:
    out = {c: row[c] for c in CONVERSATION_COLUMNS}
    for key in ("started", "ended"):
        out[key] = _iso(row[key])
    return out


def _iso(value: datetime) -> str:
    return value.astimezone(UTC).isoformat(timespec="microseconds")  # as `event_json` writes `ts`


EVENTS = Schema(EXPORT_SCHEMA, COLUMNS, event_json, {
    "id": "string", "ts": "timestamp", "tenant_id": "string", "persona_id": "string", "conversation_id": "string",
    "visitor_id": "string", "channel": "string", "type": "string", "schema_version": "int16",
    "attributes": "json"})
CONVERSATIONS = Schema(CONVERSATION_SCHEMA, CONVERSATION_COLUMNS, _conversation_json, {
    "conversation_id": "string", "persona_id": "string", "visitor_id": "string", "channel": "string",
    "started": "timestamp", "ended": "timestamp", "messages": "int64", "refusals": "int64", "escalated": "bool",
    "feedback_up": "int64", "feedback_down": "int64", "ttft_ms_avg": "float64", "status": "string"})


@dataclass(frozen=True)
class Export:
    """What one export reads (tenant, filters, level, snapshot `upto`) and how it writes it (format)."""

    tenant_id: str
    filters: EventFilter
    format: str
    level: str
    upto: int = 0

    @property
    def schema(self) -> Schema:
        return CONVERSATIONS if self.level == "conversation" else EVENTS

    @property
    def media_type(self) -> str:
        return MEDIA_TYPES[self.format]

    def filename(self, stamp: datetime) -> str:
        kind = "conversations" if self.level == "conversation" else "events"
        return f"{kind}-{self.tenant_id}-{stamp:%Y%m%dT%H%M%SZ}.{self.format}"


def _invalid(message: str, param: str) -> InvalidRequest:
    return InvalidRequest(message, code="query.invalid", details={"param": param})


def require_pyarrow() -> None:
    """Parquet needs pyarrow, an optional extra (about 40 MB): say how to get it rather than fail later."""
    try:
        importlib.import_module("pyarrow.parquet")
    except ImportError:
        raise InvalidRequest("format=parquet needs pyarrow on the server: pip install 'widget_server[parquet]'",
                             code="export.format_unavailable", details={"param": "format"}) from None


async def parse_export(storage: Storage, tenant_id: str, params: Mapping[str, str]) -> Export:
    """`format` (jsonl by default, csv, parquet), `level` (event by default, conversation) and the query's filters.

    At the conversation level the time bounds select conversations by when they started, and `type` is refused:
    a row counts several types of event, so a type filter would only make its counts wrong."""
    fmt = params.get("format") or "jsonl"
    if fmt not in MEDIA_TYPES:
        raise _invalid(f"format must be one of {', '.join(MEDIA_TYPES)}, got {fmt[:40]!r}", "format")
    level = params.get("level") or "event"
    if level not in LEVELS:
        raise _invalid(f"level must be event or conversation, got {level[:40]!r}", "level")
    filters = await parse_filter(storage, tenant_id, params)
    if level == "conversation" and filters.types:
        raise _invalid("type does not apply to level=conversation (each row counts several event types)", "type")
    if fmt == "parquet":
        require_pyarrow()
    return Export(tenant_id, filters, fmt, level)


async def begin(storage: Storage, export: Export) -> Export:
    """Fix the snapshot: only events committed by now are exported, whatever arrives while it streams."""
    return replace(export, upto=await storage.events.high_water(export.tenant_id))


async def count(storage: Storage, export: Export) -> int:
    """How many rows `stream` will write (for a progress bar)."""
    agg = storage.aggregates
    if export.level == "conversation":
        return await agg.count_conversations(export.tenant_id, export.filters, export.upto)
    return await agg.count_events(export.tenant_id, export.filters, export.upto)


async def stream(
    storage: Storage, export: Export, on_rows: Callable[[int], None] | None = None, *, pace: float = 0.0
) -> AsyncIterator[bytes]:
    """The file, chunk by chunk. With `pace` > 0 the export rests `pace` times as long as each page took to read
    and encode (not counting the time the client takes to read it): inside the server it shares the CPU with live
    conversations, and at full speed it would slow their first tokens down; so it takes longer instead."""
    encoder, pages = _plan(storage, export)
    if head := encoder.start():
        yield head
    began = time.monotonic()
    async for rows in pages:
        chunk = await asyncio.to_thread(encoder.encode, rows)
        worked = time.monotonic() - began
        if chunk:
            yield chunk
        if on_rows is not None:
            on_rows(len(rows))
        if pace > 0:
            await asyncio.sleep(worked * pace)
        began = time.monotonic()
    if tail := await asyncio.to_thread(encoder.finish):
        yield tail


def _plan(storage: Storage, export: Export) -> tuple[Encoder, AsyncIterator[Sequence[Any]]]:
    """Events as JSONL or CSV come rendered by the database (cheap for the live conversations sharing this
    process); Parquet and conversation rows are typed rows encoded here."""
    if export.level == "event" and export.format in ("jsonl", "csv"):
        reader = storage.export_rows
        read = reader.cells if export.format == "csv" else reader.lines
        encoder = RenderedCsvEncoder if export.format == "csv" else RenderedJsonlEncoder
        return encoder(export.schema), read(export.tenant_id, export.filters, upto=export.upto, page=PAGE)
    return ENCODERS[export.format](export.schema), _rows(storage, export)


async def _rows(storage: Storage, export: Export) -> AsyncIterator[list[Row]]:
    if export.level == "conversation":
        agg, after = storage.aggregates, ""
        while rows := await agg.conversation_page(export.tenant_id, export.filters, upto=export.upto,
                                                  after=after, limit=PAGE):
            yield rows
            if len(rows) < PAGE:
                return
            after = rows[-1]["conversation_id"]
        return
    rows = []
    async for row in storage.events.scan(export.tenant_id, export.filters, upto=export.upto, page=PAGE):
        rows.append(row)
        if len(rows) == PAGE:
            yield rows
            rows = []
    if rows:
        yield rows
