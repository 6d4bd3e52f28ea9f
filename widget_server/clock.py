"""The one wall clock: UTC-aware `now()`. Storage, the domain and the edges all read time here."""

from __future__ import annotations

from datetime import UTC, datetime


def now() -> datetime:
    return datetime.now(UTC)
