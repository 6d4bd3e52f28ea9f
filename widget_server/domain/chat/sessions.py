"""Prompt sessions: a tenant's conversations on the API's channels (`api`: REST and SSE prompts and prompt jobs;
`openai`: the OpenAI-compatible endpoint), newest first, each with its last message and its counts."""

from __future__ import annotations

import re
from typing import Any

from widget_server.backends.storage import Storage
from widget_server.errors import InvalidRequest

API_CHANNELS = ("api", "openai")
CURSOR = "^conv_[0-9a-z]{1,36}$"  # a conversation's id, as `next_cursor` gives it


async def page(storage: Storage, tenant_id: str, *, limit: int, cursor: str | None,
               channel: str | None) -> tuple[list[dict[str, Any]], str | None]:
    """A page of sessions and the cursor of the next one (None: this is the last)."""
    if cursor is not None and not re.fullmatch(CURSOR, cursor):
        raise InvalidRequest("cursor is not one this API returned", code="query.invalid", details={"param": "cursor"})
    if channel is not None and channel not in API_CHANNELS:
        raise InvalidRequest(f"channel must be one of {', '.join(API_CHANNELS)}", code="query.invalid",
                             details={"param": "channel"})
    rows = await storage.sessions.newest(tenant_id, (channel,) if channel else API_CHANNELS, limit=limit + 1,
                                       before=cursor)
    shown = rows[:limit]
    last = {m["conversation_id"]: m for m in await storage.last_messages(tenant_id, [r["id"] for r in shown], 1)}
    return [_session(r, last.get(r["id"])) for r in shown], shown[-1]["id"] if len(rows) > limit else None


def _session(row: dict[str, Any], last: dict[str, Any] | None) -> dict[str, Any]:
    return {
        "id": row["id"], "persona_id": row["persona_id"], "visitor_id": row["visitor_id"], "channel": row["channel"],
        "status": row["status"], "created_at": row["created_at"].isoformat(),
        "updated_at": row["updated_at"].isoformat(),
        "last_message": {"role": last["role"], "text": last["text"], "created_at": last["created_at"].isoformat()}
        if last else None,
        "counts": {"messages": row["messages"], "visitor_turns": row["visitor_turns"]},
    }
