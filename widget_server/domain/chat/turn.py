"""A turn: input check → provider stream → output check → store → events.

Every channel (WebSocket, REST, SSE) runs the same turn and only differs in where its frames go: `emit`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncGenerator, Callable
from dataclasses import dataclass, field
from typing import Any

from widget_server.backends.providers import Finish, Provider, ProviderRequest, Providers, Turn
from widget_server.backends.ratelimit import RateLimiter
from widget_server.backends.storage import Storage
from widget_server.backends.storage.engine import now
from widget_server.domain.channels import Channel, Hub, Recent
from widget_server.domain.coalesce import Coalescer
from widget_server.domain.events import Event, EventSink
from widget_server.domain.guard import Decision, Guard, GuardContext
from widget_server.errors import InvalidRequest, ProviderError, ProviderTimeout, WidgetError
from widget_server.ids import new_id
from widget_server.settings import Settings

log = logging.getLogger(__name__)
Emit = Callable[[dict[str, Any]], Any]


@dataclass
class Deps:
    """What a turn needs; built once by the app's lifespan."""

    settings: Settings
    storage: Storage
    providers: Providers
    guard: Guard
    events: EventSink
    hub: Hub
    limiter: RateLimiter


@dataclass(frozen=True)
class Conversation:
    id: str
    tenant_id: str
    persona: dict[str, Any]  # the stored persona row
    visitor_id: str
    channel: str

    @property
    def guard_context(self) -> GuardContext:
        return GuardContext(self.tenant_id, self.persona["id"], self.id, self.channel)

    def event(self, type_: str, **attributes: Any) -> Event:
        return Event(type_, self.tenant_id, self.persona["id"], self.id, self.visitor_id, self.channel, attributes)


@dataclass
class Reply:
    message_id: str
    text: str = ""
    finish_reason: str = "stop"
    guardrail: dict[str, Any] | None = None
    usage: dict[str, int] = field(default_factory=lambda: {"input_tokens": 0, "output_tokens": 0})
    timing: dict[str, int | None] = field(default_factory=lambda: {"ttft_ms": None, "total_ms": 0})
    model: str | None = None
    provider: str | None = None
    error: dict[str, Any] | None = None


async def start_conversation(
    deps: Deps, tenant_id: str, persona: dict[str, Any], visitor_id: str, channel: str, origin: str | None = None
) -> Conversation:
    conv = Conversation(new_id("conv"), tenant_id, persona, visitor_id, channel)
    stamp = now()
    await deps.storage.create_conversation({
        "id": conv.id, "tenant_id": tenant_id, "persona_id": persona["id"], "visitor_id": visitor_id,
        "channel": channel, "status": "bot", "origin": origin, "created_at": stamp, "updated_at": stamp,
    })
    deps.events.emit(conv.event("conversation.started", origin=origin))
    return conv


@dataclass
class Accepted:
    """A visitor's message past the input check. Its write runs beside the provider call, off the path to the
    first token; the reply is stored only after it (`finish` awaits `stored`)."""

    message_id: str
    text: str  # as shown and stored (masked where the guard masked it)
    decision: Decision
    arrived: float
    stored: asyncio.Task[None]


async def accept(deps: Deps, conv: Conversation, text: Any, client_id: Any, emit: Emit) -> Accepted:
    """Check the visitor's message, start storing it, and tell the client it was accepted."""
    arrived = time.monotonic()
    if not isinstance(text, str) or not text.strip():
        raise InvalidRequest("message text must be a non-empty string", code="message.invalid")
    if len(text) > deps.settings.max_message_chars:
        raise InvalidRequest(f"message is longer than {deps.settings.max_message_chars} characters",
                             code="message.too_long")
    decision = await deps.guard.check_input(conv.guard_context, text)
    shown = decision.text if decision.action == "mask" else decision.shown or text
    message_id = new_id("msg")
    client_id = client_id if isinstance(client_id, str) else None
    stored = asyncio.create_task(deps.storage.add_message({
        "id": message_id, "tenant_id": conv.tenant_id, "conversation_id": conv.id, "role": "visitor",
        "text": shown, "client_id": client_id, "created_at": now(),
        "guardrail": _annotation(decision, "input") if decision.action != "allow" else None,
    }))
    emit({"type": "message.accepted", "client_id": client_id, "message_id": message_id, "text": shown})
    deps.events.emit(conv.event("message.received", message_id=message_id, chars=len(text)))
    return Accepted(message_id, shown, decision, arrived, stored)


def _annotation(decision: Decision, source: str) -> dict[str, Any]:
    return {"action": decision.action, "reason": decision.reason, "source": source}


def _context(role: str, text: str, finish_reason: str | None) -> bool:
    """Whether a message goes to the model as context: not system notes, refusals or empty failed replies."""
    return role != "system" and finish_reason != "guardrail" and bool(text)


