"""Replies whose node died: when the lease of a running reply lapses, another node ends it.

The reply is ended with what reached the bus: its text is the deltas in the conversation's log, it is stored with
`finish_reason: interrupted`, its `reply.end` goes to the log (so any client waiting on it, on any node, gets a
clear end) and its `reply.completed` event is recorded. A reply that was stored before its node died keeps what
it stored; one whose `reply.end` is in the log already needs nothing more.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from typing import Any

from widget_server.clock import now
from widget_server.domain.chat.channels import INTERRUPTED
from widget_server.domain.chat.conversations import Conversation
from widget_server.domain.chat.deps import Deps
from widget_server.domain.chat.turn import Reply, record

log = logging.getLogger(__name__)


async def end_lapsed(deps: Deps, info: dict[str, Any]) -> None:
    """End the reply `info` describes (the lease's info, as `live_turn.lock_turn` wrote it)."""
    conv = Conversation(info["conversation_id"], info["tenant_id"], {"id": info["persona_id"]}, info["visitor_id"],
                        info["channel"])
    reply_id = info["message_id"]
    line = deps.hub.bus.line(conv.id)
    since = await line.since(0)
    frames = [json.loads(text) for _, text in since.frames or []]
    mine = [f for f in frames if f.get("message_id") == reply_id]
    if any(f["type"] == "reply.end" for f in mine):
        return
    reply = Reply(reply_id, text="".join(f["text"] for f in mine if f["type"] == "reply.delta"),
                  finish_reason=INTERRUPTED)
    reply.timing["total_ms"] = round((time.time() - info["started"]) * 1000)
    stored = {m["id"]: m for m in await deps.storage.list_messages(conv.tenant_id, conv.id)}
    if reply_id in stored:
        reply.finish_reason = stored[reply_id]["finish_reason"] or INTERRUPTED
    else:
        await deps.storage.add_message({
            "id": reply_id, "tenant_id": conv.tenant_id, "conversation_id": conv.id, "role": "persona",
            "text": reply.text, "finish_reason": INTERRUPTED, "guardrail": None, "usage": reply.usage,
            "timing": reply.timing, "created_at": now()})
        record(deps, conv, reply)
    if not any(f["type"] == "reply.start" for f in mine):
        line.emit({"type": "reply.start", "message_id": reply_id})
    line.emit({"type": "reply.end", "message_id": reply_id, "finish_reason": reply.finish_reason,
               "usage": reply.usage, "timing": reply.timing, "guardrails": []})
    log.warning("ended a reply whose node stopped", extra={"conversation_id": conv.id, "message_id": reply_id})


async def sweep_lapsed_forever(deps: Deps) -> None:
    """Look for lapsed replies twice per lease (a no-op on the memory bus)."""
    if not deps.hub.bus.shared:
        return
    while True:
        await asyncio.sleep(deps.hub.lease_s / 2)
        for info in await deps.hub.bus.lapsed():
            try:
                await end_lapsed(deps, info)
            except Exception:
                log.exception("could not end a lapsed reply", extra={"conversation_id": info.get("conversation_id")})
