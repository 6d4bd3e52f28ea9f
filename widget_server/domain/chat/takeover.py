"""Human takeover: `bot` → `escalated` (waiting for a person) → `agent` (a person has it) → `bot` (resolved) or
`closed`.

While a conversation is `escalated` or `agent` the persona says nothing: the visitor's messages are stored (masked
where the policy masks) and reach the agents. Each step is one conditional update, so of two agents claiming at once
exactly one wins; then a frame on the conversation's line (the visitor's widget, on whichever node its socket is), a
frame on the tenant's inbox line (every signed-in agent's console, on any node) and an event.

Lines: the conversation's own (what the visitor sees: `escalation`, `agent.message`, `typing`), `<conversation>:agents`
(what only agents see: internal notes, the visitor typing) and `inbox:<tenant>` (the queue changed).
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from widget_server.clock import now
from widget_server.domain.chat.conversations import TAKEN, Conversation, check_message, check_text
from widget_server.domain.chat.deps import Deps
from widget_server.domain.chat.frames import Emit
from widget_server.domain.events import Event
from widget_server.domain.guardrails.compile import CompiledPolicy
from widget_server.domain.guardrails.decision import Decision
from widget_server.domain.guardrails.policy import Escalation as EscalationSettings
from widget_server.errors import Conflict, ConversationNotFound, InvalidRequest
from widget_server.ids import new_id

log = logging.getLogger(__name__)
MIN_WAIT_S = 10  # the shortest `escalation.wait_notice_s` a policy may set
# A playground or test run's escalation is only reported; the others join the queue.
QUEUED_CHANNELS = frozenset({"widget", "api", "openai", "mcp"})
MAX_AGENT_ID = 80
MAX_AGENT_NAME = 80
MAX_AVATAR_URL = 500


@dataclass(frozen=True)
class Agent:
    """A person answering: a console user, or an integration's agent named over REST."""

    id: str
    name: str
    avatar_url: str | None = None

    def shown(self) -> dict[str, Any]:
        """What the visitor's widget shows of the agent."""
        return {"name": self.name, "avatar_url": self.avatar_url}

    def stored(self) -> dict[str, Any]:
        """Kept on the agent's messages: a transcript rebuilt in the widget shows the avatar too."""
        return {"id": self.id, "name": self.name, **({"avatar_url": self.avatar_url} if self.avatar_url else {})}


def agent_of(value: Any) -> Agent:
    """`{"id", "name", "avatar_url"?}` as a REST body gives it."""
    if not isinstance(value, dict):
        raise InvalidRequest("agent must be an object with id and name", code="request.invalid",
                             details={"field": "agent"})
    unknown = set(value) - {"id", "name", "avatar_url"}
    if unknown:
        raise InvalidRequest(f"unknown field agent.{sorted(unknown)[0][:40]}", code="request.invalid",
                             details={"field": f"agent.{sorted(unknown)[0][:40]}"})
    fields = {"id": MAX_AGENT_ID, "name": MAX_AGENT_NAME}
    for name, most in fields.items():
        got = value.get(name)
        if not isinstance(got, str) or not got.strip() or len(got) > most:
            raise InvalidRequest(f"agent.{name} must be a non-blank string of 1 to {most} characters",
                                 code="request.invalid", details={"field": f"agent.{name}"})
        check_text(got, f"agent.{name}", code="request.invalid")
    avatar = value.get("avatar_url")
    if avatar is not None:
        if not isinstance(avatar, str) or len(avatar) > MAX_AVATAR_URL or not avatar.startswith("https://"):
            raise InvalidRequest(f"agent.avatar_url must be an https URL of at most {MAX_AVATAR_URL} characters",
                                 code="request.invalid", details={"field": "agent.avatar_url"})
        check_text(avatar, "agent.avatar_url", code="request.invalid")
    return Agent(value["id"], value["name"].strip(), avatar)


def agents_line(conversation_id: str) -> str:
    return f"{conversation_id}:agents"


def inbox_line(tenant_id: str) -> str:
    return f"inbox:{tenant_id}"


def _event(type_: str, row: dict[str, Any], **attributes: Any) -> Event:
    return Event(type_, row["tenant_id"], row["persona_id"], row["id"], row["visitor_id"], row["channel"], attributes)