async def history(deps: Deps, conv: Conversation, before_message_id: str, recent: Recent | None) -> tuple[Turn, ...]:
    """The turns before this one: from the channel's memory when it has them, else from storage."""
    if recent is not None and recent.loaded:
        return tuple(recent.turns)
    n = deps.settings.history_turns
    rows = await deps.storage.list_messages(conv.tenant_id, conv.id, limit=n + 1)
    turns = [Turn(r["role"], r["text"]) for r in rows
             if r["id"] != before_message_id and _context(r["role"], r["text"], r.get("finish_reason"))]
    turns = turns[-n:] if n else []
    if recent is not None:
        recent.load(turns)
    return tuple(turns)


def provider_request(
    deps: Deps, conv: Conversation, text: str, turns: tuple[Turn, ...]
) -> tuple[Provider, ProviderRequest]:
    doc = conv.persona["doc"]
    conf = doc.get("provider") or {}
    base_url = conf.get("base_url") if deps.settings.allow_persona_base_url else None
    request = ProviderRequest(
        persona_name=doc["name"], system_prompt=doc.get("system_prompt", ""), history=turns, message=text,
        model=conf.get("model"), temperature=conf.get("temperature", 0.7),
        max_tokens=min(conf.get("max_tokens") or deps.settings.max_tokens, deps.settings.max_tokens),
        base_url=base_url,
    )
    return deps.providers.get(conf.get("kind")), request


async def run_turn(
    deps: Deps, conv: Conversation, text: Any, client_id: Any, emit: Emit,
    on_start: Callable[[str], None] | None = None, recent: Recent | None = None,
) -> Reply:
    """The whole turn for one visitor message. Cancelling it ends the reply as `cancelled`, stored."""
    acc = await accept(deps, conv, text, client_id, emit)
    decision = acc.decision
    reply = Reply(new_id("msg"))
    if on_start is not None:
        on_start(reply.message_id)
    emit({"type": "reply.start", "message_id": reply.message_id})
    if decision.action != "allow":
        deps.events.emit(conv.event("guardrail.triggered", rule=decision.reason, action=decision.action,
                                    source="input", message_id=acc.message_id))
    if decision.stops:
        _refuse(reply, decision, "input", emit)
        await escalate_if_asked(deps, conv, decision, emit)
    else:
        turns = await history(deps, conv, acc.message_id, recent)
        provider, request = provider_request(deps, conv, acc.text, turns)
        await stream_reply(deps, conv, provider, request, reply, emit, acc.arrived)
    await finish(deps, conv, reply, emit, acc)
    if recent is not None:
        recent.add(Turn("visitor", acc.text))
        if _context("persona", reply.text, reply.finish_reason):
            recent.add(Turn("persona", reply.text))
    return reply


def _refuse(reply: Reply, decision: Decision, source: str, emit: Emit) -> None:
    reply.finish_reason = "guardrail"
    reply.guardrail = _annotation(decision, source)
    reply.text = decision.text
    emit({"type": "guardrail", "message_id": reply.message_id, "action": decision.action,
          "reason": decision.reason, "text": decision.text})


async def escalate_if_asked(deps: Deps, conv: Conversation, decision: Decision, emit: Emit) -> None:
    """Hand the conversation to a person: its status says so, the visitor is told, support gets the event."""
    if decision.action != "escalate":
        return
    await deps.storage.set_conversation_status(conv.tenant_id, conv.id, "escalated")
    emit({"type": "escalation", "status": "requested"})
    deps.events.emit(conv.event("escalation.triggered", reason=decision.reason))


async def _next(items: AsyncGenerator[str | Finish, None], timeout_s: float) -> str | Finish:
    async with asyncio.timeout(timeout_s):
        return await anext(items)


async def stream_reply(
    deps: Deps, conv: Conversation, provider: Provider, request: ProviderRequest, reply: Reply, emit: Emit,
    arrived: float,
) -> None:
    s = deps.settings
    deltas = Coalescer(lambda t: emit({"type": "reply.delta", "message_id": reply.message_id, "text": t}),
                       s.coalesce_ms / 1000)
    out = deps.guard.output_filter(conv.guard_context)
    parts: list[str] = []
    items = provider.stream(request)
    try:
        while True:
            timeout = s.provider_stall_s if reply.timing["ttft_ms"] is not None else s.provider_timeout_s
            item = await _next(items, timeout)
            if isinstance(item, Finish):
                reply.finish_reason, reply.model = item.reason, item.model
                reply.usage = {"input_tokens": item.usage.input_tokens, "output_tokens": item.usage.output_tokens}
                parts.append(tail := out.flush())
                deltas.add(tail)
                decision = out.stopped  # a filter may stop at the very end
                if decision is None or not decision.stops:
                    break
            else:
                if reply.timing["ttft_ms"] is None:
                    reply.timing["ttft_ms"] = round((time.monotonic() - arrived) * 1000)
                released, decision = out.feed(item)
                parts.append(released)
                deltas.add(released)
            if decision is not None and decision.stops:
                deltas.flush()
                _refuse(reply, decision, "output", emit)
                await escalate_if_asked(deps, conv, decision, emit)
                deps.events.emit(conv.event("guardrail.triggered", rule=decision.reason, action=decision.action,
                                            source="output", message_id=reply.message_id))
                return
    except (TimeoutError, ProviderError) as exc:
        reply.finish_reason = "error"
        err = exc if isinstance(exc, ProviderError) else ProviderTimeout("the model did not answer in time")
        reply.error = {"code": err.code, "message": err.message, "retryable": True}
        deltas.flush()
        emit({"type": "error", **reply.error, "message_id": reply.message_id})
    except asyncio.CancelledError:
        reply.finish_reason = "cancelled"
        if (task := asyncio.current_task()) is not None:
            task.uncancel()  # the turn goes on to close and store the reply
    finally:
        await items.aclose()  # stops the provider's generation
        deltas.flush()
        if reply.finish_reason != "guardrail":
            reply.text = "".join(parts)
        reply.model = reply.model or request.model or provider.kind
        reply.provider = provider.kind
        _masked_output(deps, conv, reply, out.masked)


