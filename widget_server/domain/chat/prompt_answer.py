"""What a REST prompt answers: the body of `POST /v1/personas/{id}/prompt`, or the error a failed reply is. One
place, so that an async prompt job's `result` is exactly what the synchronous endpoint returns."""

from __future__ import annotations

from typing import Any

from widget_server.domain.chat.turn import Reply
from widget_server.errors import ProviderError, ProviderTimeout, UpstreamRefused, WidgetError


def answer(conversation_id: str, reply: Reply) -> dict[str, Any]:
    """The JSON body of a reply that ended (stopped, cut short, refused by a guardrail)."""
    out: dict[str, Any] = {
        "conversation_id": conversation_id, "message_id": reply.message_id, "text": reply.text,
        "finish_reason": reply.finish_reason, "usage": reply.usage, "timing": reply.timing,
        "guardrails": reply.guardrails,
    }
    if reply.guardrail:
        out["guardrail"] = reply.guardrail
    return out


def failure(conversation_id: str, reply: Reply) -> WidgetError | None:
    """The error of a reply the provider failed (502, 504, or 422 for a model the server refuses), if it failed."""
    if not reply.error:
        return None
    err_cls = {e.code: e for e in (ProviderTimeout, UpstreamRefused)}.get(reply.error["code"], ProviderError)
    return err_cls(reply.error["message"], details={"conversation_id": conversation_id, "message_id": reply.message_id})
