"""What the widget reports besides messages: ratings on replies and its own open/close events."""

from __future__ import annotations

import json
from typing import Any

from widget_server.backends.storage.engine import now
from widget_server.domain.chat import Conversation, Deps
from widget_server.errors import InvalidRequest, NotFound
from widget_server.ids import new_id

WIDGET_EVENTS = {"widget.opened", "widget.closed"}


async def submit(deps: Deps, conv: Conversation, frame: dict[str, Any]) -> None:
    """Store a thumbs up/down on one of this conversation's replies; a second rating replaces the first."""
    rating, comment = frame.get("rating"), frame.get("comment")
    if rating not in ("up", "down"):
        raise InvalidRequest("rating must be up or down", code="feedback.invalid")
    if comment is not None and (not isinstance(comment, str) or len(comment) > 2000):
        raise InvalidRequest("comment must be a string of at most 2000 characters", code="feedback.invalid")
    message = await deps.storage.get_message(conv.tenant_id, str(frame.get("message_id")))
    if message is None or message["conversation_id"] != conv.id or message["role"] != "persona":
        raise NotFound("no such reply in this conversation", code="message.not_found")
    await deps.storage.save_feedback({
        "id": new_id("fb"), "tenant_id": conv.tenant_id, "conversation_id": conv.id,
        "message_id": message["id"], "rating": rating, "comment": comment, "created_at": now(),
    })
    deps.events.emit(conv.event("feedback.submitted", message_id=message["id"], rating=rating,
                                has_comment=bool(comment)))


def widget_event(deps: Deps, conv: Conversation, frame: dict[str, Any]) -> None:
    name, props = frame.get("name"), frame.get("props") or {}
    if name not in WIDGET_EVENTS:
        raise InvalidRequest(f"event name must be one of {sorted(WIDGET_EVENTS)}", code="event.invalid")
    if not isinstance(props, dict) or len(json.dumps(props)) > 2000:
        raise InvalidRequest("props must be an object of at most 2000 characters", code="event.invalid")
    deps.events.emit(conv.event(name, props=props))
