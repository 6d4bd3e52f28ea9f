"""A turn: input check → provider stream → output check → store → events.

Every channel (WebSocket, REST, SSE) runs the same turn and only differs in where its frames go: `emit`.
Whatever way a reply ends (stopped, refused, failed, cut short by the client), it is stored, its `reply.end`
frame is sent and exactly one `reply.completed` event is recorded.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncGenerator, Callable
from dataclasses import dataclass, field
from typing import Any

from widget_server.backends.providers import Finish, Provider, ProviderRequest, Turn
from widget_server.clock import now
from widget_server.domain.chat import upstream
from widget_server.domain.chat.channels import INTERRUPTED
from widget_server.domain.chat.coalesce import Coalescer
from widget_server.domain.chat.conversations import TAKEN, Conversation, check_message, check_writable, storable
from widget_server.domain.chat.deps import Deps
from widget_server.domain.chat.frames import Emit
from widget_server.domain.chat.memory import Memory
from widget_server.domain.chat.takeover import escalate_if_asked, visitor_wrote
from widget_server.domain.guardrails.check import CheckContext
from widget_server.domain.guardrails.decision import Decision
from widget_server.domain.guardrails.tenant_guard import counted
from widget_server.errors import ProviderError, ProviderTimeout
from widget_server.ids import new_id

log = logging.getLogger(__name__)


@dataclass
class Reply:
    message_id: str
    text: str = ""
    finish_reason: str = "stop"
    guardrail: dict[str, Any] | None = None  # the annotation stored on the reply
    guardrails: list[dict[str, Any]] = field(default_factory=list)  # every decision of the turn, input first
    usage: dict[str, int] = field(default_factory=lambda: {"input_tokens": 0, "output_tokens": 0})
    timing: dict[str, int | None] = field(default_factory=lambda: {"ttft_ms": None, "total_ms": 0})
    model: str | None = None
    provider: str | None = None
    error: dict[str, Any] | None = None
    # For the console's decision trace (no channel sends these): the input's decision as made, with how the
    # topics read it, and whether the model was called at all.
    input: Decision | None = None
    provider_called: bool = False
    escalation: Decision | None = None  # a decision that stopped the turn, to escalate if it says so


@dataclass
class Accepted:
    """A visitor's message past the input check. Its write runs beside the provider call, off the path to the
    first token; the reply is stored only after it (`finish` awaits `stored`)."""

    message_id: str
    text: str  # as shown and stored (masked where the guard masked it)
    decision: Decision
    arrived: float
    stored: asyncio.Task[None]


def new_memory(deps: Deps, conv: Conversation) -> Memory:
    return Memory(deps.settings.history_turns, conv.guard)


def guard_columns(state: CheckContext) -> dict[str, Any]:
    return {"guard_refusals": state.refusals, "guard_previous": state.previous}


async def accept(deps: Deps, conv: Conversation, text: Any, client_id: Any, emit: Emit, memory: Memory,
                 message_id: str | None = None) -> Accepted:
    """Check the visitor's message, start storing it, and tell the client it was accepted."""
    arrived = time.monotonic()
    text = check_message(text, deps.settings.max_message_chars)
    decision, memory.guard = await deps.guard.check_input(conv.guard_context, text, memory.guard)
    shown = decision.text if decision.action == "mask" else decision.shown or text
    message_id = message_id or new_id("msg")
    client_id = client_id if isinstance(client_id, str) else None
    stored = asyncio.create_task(deps.storage.add_message({
        "id": message_id, "tenant_id": conv.tenant_id, "conversation_id": conv.id, "role": "visitor",
        "text": shown, "client_id": client_id, "created_at": now(),
        "guardrail": decision.annotation("input", spans=False) if decision.action != "allow" else None,
    }, guard_columns(memory.guard)))
    emit({"type": "message.accepted", "client_id": client_id, "message_id": message_id, "text": shown})
    deps.events.emit(conv.event("message.received", message_id=message_id, chars=len(text)))
    return Accepted(message_id, shown, decision, arrived, stored)


def _context(role: str, text: str, finish_reason: str | None) -> bool:
    """Whether a message goes to the model as context: not system notes, refusals or empty failed replies."""
    return role != "system" and finish_reason != "guardrail" and bool(text)


async def history(deps: Deps, conv: Conversation, before_message_id: str, memory: Memory) -> tuple[Turn, ...]:
    """The turns before this one: from memory when it has them, else from storage."""
    if memory.loaded:
        return tuple(memory.turns)
    if conv.fresh:  # nothing was said in it before this turn
        memory.load([])
        return ()
    n = deps.settings.history_turns
    rows = await deps.storage.list_messages(conv.tenant_id, conv.id, limit=n + 1)
    turns = [Turn(r["role"], _as_context(r)) for r in rows
             if r["id"] != before_message_id and not r.get("internal")
             and _context(r["role"], r["text"], r.get("finish_reason"))]
    turns = turns[-n:] if n else []
    memory.load(turns)
    return tuple(turns)


