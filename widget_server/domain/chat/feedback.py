"""What the widget reports besides messages: ratings on replies and its own open/close events."""

from __future__ import annotations

from typing import Any

from widget_server.clock import now
from widget_server.domain.chat.conversations import Conversation
from widget_server.domain.chat.deps import Deps
from widget_server.errors import InvalidRequest, NotFound
from widget_server.ids import new_id

RATINGS = ("up", "down")
WIDGET_EVENTS = ("widget.opened", "widget.closed")


async def submit(deps: Deps, conv: Conversation, message_id: str, rating: str, comment: str | None) -> None:
    """Store a thumbs up/down on one of this conversation's replies; a second rating replaces the first."""
    if rating not in RATINGS:
        raise InvalidRequest("rating must be up or down", code="feedback.invalid")
    message = await deps.storage.get_message(conv.tenant_id, message_id)
    if message is None or message["conversation_id"] != conv.id or message["role"] != "persona":
        raise NotFound("no such reply in this conversation", code="message.not_found")
    await deps.storage.save_feedback({
        "id": new_id("fb"), "tenant_id": conv.tenant_id, "conversation_id": conv.id,
        "message_id": message["id"], "rating": rating, "comment": comment, "created_at": now(),
    })
    deps.events.emit(conv.event("feedback.submitted", message_id=message["id"], rating=rating,
                                has_comment=bool(comment)))


def widget_event(deps: Deps, conv: Conversation, name: str, props: dict[str, Any]) -> None:
    if name not in WIDGET_EVENTS:
        raise InvalidRequest(f"event name must be one of {', '.join(WIDGET_EVENTS)}", code="event.invalid")
    deps.events.emit(conv.event(name, props=props))
