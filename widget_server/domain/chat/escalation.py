"""Escalation: a conversation handed to a person (a guardrail decided so), and handed back to the bot."""

from __future__ import annotations

from typing import Any

from widget_server.clock import now
from widget_server.domain.chat.conversations import Conversation
from widget_server.domain.chat.deps import Deps
from widget_server.domain.chat.frames import Emit
from widget_server.domain.events import Event
from widget_server.domain.guardrails.decision import Decision
from widget_server.errors import Conflict


async def escalate_if_asked(deps: Deps, conv: Conversation, decision: Decision, emit: Emit) -> None:
    """Hand the conversation to a person: its status says so, the visitor is told, support gets the event."""
    if decision.action != "escalate":
        return
    await deps.storage.set_conversation_status(conv.tenant_id, conv.id, "escalated")
    emit({"type": "escalation", "status": "requested"})
    deps.events.emit(conv.event("escalation.triggered", reason=decision.reason))


async def resolve(deps: Deps, conversation: dict[str, Any], note: str | None) -> None:
    """Support hands an escalated conversation back to the bot: the status, the visitor's widget, the event."""
    if conversation["status"] != "escalated":
        raise Conflict("the conversation is not escalated", code="conversation.not_escalated")
    tenant_id, conv_id = conversation["tenant_id"], conversation["id"]
    await deps.storage.set_conversation_status(tenant_id, conv_id, "bot")
    deps.hub.emit(conv_id, {"type": "escalation", "status": "resolved"})
    waited = round((now() - conversation["updated_at"]).total_seconds() * 1000)
    deps.events.emit(Event("escalation.resolved", tenant_id, conversation["persona_id"], conv_id,
                           conversation["visitor_id"], conversation["channel"],
                           {"note": note, "escalated_ms": waited}))
