"""A prompt job as the API shows it (and as its callback carries it)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from widget_server.backends.storage.rows import Row


def _time(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def public(row: Row) -> dict[str, Any]:
    """The job; `result` (the body `POST …/prompt` answers) once it succeeded or was cancelled mid-reply, `error`
    (DESIGN.md's error body) once it failed."""
    out: dict[str, Any] = {
        "id": row["id"], "status": row["status"], "persona_id": row["persona_id"],
        "conversation_id": row["conversation_id"], "attempts": row["attempts"],
        "cancel_requested": bool(row["cancel_requested"]), "created_at": row["created_at"].isoformat(),
        "started_at": _time(row["started_at"]), "finished_at": _time(row["finished_at"]),
        "result": row["result"], "error": row["error"],
        "callback": {"url": row["callback_url"], "state": row["callback_state"],
                     "attempts": row["callback_attempts"]} if row["callback_url"] else None,
    }
    return out