def _as_context(row: dict[str, Any]) -> str:
    """A message as the model reads it: an agent's says who wrote it, so the persona knows a person helped."""
    if row["role"] == "agent":
        return f"[{(row.get('agent') or {}).get('name') or 'A person'} of the support team wrote:] {row['text']}"
    return str(row["text"])


async def _status(deps: Deps, conv: Conversation, memory: Memory, live: bool) -> dict[str, Any] | None:
    """The conversation as stored now (a person may have taken it since it was opened). A memory loaded before
    the last takeover misses what the agents wrote: it is read again."""
    row = await deps.storage.get_conversation(conv.tenant_id, conv.id)
    if row is None:
        return None
    check_writable(row["status"], "widget" if live else "api")
    if row.get("escalated_at") != memory.escalated_at:
        memory.loaded, memory.escalated_at = False, row.get("escalated_at")
    return row


async def _to_agents(deps: Deps, conv: Conversation, row: dict[str, Any], text: Any, client_id: Any, emit: Emit,
                     memory: Memory, message_id: str) -> Reply:
    """A visitor's message while a person has (or is fetching) the conversation: stored as shown (masked where the
    policy masks), heard by the agents on the conversation's line; the persona says nothing."""
    acc = await accept(deps, conv, text, client_id, emit, memory, message_id)
    for each in acc.decision.every():
        if each.action == "mask":
            deps.events.emit(conv.guardrail_event(each, "input", acc.message_id))
    await acc.stored
    memory.loaded = False  # the next bot turn reads what was said meanwhile
    visitor_wrote(deps, row, acc.message_id)
    return Reply(acc.message_id, finish_reason="agent")


async def run_turn(
    deps: Deps, conv: Conversation, text: Any, client_id: Any, emit: Emit,
    on_start: Callable[[str], None] | None = None, memory: Memory | None = None, ids: tuple[str, str] | None = None,
    live: bool = False,
) -> Reply:
    """The whole turn for one visitor message. Cancelling it ends the reply as `cancelled` (or `interrupted`, when
    the cancel says so: the conversation bus lost it), stored. `live`: the visitor's widget socket, where a message
    to a conversation a person has goes to them (elsewhere it is refused: the caller could not hear them)."""
    memory = memory or new_memory(deps, conv)
    visitor_id, reply_id = ids or (new_id("msg"), new_id("msg"))  # in this order: messages are listed by id
    row = None if conv.fresh else await _status(deps, conv, memory, live)
    if row is not None and row["status"] in TAKEN:
        return await _to_agents(deps, conv, row, text, client_id, emit, memory, visitor_id)
    acc = await accept(deps, conv, text, client_id, emit, memory, visitor_id)
    decision = acc.decision
    reply = Reply(reply_id, input=decision)
    if on_start is not None:
        on_start(reply.message_id)
    emit({"type": "reply.start", "message_id": reply.message_id})
    try:
        for each in decision.every():  # the stop, and every mask of the message (with its spans)
            reply.guardrails.append(each.annotation("input"))
            deps.events.emit(conv.guardrail_event(each, "input", acc.message_id))
        if decision.stops:
            _refuse(reply, decision, "input", emit)
            reply.escalation = decision
        else:
            turns = await history(deps, conv, acc.message_id, memory)
            provider, request = upstream.provider_request(deps, conv, acc.text, turns)
            await stream_reply(deps, conv, provider, request, reply, emit, acc.arrived, memory)
        if reply.escalation is not None:
            await acc.stored  # so that the inbox, told at once, shows the message that asked for a person
            await escalate_if_asked(deps, conv, reply.escalation, emit)
    except asyncio.CancelledError as exc:
        reply.finish_reason = _cut_short(exc)  # cut short before or after streaming: still stored and recorded
        if (task := asyncio.current_task()) is not None:
            task.uncancel()
    await finish(deps, conv, reply, emit, acc, memory)
    memory.add(Turn("visitor", acc.text))
    if _context("persona", reply.text, reply.finish_reason):
        memory.add(Turn("persona", reply.text))
    return reply


def _cut_short(exc: asyncio.CancelledError) -> str:
    return INTERRUPTED if exc.args == (INTERRUPTED,) else "cancelled"


def _refuse(reply: Reply, decision: Decision, source: str, emit: Emit) -> None:
    reply.finish_reason = "guardrail"
    reply.guardrail = decision.annotation(source)
    reply.text = decision.text
    emit({"type": "guardrail", "message_id": reply.message_id, "action": decision.action,
          "reason": decision.reason, "text": decision.text})


