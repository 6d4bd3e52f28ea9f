"""One turn of a test case through the turn visitors get (`domain/chat/turn.run_turn`), observed; and a scripted
case's run, turn by turn, with its assertions and its judged assertions.

What a turn did is observed from its frames and its `Reply` (decisions, masks, text, finish reason, timing, usage,
whether the model was called) and from the events it recorded (`Tap`), then checked by `assertions`.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from dataclasses import dataclass
from typing import Any

import numpy as np

from widget_server.backends.providers import Providers
from widget_server.domain.chat import conversations
from widget_server.domain.chat.deps import Deps
from widget_server.domain.chat.turn import Reply, new_memory, run_turn
from widget_server.domain.events import Event, EventSink
from widget_server.domain.guardrails.embeddings import embed
from widget_server.domain.testing.assertions import Failure, Observation, check
from widget_server.domain.testing.cassette import Tape
from widget_server.domain.testing.judge import Judges
from widget_server.domain.testing.results import Attempt
from widget_server.domain.testing.suite import Case, Judge, Suite
from widget_server.errors import WidgetError

log = logging.getLogger(__name__)
CHANNEL = "test"


class Tap:
    """The tenant's event sink, with the event types each test conversation recorded kept aside."""

    def __init__(self, inner: EventSink) -> None:
        self.inner = inner
        self.seen: dict[str, list[str]] = {}

    def emit(self, event: Event) -> None:
        self.inner.emit(event)
        if event.conversation_id is not None and event.channel == CHANNEL:
            self.seen.setdefault(event.conversation_id, []).append(event.type)

    def take(self, conversation_id: str) -> list[str]:
        return self.seen.pop(conversation_id, [])

    async def aclose(self) -> None:
        return None  # the inner sink is its owner's


@dataclass
class Run:
    """What every case of one suite's run shares."""

    deps: Deps  # the run's: the drafted guard, the tap, the cassette's providers
    providers: Providers  # the server's own (the visitor model and the judge are not the persona's, nor taped)
    tap: Tap
    tape: Tape
    judges: Judges
    suite: Suite
    tenant_id: str
    persona: dict[str, Any]
    canary: str | None


def similarity(a: str, b: str) -> float:
    vectors = embed([a, b])
    return round(float(np.dot(vectors[0], vectors[1])), 4)


def observe(visitor: str, reply: Reply, frames: list[dict[str, Any]], events: list[str], tape: Tape,
            canary: str | None) -> Observation:
    accepted = next((f for f in frames if f["type"] == "message.accepted"), {})
    timing: dict[str, int | None] = dict(reply.timing)
    if tape.replaying:  # the latency recorded with the cassette: a replayed result is the same every time
        recorded = tape.stored() or {}
        timing = {"ttft_ms": None, "total_ms": 0, **(recorded.get("timing") or {})}
    return Observation(
        visitor=visitor, shown=str(accepted.get("text", visitor)), text=reply.text,
        finish_reason=reply.finish_reason, usage=dict(reply.usage), timing=timing, events=events,
        decisions=[{k: g.get(k) for k in ("action", "reason", "source")} for g in reply.guardrails],
        provider_called=reply.provider_called, canary=canary, error=reply.error,
        escalated=any(f["type"] == "escalation" and f.get("status") == "requested" for f in frames))


async def one_turn(run: Run, conv: conversations.Conversation, memory: Any, visitor: str,
                   similar_to: tuple[str, ...] = ()) -> Observation:
    frames: list[dict[str, Any]] = []
    reply = await run_turn(run.deps, conv, visitor, None, frames.append, memory=memory)
    obs = observe(visitor, reply, frames, run.tap.take(conv.id), run.tape, run.canary)
    run.tape.keep(reply.timing)
    for text in dict.fromkeys(similar_to):  # each text once
        obs.similarities[text] = await asyncio.to_thread(similarity, text, reply.text)
    return obs


def transcript(turns: list[Observation], persona_name: str) -> str:
    """The conversation as the judge reads it: the visitor's messages as shown, the persona's replies."""
    lines = []
    for obs in turns:
        lines.append(f"Visitor: {obs.shown}")
        lines.append(f"{persona_name}{' (escalated to a person)' if obs.escalated else ''}: {obs.text}")
    return "\n".join(lines)


async def judged(run: Run, attempt: Attempt, judge: Judge, turn: int) -> None:
    """Judge the conversation so far (`turn`: the assertion's, 0 for the whole conversation) into the attempt."""
    name = str(run.persona["doc"].get("name") or "Persona")
    done = await run.judges.assess(judge, transcript(attempt.turns, name), turn)
    attempt.judged.append(done)
    where = f"turn {turn}" if turn else "the conversation"
    if done["status"] == "failed":
        rate = f"pass^{done['k']}: {done['passed']}/{done['k']} passed" if done["verdicts"] else "not judged"
        attempt.failures.append(Failure("judge", judge.rubric, [v.get("reason") for v in done["verdicts"]] or
                                        done["reason"], turn=turn,
                                        message=f"the judge failed it ({rate}): {done['reason']}"))
    elif done["status"] == "error" and attempt.error is None:
        attempt.error = f"{where}: judge: {done['reason']}"


async def scripted(run: Run, case: Case, repeat: int) -> Attempt:
    """One run of a case of written turns."""
    attempt = Attempt()
    conv = await conversations.start(run.deps, run.tenant_id, run.persona, conversations.visitor_id(None), CHANNEL)
    run.tap.take(conv.id)
    memory = new_memory(run.deps, conv)
    for i, turn in enumerate(case.turns or []):
        run.tape.begin(case.name, repeat, i)
        similar = (turn.expect.similar_to.text,) if turn.expect.similar_to is not None else ()
        try:
            obs = await one_turn(run, conv, memory, turn.visitor, similar)
        except WidgetError as exc:
            attempt.error = f"turn {i + 1}: {exc.message}"
            return attempt
        except Exception as exc:  # one case's failure is that case's error; the suite goes on
            log.exception("test case failed", extra={"case": case.name})
            attempt.error = f"turn {i + 1}: {type(exc).__name__}"
            return attempt
        attempt.turns.append(obs)
        if run.tape.missed:
            attempt.error = f"turn {i + 1}: {(obs.error or {}).get('message', 'not in the cassette')}"
            return attempt
        attempt.failures += [dataclasses.replace(f, turn=i + 1) for f in check(turn.expect, obs)]
        if turn.expect.judge is not None:
            await judged(run, attempt, turn.expect.judge, i + 1)
    return attempt