def _ms(since: datetime | None) -> int | None:
    return None if since is None else max(round((now() - since).total_seconds() * 1000), 0)


def _inbox(deps: Deps, row: dict[str, Any], what: str, **more: Any) -> None:
    deps.hub.emit(inbox_line(row["tenant_id"]), {"type": "inbox", "what": what, "conversation_id": row["id"],
                                                 "status": row["status"], "agent_name": row.get("agent_name"),
                                                 **more})


async def _found(deps: Deps, tenant_id: str, conversation_id: str) -> dict[str, Any]:
    row = await deps.storage.get_conversation(tenant_id, conversation_id)
    if row is None:
        raise ConversationNotFound(f"no conversation {conversation_id[:40]!r}")
    return row


def _not_held(row: dict[str, Any], agent: Agent) -> Conflict:
    if row["status"] == "agent":
        return Conflict(f"{row['agent_name']} has this conversation", code="conversation.claimed",
                        details={"agent": {"id": row["agent_id"], "name": row["agent_name"]}})
    return Conflict(f"the conversation is {row['status']}, not held by {agent.name}",
                    code="conversation.not_claimed", details={"status": row["status"]})


async def escalate_if_asked(deps: Deps, conv: Conversation, decision: Decision, emit: Emit) -> None:
    """A guardrail decided to hand the conversation to a person: the visitor is told, the conversation joins the
    queue (a widget or REST one: the console's playground and test runs only report it), support gets the event."""
    if decision.action != "escalate":
        return
    row = None
    if conv.channel in QUEUED_CHANNELS:
        row = await escalated(deps, conv.tenant_id, conv.id, decision.reason or "escalation",
                              online=True if conv.channel == "widget" else None)  # (they just wrote)
    emit({"type": "escalation", "status": "requested"})
    deps.events.emit(conv.event("escalation.triggered", reason=decision.reason))
    if row is not None:
        await _tell_if_nobody(deps, row, emit)


async def escalated(deps: Deps, tenant_id: str, conversation_id: str, reason: str,
                    online: bool | None = None) -> dict[str, Any] | None:
    """A guardrail handed the conversation to a person: it joins the queue (None when it was not the bot's).
    `online`: whether the visitor's widget is connected (None for a REST conversation: nobody to see)."""
    at = now()
    row = await deps.storage.move_conversation(
        tenant_id, conversation_id, from_status=("bot",),
        values={"status": "escalated", "escalated_at": at, "escalation_reason": reason[:80], "agent_id": None,
                "agent_name": None, "claimed_at": None, "wait_noticed_at": None, "visitor_online": online,
                "visitor_seen_at": at if online is not None else None})
    if row is not None:
        _inbox(deps, row, "escalated", reason=reason)
    return row


async def _tell_if_nobody(deps: Deps, row: dict[str, Any], emit: Emit) -> None:
    """No owner or agent of the tenant signed in to the console (a session seen within its idle lifetime): the
    visitor is told so, in the policy's words, and `escalation.unanswered` is recorded."""
    settings = await _escalation(deps, row["tenant_id"])
    if settings is None or not settings.nobody_message:
        return
    since = now() - timedelta(seconds=deps.settings.console_idle_s)
    if await deps.storage.console.agents_online(row["tenant_id"], since):
        return
    emit({"type": "escalation", "status": "unavailable", "text": settings.nobody_message})
    deps.events.emit(_event("escalation.unanswered", row, why="nobody_online"))


async def _escalation(deps: Deps, tenant_id: str) -> EscalationSettings | None:
    compiled = await deps.guard.policy(tenant_id)
    return compiled.policy.escalation if isinstance(compiled, CompiledPolicy) else None


async def tell_waiting(deps: Deps) -> int:
    """Tell each visitor waiting unclaimed longer than their tenant's `escalation.wait_notice_s` that a person will
    come, once per escalation (`escalation` status `waiting`, the event `escalation.unanswered`, the inbox)."""
    told = 0
    for row in await deps.storage.waiting_since(now() - timedelta(seconds=MIN_WAIT_S), limit=500):
        settings = await _escalation(deps, row["tenant_id"])
        wait = settings.wait_notice_s if settings is not None else None
        if wait is not None and row["escalated_at"] > now() - timedelta(seconds=wait):
            continue  # not yet
        marked = await deps.storage.notice_wait(row["tenant_id"], row["id"])
        if marked is None or settings is None or wait is None:
            continue  # another node told them; or this tenant tells nobody (marked, so not looked at again)
        deps.hub.emit(row["id"], {"type": "escalation", "status": "waiting", "text": settings.wait_message})
        deps.events.emit(_event("escalation.unanswered", marked, why="waited", waited_ms=_ms(marked["escalated_at"])))
        _inbox(deps, marked, "waiting")
        told += 1
    return told


