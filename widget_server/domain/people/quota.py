"""A key's monthly GET /v1/persona quota: the period starts on the key's creation day and time each month (the
last day of a shorter month stands in for the 29th to 31st), and each request is counted in storage atomically
before the persona is made."""

from __future__ import annotations

from calendar import monthrange
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from widget_server.backends.ratelimit import Verdict, checked
from widget_server.errors import QuotaExceeded

RULE = "persona_quota"  # its name in the RateLimit headers (edges/ratelimit_headers.py), beside the other limits


@dataclass(frozen=True)
class Usage:
    limit: int | None  # None: demo mode, counted by the hourly limiter instead
    remaining: int | None
    reset: datetime | None

    def public(self) -> dict[str, Any]:
        """PersonaGen's `metadata.usage`."""
        return {"requests_remaining": self.remaining,
                "reset_date": self.reset.strftime("%Y-%m-%dT%H:%M:%SZ") if self.reset else None}

    def counted(self, start: datetime, at: datetime) -> None:
        """Shown in the response's `RateLimit-Policy` / `RateLimit` headers as the limit `persona_quota`: the quota
        per period (its length in seconds), what is left, and the seconds until the reset."""
        if self.limit is None or self.reset is None or self.remaining is None:
            return
        verdict = Verdict(RULE, self.limit, (self.reset - start).total_seconds(), self.remaining,
                          max(0.0, (self.reset - at).total_seconds()), self.remaining > 0)
        if (seen := checked.get()) is not None:
            seen.append(verdict)


def _anchor(year: int, month: int, created: datetime) -> datetime:
    day = min(created.day, monthrange(year, month)[1])
    return datetime(year, month, day, created.hour, created.minute, created.second, tzinfo=UTC)


def period(created: datetime, at: datetime) -> tuple[datetime, datetime]:
    """The quota period holding `at`, for a key made at `created`: its start and the next reset."""
    created = created if created.tzinfo else created.replace(tzinfo=UTC)
    start = _anchor(at.year, at.month, created)
    if start > at:
        year, month = (at.year, at.month - 1) if at.month > 1 else (at.year - 1, 12)
        start = _anchor(year, month, created)
    year, month = (start.year, start.month + 1) if start.month < 12 else (start.year + 1, 1)
    return start, _anchor(year, month, created)


async def take(usage_store: Any, key: dict[str, Any], default_quota: int, at: datetime) -> Usage:
    """Count one request of this key, or `QuotaExceeded` (429) with the reset when the quota is used up."""
    limit = key.get("persona_quota")
    limit = default_quota if limit is None else int(limit)
    start, reset = period(key["created_at"], at)
    count = await usage_store.take(key["id"], start, limit)
    usage = Usage(limit, 0 if count is None else limit - count, reset)
    usage.counted(start, at)
    if count is None:
        raise QuotaExceeded(f"this key's {limit} requests a month are used up until {usage.public()['reset_date']}",
                            details={"retry_after_s": max(1, int((reset - at).total_seconds())),
                                     "usage": usage.public()})
    return usage
