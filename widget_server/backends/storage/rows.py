"""Rows as plain dicts, with the timestamps made UTC-aware (SQLite hands them back naive)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from widget_server.clock import now

__all__ = ["Row", "as_row", "aware", "now"]
Row = dict[str, Any]


def aware(value: datetime) -> datetime:
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def as_row(mapping: Any) -> Row:
    out = dict(mapping)
    for key, value in out.items():
        if isinstance(value, datetime):
            out[key] = aware(value)
    return out