async def sweep_waiting_forever(deps: Deps) -> None:
    while True:
        await asyncio.sleep(deps.settings.takeover_sweep_s)
        try:
            await tell_waiting(deps)
        except Exception:
            log.exception("could not look at the visitors waiting for a person")


async def claim(deps: Deps, tenant_id: str, conversation_id: str, agent: Agent) -> dict[str, Any]:
    """An agent takes a waiting conversation (again by the same agent: no change). 409 when another agent has it
    (naming them) or it is not waiting for a person."""
    row = await deps.storage.move_conversation(
        tenant_id, conversation_id, from_status=("escalated",),
        values={"status": "agent", "agent_id": agent.id, "agent_name": agent.name, "claimed_at": now()})
    if row is None:
        current = await _found(deps, tenant_id, conversation_id)
        if current["status"] == "agent" and current["agent_id"] == agent.id:
            return current
        if current["status"] == "agent":
            raise _not_held(current, agent)
        raise Conflict("the conversation is not waiting for a person", code="conversation.not_escalated",
                       details={"status": current["status"]})
    deps.hub.emit(conversation_id, {"type": "escalation", "status": "agent_joined", "agent": agent.shown()})
    deps.events.emit(_event("escalation.claimed", row, agent_id=agent.id, waited_ms=_ms(row["escalated_at"])))
    _inbox(deps, row, "claimed")
    return row


async def transfer(deps: Deps, tenant_id: str, conversation_id: str, agent: Agent, to: Agent) -> dict[str, Any]:
    """The agent holding a conversation gives it to another agent."""
    row = await deps.storage.move_conversation(
        tenant_id, conversation_id, from_status=("agent",), agent_id=agent.id,
        values={"agent_id": to.id, "agent_name": to.name, "claimed_at": now()})
    if row is None:
        raise _not_held(await _found(deps, tenant_id, conversation_id), agent)
    deps.hub.emit(conversation_id, {"type": "escalation", "status": "agent_left", "agent": agent.shown()})
    deps.hub.emit(conversation_id, {"type": "escalation", "status": "agent_joined", "agent": to.shown()})
    deps.events.emit(_event("escalation.claimed", row, agent_id=to.id, from_agent_id=agent.id,
                            waited_ms=_ms(row["escalated_at"])))
    _inbox(deps, row, "claimed")
    return row


async def release(deps: Deps, tenant_id: str, conversation_id: str, agent: Agent) -> dict[str, Any]:
    """The agent lets go: the conversation waits in the queue again."""
    row = await deps.storage.move_conversation(
        tenant_id, conversation_id, from_status=("agent",), agent_id=agent.id,
        values={"status": "escalated", "agent_id": None, "agent_name": None, "claimed_at": None})
    if row is None:
        raise _not_held(await _found(deps, tenant_id, conversation_id), agent)
    deps.hub.emit(conversation_id, {"type": "escalation", "status": "agent_left", "agent": agent.shown()})
    deps.events.emit(_event("escalation.released", row, agent_id=agent.id))
    _inbox(deps, row, "released")
    return row


async def resolve(deps: Deps, tenant_id: str, conversation_id: str, note: str | None,
                  agent: Agent | None = None) -> dict[str, Any]:
    """Back to the bot, whose next reply has the agents' messages in its history. A named agent must hold it."""
    held: dict[str, Any] = {"agent_id": agent.id} if agent is not None else {}
    row = await deps.storage.move_conversation(
        tenant_id, conversation_id, from_status=("agent",) if agent is not None else tuple(TAKEN), **held,
        values={"status": "bot", "agent_id": None, "agent_name": None, "claimed_at": None})
    if row is None:
        current = await _found(deps, tenant_id, conversation_id)
        if agent is not None and current["status"] in TAKEN:
            raise _not_held(current, agent)
        raise Conflict("the conversation is not escalated", code="conversation.not_escalated",
                       details={"status": current["status"]})
    deps.hub.emit(conversation_id, {"type": "escalation", "status": "resolved"})
    deps.events.emit(_event("escalation.resolved", row, note=note, agent_id=agent.id if agent else None,
                            escalated_ms=_ms(row["escalated_at"])))
    _inbox(deps, row, "resolved")
    return row