async def _next(items: AsyncGenerator[str | Finish, None], timeout_s: float) -> str | Finish:
    async with asyncio.timeout(timeout_s):
        return await anext(items)


async def stream_reply(
    deps: Deps, conv: Conversation, provider: Provider, request: ProviderRequest, reply: Reply, emit: Emit,
    arrived: float, memory: Memory,
) -> None:
    s = deps.settings
    deltas = Coalescer(lambda t: emit({"type": "reply.delta", "message_id": reply.message_id, "text": t}),
                       s.coalesce_ms / 1000)
    out = deps.guard.output_filter(conv.guard_context)
    parts: list[str] = []
    try:
        await upstream.check(s, request)
    except ProviderError as exc:
        reply.finish_reason, reply.model, reply.provider = "error", request.model or provider.kind, provider.kind
        reply.error = {"code": exc.code, "message": exc.message, "retryable": exc.retryable}
        emit(exc.frame(message_id=reply.message_id))
        return
    items = provider.stream(request)
    reply.provider_called = True
    try:
        while True:
            timeout = s.provider_stall_s if reply.timing["ttft_ms"] is not None else s.provider_timeout_s
            item = await _next(items, timeout)
            if isinstance(item, Finish):
                reply.finish_reason, reply.model = item.reason, storable(item.model) if item.model else None
                reply.usage = {"input_tokens": item.usage.input_tokens, "output_tokens": item.usage.output_tokens}
                parts.append(tail := out.flush())
                deltas.add(tail)
                decision = out.stopped  # a filter may stop at the very end
                if decision is None or not decision.stops:
                    break
            else:
                if reply.timing["ttft_ms"] is None:
                    reply.timing["ttft_ms"] = round((time.monotonic() - arrived) * 1000)
                released, decision = out.feed(storable(item))  # a provider may send NUL: shown as stored
                parts.append(released)
                deltas.add(released)
            if decision is not None and decision.stops:
                deltas.flush()
                _refuse(reply, decision, "output", emit)
                reply.guardrails.append(decision.annotation("output"))
                memory.guard = counted(memory.guard, decision)
                reply.escalation = decision  # (the turn escalates once the visitor's message is stored)
                deps.events.emit(conv.guardrail_event(decision, "output", reply.message_id))
                return
    except (TimeoutError, ProviderError) as exc:
        reply.finish_reason = "error"
        err = exc if isinstance(exc, ProviderError) else ProviderTimeout("the model did not answer in time")
        reply.error = {"code": err.code, "message": err.message, "retryable": True}
        deltas.flush()
        emit(err.frame(retryable=True, message_id=reply.message_id))
    except asyncio.CancelledError as exc:
        reply.finish_reason = _cut_short(exc)
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
    for reason in dict.fromkeys(reasons):
        masked = Decision("mask", reason)
        reply.guardrails.append(masked.annotation("output"))
        if reply.guardrail is None:
            reply.guardrail = masked.annotation("output")
        deps.events.emit(conv.guardrail_event(masked, "output", reply.message_id))


async def _store(deps: Deps, conv: Conversation, reply: Reply, acc: Accepted, memory: Memory) -> None:
    await acc.stored
    await deps.storage.add_message({
        "id": reply.message_id, "tenant_id": conv.tenant_id, "conversation_id": conv.id, "role": "persona",
        "text": reply.text, "finish_reason": reply.finish_reason, "guardrail": reply.guardrail,
        "usage": reply.usage, "timing": reply.timing, "created_at": now(),
    }, guard_columns(memory.guard))


async def _despite_cancel(write: asyncio.Future[None]) -> None:
    """Wait for `write` however often the waiting task is cancelled meanwhile."""
    while True:
        try:
            return await asyncio.shield(write)
        except asyncio.CancelledError:
            if (task := asyncio.current_task()) is None:
                raise
            task.uncancel()  # the turn goes on: it was cut short already, and is being closed


async def finish(deps: Deps, conv: Conversation, reply: Reply, emit: Emit, acc: Accepted, memory: Memory) -> None:
    """Store the reply after the visitor's message, then close it for the client (so `reply.end` means
    stored), then record it. Runs to the end however often the turn is cancelled meanwhile (a second `cancel`
    frame, the client leaving): the writes go on, and `reply.end` and `reply.completed` are always emitted."""
    reply.timing["total_ms"] = round((time.monotonic() - acc.arrived) * 1000)
    try:
        await _despite_cancel(asyncio.ensure_future(_store(deps, conv, reply, acc, memory)))
    finally:
        emit({"type": "reply.end", "message_id": reply.message_id, "finish_reason": reply.finish_reason,
              "usage": reply.usage, "timing": reply.timing, "guardrails": reply.guardrails})
        record(deps, conv, reply)


def record(deps: Deps, conv: Conversation, reply: Reply) -> None:
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