def _masked_output(deps: Deps, conv: Conversation, reply: Reply, reasons: list[str]) -> None:
    """What the output filter masked without stopping: on the stored reply, and one event per rule."""
    if reasons and reply.guardrail is None:
        reply.guardrail = {"action": "mask", "reason": reasons[0], "source": "output"}
    for reason in dict.fromkeys(reasons):
        deps.events.emit(conv.event("guardrail.triggered", rule=reason, action="mask", source="output",
                                    message_id=reply.message_id))


async def finish(deps: Deps, conv: Conversation, reply: Reply, emit: Emit, acc: Accepted) -> None:
    """Store the reply after the visitor's message, then close it for the client (so `reply.end` means
    stored), then record it. Runs even when the turn was cancelled."""
    reply.timing["total_ms"] = round((time.monotonic() - acc.arrived) * 1000)
    try:
        await asyncio.shield(acc.stored)
        await asyncio.shield(deps.storage.add_message({
            "id": reply.message_id, "tenant_id": conv.tenant_id, "conversation_id": conv.id, "role": "persona",
            "text": reply.text, "finish_reason": reply.finish_reason, "guardrail": reply.guardrail,
            "usage": reply.usage, "timing": reply.timing, "created_at": now(),
        }))
    finally:
        emit({"type": "reply.end", "message_id": reply.message_id, "finish_reason": reply.finish_reason,
              "usage": reply.usage, "timing": reply.timing})
    deps.events.emit(conv.event(
        "reply.completed", message_id=reply.message_id, finish_reason=reply.finish_reason,
        ttft_ms=reply.timing["ttft_ms"], total_ms=reply.timing["total_ms"],
        **{"gen_ai.request.model": reply.model, "gen_ai.provider.name": reply.provider,
           "gen_ai.response.finish_reasons": [reply.finish_reason],
           "gen_ai.usage.input_tokens": reply.usage["input_tokens"],
           "gen_ai.usage.output_tokens": reply.usage["output_tokens"],
           "gen_ai.response.time_to_first_chunk": (reply.timing["ttft_ms"] or 0) / 1000},
    ))
    if reply.error:
        deps.events.emit(conv.event("error", message_id=reply.message_id, code=reply.error["code"]))


def spawn_turn(
    deps: Deps, conv: Conversation, channel: Channel, text: Any, client_id: Any
) -> asyncio.Task[None] | None:
    """Run a turn in the background of a conversation's channel: it outlives a dropped socket (resume),
    replies run one after another, and `cancel` finds it by the reply's message id once it started.
    A `client_id` seen before in this conversation is a resend: it was accepted already, and is ignored."""
    if isinstance(client_id, str) and client_id and not channel.first_time(client_id):
        return None
    key = new_id("turn")

    def started(reply_id: str) -> None:
        nonlocal key
        channel.replies[reply_id] = channel.replies.pop(key)
        key = reply_id

    async def turn() -> None:
        try:
            async with channel.turn_lock:
                channel.recent = channel.recent or Recent(deps.settings.history_turns)
                await run_turn(deps, conv, text, client_id, channel.emit, started, channel.recent)
        except WidgetError as exc:
            channel.emit({"type": "error", "code": exc.code, "message": exc.message, "retryable": exc.retryable,
                          "client_id": client_id if isinstance(client_id, str) else None})
        except asyncio.CancelledError:
            pass
        except Exception:
            log.exception("turn failed", extra={"conversation_id": conv.id})
            channel.emit({"type": "error", "code": "internal", "message": "server error", "retryable": True})
        finally:
            channel.replies.pop(key, None)

    task = asyncio.create_task(turn())
    channel.replies[key] = task
    return task


async def resolve_escalation(deps: Deps, conversation: dict[str, Any], note: str | None) -> None:
    """Support hands an escalated conversation back to the bot: the status, the visitor's widget, the event."""
    tenant_id, conv_id = conversation["tenant_id"], conversation["id"]
    await deps.storage.set_conversation_status(tenant_id, conv_id, "bot")
    if (channel := deps.hub.get(conv_id)) is not None:
        channel.emit({"type": "escalation", "status": "resolved"})
    waited = round((now() - conversation["updated_at"]).total_seconds() * 1000)
    deps.events.emit(Event("escalation.resolved", tenant_id, conversation["persona_id"], conv_id,
                           conversation["visitor_id"], conversation["channel"],
                           {"note": note, "escalated_ms": waited}))