async def close(deps: Deps, tenant_id: str, conversation_id: str, agent: Agent | None = None) -> dict[str, Any]:
    """End the conversation: the visitor is told, and a message to it afterwards is refused."""
    held: dict[str, Any] = {"agent_id": agent.id} if agent is not None else {}
    row = await deps.storage.move_conversation(
        tenant_id, conversation_id, from_status=("agent",) if agent is not None else ("bot", *TAKEN), **held,
        values={"status": "closed", "agent_id": None, "agent_name": None, "claimed_at": None})
    if row is None:
        current = await _found(deps, tenant_id, conversation_id)
        if agent is not None and current["status"] in TAKEN:
            raise _not_held(current, agent)
        raise Conflict("the conversation is closed already", code="conversation.closed")
    deps.hub.emit(conversation_id, {"type": "escalation", "status": "closed"})
    deps.events.emit(_event("escalation.closed", row, agent_id=agent.id if agent else None,
                            escalated_ms=_ms(row["escalated_at"])))
    _inbox(deps, row, "closed")
    return row


async def say(deps: Deps, tenant_id: str, conversation_id: str, agent: Agent, text: Any,
              internal: bool = False) -> dict[str, Any]:
    """An agent's message: to the visitor's widget (`agent.message`), or an internal note only agents see. The
    agent must hold the conversation; a note may also be added while it waits."""
    row = await _found(deps, tenant_id, conversation_id)
    text = check_message(text, deps.settings.max_message_chars)
    if not (row["status"] == "agent" and row["agent_id"] == agent.id) and not (internal and row["status"] in TAKEN):
        raise _not_held(row, agent)
    message = {"id": new_id("msg"), "tenant_id": tenant_id, "conversation_id": conversation_id, "role": "agent",
               "text": text, "agent": agent.stored(), "internal": internal, "created_at": now(), "client_id": None,
               "finish_reason": None, "guardrail": None, "usage": None, "timing": None}
    await deps.storage.add_message(message)
    if internal:
        deps.hub.emit(agents_line(conversation_id), {"type": "note", "message_id": message["id"],
                                                     "agent": agent.shown(), "text": text})
    else:  # (the widget clears the agent's typing indicator on it)
        deps.hub.emit(conversation_id, {"type": "agent.message", "message_id": message["id"],
                                        "agent": agent.shown(), "text": text})
    deps.events.emit(_event("agent.message", row, agent_id=agent.id, message_id=message["id"], chars=len(text),
                            internal=internal))
    return message


def agent_typing(deps: Deps, conversation_id: str, active: bool) -> None:
    deps.hub.emit(conversation_id, {"type": "typing", "who": "agent", "active": active})


def visitor_typing(deps: Deps, conversation_id: str, active: bool) -> None:
    deps.hub.emit(agents_line(conversation_id), {"type": "typing", "who": "visitor", "active": active})


async def visitor_presence(deps: Deps, tenant_id: str, conversation_id: str, online: bool) -> None:
    """The visitor's widget connected to (or left) a conversation a person has or is fetching: stored, so that any
    node's inbox shows it, and told to the agents watching it. Nothing is written for a conversation the bot has."""
    row = await deps.storage.move_conversation(tenant_id, conversation_id, from_status=tuple(sorted(TAKEN)),
                                               values={"visitor_online": online, "visitor_seen_at": now()},
                                               touch=False)
    if row is None:
        return
    frame = {"type": "presence", "online": online, "at": row["visitor_seen_at"].isoformat()}
    deps.hub.emit(agents_line(conversation_id), frame)
    _inbox(deps, row, "presence", online=online)


def visitor_wrote(deps: Deps, row: dict[str, Any], message_id: str) -> None:
    """A visitor's message while a person has (or is fetching) the conversation: the inbox shows it."""
    _inbox(deps, row, "message", message_id=message_id)
