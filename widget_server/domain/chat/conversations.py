"""Conversations: who may open one, how one is found or started on each channel, and the rules every channel
shares for a visitor id and a visitor's message.

A conversation belongs to one visitor with one persona: a widget resuming another visitor's conversation (or
one of another persona) silently gets a new one, so nothing is revealed; a REST caller naming such a
conversation gets a 404.
"""

from __future__ import annotations

import dataclasses
import re
import unicodedata
from dataclasses import dataclass, field
from typing import Any

from widget_server.clock import now
from widget_server.domain import personas
from widget_server.domain.chat.deps import Deps
from widget_server.domain.events import Event
from widget_server.domain.guardrails.check import CheckContext
from widget_server.domain.guardrails.decision import Decision
from widget_server.domain.guardrails.tenant_guard import GuardContext
from widget_server.errors import Conflict, ConversationNotFound, InvalidRequest
from widget_server.ids import new_unguessable_id, new_visitor_id

MAX_VISITOR_ID = 80
BIDI = frozenset("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")  # embeddings, overrides, isolates
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")
TAKEN = frozenset({"escalated", "agent"})  # a person has (or is fetched for) the conversation: the persona is silent


@dataclass(frozen=True)
class Conversation:
    id: str
    tenant_id: str
    persona: dict[str, Any]  # the stored persona row
    visitor_id: str
    channel: str
    status: str = "bot"
    guard: CheckContext = field(default_factory=CheckContext)  # as stored when the conversation was opened
    # A caller's own system messages for this turn (the OpenAI-compatible endpoint), after the persona's prompt
    instructions: tuple[str, ...] = ()
    # Started by this API call and not yet handed to anyone else: it is `bot` and has no messages, so its one turn
    # reads neither its status nor its history back from storage (two round trips before the first token).
    fresh: bool = False

    @property
    def guard_context(self) -> GuardContext:
        return GuardContext(self.tenant_id, self.persona["id"], self.id, self.channel)

    def event(self, type_: str, **attributes: Any) -> Event:
        return Event(type_, self.tenant_id, self.persona["id"], self.id, self.visitor_id, self.channel, attributes)

    def guardrail_event(self, decision: Decision, source: str, message_id: str) -> Event:
        """`guardrail.triggered`: one per decision that was not `allow`."""
        return self.event("guardrail.triggered", rule=decision.reason, action=decision.action, source=source,
                          message_id=message_id)


def from_row(row: dict[str, Any], persona: dict[str, Any]) -> Conversation:
    guard = CheckContext(row.get("guard_refusals") or 0, row.get("guard_previous"))
    return Conversation(row["id"], row["tenant_id"], persona, row["visitor_id"], row["channel"], row["status"], guard)


def check_writable(status: str, via: str) -> None:
    """Whether a visitor's message may go to a conversation in this state: never to a closed one; to one a person
    has taken only from the widget's socket (`via`), where the agents' messages reach the visitor (a REST caller
    reads them with `GET /v1/conversations/{id}`)."""
    if status == "closed":
        raise Conflict("this conversation has ended", code="conversation.closed")
    if status in TAKEN and via != "widget":
        raise Conflict("a person has this conversation: their messages are in GET /v1/conversations/{id}",
                       code="conversation.taken_over", details={"status": status})


def visitor_id(value: Any) -> str:
    """The visitor id a client gave (a printable string of 1 to 80 characters), or a new one when it gave none."""
    if value is None:
        return new_visitor_id()
    if (not isinstance(value, str) or not 1 <= len(value) <= MAX_VISITOR_ID or not value.isprintable()
            or BIDI.intersection(value)):
        raise InvalidRequest(f"visitor_id must be a printable string of 1 to {MAX_VISITOR_ID} characters",
                             code="visitor_id.invalid", details={"field": "visitor_id"})
    return value


def check_text(value: str, field: str, code: str = "frame.invalid") -> str:
    """`value`, unless it holds what storage cannot hold or a reader should never get: a lone surrogate (not
    encodable as UTF-8), a control character (tab and newlines aside) or a bidi embedding, override or isolate."""
    for ch in value:
        category = unicodedata.category(ch)
        if ch in BIDI or (ch not in "\t\n\r" and category in ("Cc", "Cs")):
            kind = ("a bidi control character" if ch in BIDI else
                    "a lone surrogate" if category == "Cs" else "a control character")
            problem = f"contains {kind} (U+{ord(ch):04X})"
            raise InvalidRequest(f"{field} {problem}", code=code, details={"field": field, "problem": problem})
    return value


def storable(text: str) -> str:
    """`text` with what no database can hold replaced by U+FFFD: NUL (PostgreSQL's text and JSON refuse it) and
    lone surrogates (not encodable as UTF-8). For text from elsewhere than the visitor (a provider's reply),
    which is shown and stored as it is repaired here, never refused."""
    return _UNSTORABLE.sub("\ufffd", text)


def check_message(text: Any, max_chars: int) -> str:
    """A visitor's message as every channel accepts it: non-blank text of at most `max_chars` characters that
    passes `check_text`."""
    if not isinstance(text, str) or not text.strip():
        raise InvalidRequest("message text must be a non-empty string", code="message.invalid",
                             details={"field": "text"})
    if len(text) > max_chars:
        raise InvalidRequest(f"message is longer than {max_chars} characters", code="message.too_long",
                             details={"field": "text", "max_chars": max_chars})
    return check_text(text, "text", code="message.invalid")


async def start(deps: Deps, tenant_id: str, persona: dict[str, Any], visitor: str, channel: str,
                origin: str | None = None, user_id: str | None = None,
                attributes: dict[str, Any] | None = None) -> Conversation:
    """A new conversation, stored, and its `conversation.started` event (with `attributes` besides the origin: a
    test's simulated visitor's request headers)."""
    conv = Conversation(new_unguessable_id("conv"), tenant_id, persona, visitor, channel)
    stamp = now()
    await deps.storage.create_conversation({
        "id": conv.id, "tenant_id": tenant_id, "persona_id": persona["id"], "visitor_id": visitor,
        "user_id": user_id, "channel": channel, "status": "bot", "origin": origin, "created_at": stamp,
        "updated_at": stamp,
    })
    deps.events.emit(conv.event("conversation.started", origin=origin, **(attributes or {})))
    return conv


async def _own(deps: Deps, tenant_id: str, persona: dict[str, Any], conversation_id: Any,
               visitor: str | None, user_id: str | None | bool = False) -> Conversation | None:
    """The conversation, when it exists and belongs to this persona (and to this visitor, when one is named; and
    to this verified user, or to no verified user, when `user_id` is not False)."""
    if not isinstance(conversation_id, str) or not conversation_id or len(conversation_id) > 40:
        return None
    row = await deps.storage.get_conversation(tenant_id, conversation_id)
    if row is None or row["persona_id"] != persona["id"] or (visitor is not None and row["visitor_id"] != visitor):
        return None
    if user_id is not False and row.get("user_id") != user_id:
        return None  # a verified user's conversation is that user's alone; an anonymous one is no user's
    return from_row(row, persona)


async def open_widget(deps: Deps, tenant_id: str, persona: dict[str, Any], visitor: str, origin: str,
                      resume_id: Any, user_id: str | None = None) -> tuple[Conversation, bool]:
    """The visitor's conversation to resume, or a new one; and whether it was resumed from storage. With identity
    verification the conversation belongs to the verified user: a visitor verified as another user (or not at all)
    who claims its visitor id gets a conversation of their own."""
    found = await _own(deps, tenant_id, persona, resume_id, visitor, user_id) if resume_id is not None else None
    if found is not None:
        return found, True
    return await start(deps, tenant_id, persona, visitor, "widget", origin, user_id), False


async def open_api(deps: Deps, tenant_id: str, persona_ref: str, message: Any, conversation_id: Any,
                   visitor: Any, channel: str = "api", persona: dict[str, Any] | None = None) -> Conversation:
    """The conversation a REST prompt goes to: the one named (404 unless it is this persona's, and this
    visitor's when one is named), or a new one on `channel` (`api`; `openai` for the OpenAI-compatible
    endpoint, `mcp` for the MCP server's `chat` tool). The message is checked first, so a refused message leaves
    no empty conversation behind. `persona`: the row `persona_ref` names, when the caller has read it already."""
    persona = persona or await personas.get(deps.storage, tenant_id, persona_ref)
    check_message(message, deps.settings.max_message_chars)
    named_visitor = visitor_id(visitor) if visitor is not None else None
    if conversation_id is None:
        conv = await start(deps, tenant_id, persona, named_visitor or visitor_id(None), channel)
        return dataclasses.replace(conv, fresh=True)
    found = await _own(deps, tenant_id, persona, conversation_id, named_visitor)
    if found is None:
        raise ConversationNotFound(f"no conversation {str(conversation_id)[:40]!r} with this persona")
    check_writable(found.status, "api")
    return found


async def open_console(deps: Deps, tenant_id: str, persona: dict[str, Any], visitor: str,
                       conversation_id: Any) -> Conversation:
    """The conversation a console user's playground turn goes to: the one named (404 unless it is this persona's,
    this user's and on channel `console`), or a new one on channel `console`."""
    if conversation_id is None:
        return await start(deps, tenant_id, persona, visitor, "console")
    found = await _own(deps, tenant_id, persona, conversation_id, visitor)
    if found is None or found.channel != "console":
        raise ConversationNotFound(f"no playground conversation {str(conversation_id)[:40]!r} with this persona")
    return found
