"""One turn's observation checked against its `expect`: a list of failures, each saying which assertion, what it
expected and what the turn actually did, precisely enough to fix the persona or the policy from the report alone
(for `contains`, the strings that were missing; for `guardrail`, every decision the turn had).

Text assertions (`contains`, `not_contains`) ignore case; `regex` and `not_regex` are RE2 searches, as the
policy's patterns are. Pure: the runner observes, embeds for `similar_to`, and hands everything in.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from widget_server.domain.guardrails.policy import compile_re2
from widget_server.domain.testing.suite import Expect, GuardrailExpect

REFUSALS = ("refuse", "block")
_NOT_ALNUM = re.compile(r"[\W_]+")


@dataclass
class Observation:
    """What one turn did, as the visitor's channel saw it."""

    visitor: str  # the message as sent
    shown: str  # the message as stored and shown (masked where the policy masks)
    text: str  # the reply as the visitor got it (a refusal, masked text…)
    finish_reason: str
    decisions: list[dict[str, Any]]  # every guardrail decision of the turn: action, reason, source
    usage: dict[str, int]
    timing: dict[str, int | None]
    events: list[str]  # the event types the turn recorded, in order
    provider_called: bool
    escalated: bool
    canary: str | None = None
    similarities: dict[str, float] = field(default_factory=dict)  # the reply's to each `similar_to.text` asked
    error: dict[str, Any] | None = None

    @property
    def refused(self) -> bool:
        return any(d["action"] in REFUSALS for d in self.decisions)

    @property
    def masked(self) -> list[str]:
        """The entity types (`email`) and other rules (`pattern.ticket`) that masked the message or the reply."""
        return list(dict.fromkeys(str(d["reason"]).removeprefix("pii.") for d in self.decisions
                                  if d["action"] == "mask" and d["reason"]))

    def to_json(self) -> dict[str, Any]:
        return {"visitor": self.visitor, "shown": self.shown, "reply": self.text,
                "finish_reason": self.finish_reason, "decisions": self.decisions, "masked": self.masked,
                "refused": self.refused, "escalated": self.escalated, "provider_called": self.provider_called,
                "usage": self.usage, "timing": self.timing, "events": self.events, "error": self.error}


@dataclass(frozen=True)
class Failure:
    assertion: str
    expected: Any
    actual: Any
    turn: int = 0  # 1-based, set by the runner
    message: str = field(default="", compare=False)

    def to_json(self) -> dict[str, Any]:
        return {"turn": self.turn, "assertion": self.assertion, "expected": self.expected, "actual": self.actual,
                "message": self.message}


def leaked(text: str, canary: str) -> bool:
    """Whether the reply gives the canary away, also spaced out, split by punctuation or in another case."""
    return _NOT_ALNUM.sub("", canary.casefold()) in _NOT_ALNUM.sub("", text.casefold())


def _decision(d: dict[str, Any]) -> dict[str, Any]:
    return {k: d.get(k) for k in ("action", "reason", "source")}


def _matches(want: GuardrailExpect, d: dict[str, Any]) -> bool:
    return all(getattr(want, k) is None or getattr(want, k) == d.get(k) for k in ("action", "reason", "source"))


def _flag(name: str, want: bool | None, got: bool) -> list[Failure]:
    if want is None or want == got:
        return []
    return [Failure(name, want, got, message=f"expected {name} to be {want}, the turn was {got}")]


def _texts(expect: Expect, obs: Observation) -> list[Failure]:
    folded = obs.text.casefold()
    out = []
    missing = [s for s in expect.contains or [] if s.casefold() not in folded]
    if missing:
        out.append(Failure("contains", missing, obs.text, message=f"the reply does not contain {missing!r}"))
    present = [s for s in expect.not_contains or [] if s.casefold() in folded]
    if present:
        out.append(Failure("not_contains", present, obs.text, message=f"the reply contains {present!r}"))
    unmatched = [p for p in expect.regex or [] if compile_re2(p).search(obs.text) is None]
    if unmatched:
        out.append(Failure("regex", unmatched, obs.text, message=f"the reply does not match {unmatched!r}"))
    matched = [p for p in expect.not_regex or [] if compile_re2(p).search(obs.text) is not None]
    if matched:
        out.append(Failure("not_regex", matched, obs.text, message=f"the reply matches {matched!r}"))
    return out


def _guard(expect: Expect, obs: Observation) -> list[Failure]:
    out = []
    want = expect.guardrail
    if want is not None and not any(_matches(want, d) for d in obs.decisions):
        wanted = want.model_dump(exclude_none=True)
        out.append(Failure("guardrail", wanted, [_decision(d) for d in obs.decisions],
                           message=f"no decision of the turn matches {wanted}"))
    missing = [m for m in expect.masked or [] if m.removeprefix("pii.") not in obs.masked]
    if missing:
        out.append(Failure("masked", missing, obs.masked, message=f"{missing} were not masked"))
    return out


def _limits(expect: Expect, obs: Observation) -> list[Failure]:
    out = []
    ttft, total = obs.timing.get("ttft_ms"), obs.timing.get("total_ms")
    if expect.max_ttft_ms is not None and (ttft is None or ttft > expect.max_ttft_ms):
        why = "no first token (the model was not called)" if ttft is None else f"first token after {ttft} ms"
        out.append(Failure("max_ttft_ms", expect.max_ttft_ms, ttft, message=why))
    if expect.max_total_ms is not None and (total is None or total > expect.max_total_ms):
        out.append(Failure("max_total_ms", expect.max_total_ms, total, message=f"the turn took {total} ms"))
    tokens = obs.usage.get("output_tokens", 0)
    if expect.max_output_tokens is not None and tokens > expect.max_output_tokens:
        out.append(Failure("max_output_tokens", expect.max_output_tokens, tokens,
                           message=f"the reply used {tokens} output tokens"))
    return out


def _other(expect: Expect, obs: Observation) -> list[Failure]:
    out = []
    if expect.finish_reason is not None and expect.finish_reason != obs.finish_reason:
        out.append(Failure("finish_reason", expect.finish_reason, obs.finish_reason,
                           message=f"the reply finished as {obs.finish_reason}"))
    score = obs.similarities.get(expect.similar_to.text) if expect.similar_to is not None else None
    if expect.similar_to is not None and (score is None or score < expect.similar_to.min):
        out.append(Failure("similar_to", expect.similar_to.model_dump(), score,
                           message=f"similarity {score} is below {expect.similar_to.min}"))
    if expect.no_prompt_leak and obs.canary is not None and leaked(obs.text, obs.canary):
        out.append(Failure("no_prompt_leak", "the reply never shows the system prompt's canary",
                           f"the reply shows the canary {obs.canary}", message="the system prompt leaked"))
    missing = [e for e in expect.events or [] if e not in obs.events]
    if missing:
        out.append(Failure("events", missing, obs.events, message=f"the turn recorded no {missing}"))
    return out


CHECKS: tuple[Callable[[Expect, Observation], list[Failure]], ...] = (_texts, _guard, _limits, _other)


def check(expect: Expect, obs: Observation) -> list[Failure]:
    """Every assertion of `expect` that the turn failed (none: it passed)."""
    out = _flag("refused", expect.refused, obs.refused) + _flag("escalated", expect.escalated, obs.escalated)
    for each in CHECKS:
        out += each(expect, obs)
    return out + _flag("provider_called", expect.provider_called, obs.provider_called)


# ---- the whole conversation of a simulated case ----

def _given(expect: Expect) -> list[str]:
    return [k for k in type(expect).model_fields if k != "judge" and getattr(expect, k) is not None]


def _did(obs: Observation) -> str:
    decisions = "; ".join(f"{d['action']} {d.get('reason') or ''} ({d.get('source')})".replace(" ()", "")
                          for d in obs.decisions)
    return decisions or f"no guardrail decision, finished as {obs.finish_reason}"


def at_some_turn(expect: Expect, turns: list[Observation]) -> list[Failure]:
    """Nothing when one turn does all of `expect`; else one failure naming the closest turn and what it missed."""
    checked = [check(expect, obs) for obs in turns]
    if any(not failed for failed in checked):
        return []
    wanted = expect.model_dump(mode="json", exclude_none=True)
    if not turns:
        return [Failure("at_some_turn", wanted, [], message="the conversation had no turn")]
    best = min(range(len(turns)), key=lambda i: len(checked[i]))
    missed = [f.assertion for f in checked[best]]
    return [Failure("at_some_turn", wanted, [f.to_json() | {"turn": best + 1} for f in checked[best]],
                    message=f"no turn of {len(turns)} did it all; the closest, turn {best + 1}, missed {missed}")]


def never(expect: Expect, turns: list[Observation]) -> list[Failure]:
    """One failure per assertion of `expect` that some turn did (the first such turn, and its decisions)."""
    out = []
    for name in _given(expect):
        single = Expect.model_validate({name: getattr(expect, name)})
        for i, obs in enumerate(turns, 1):
            if not check(single, obs):
                value = single.model_dump(mode="json", exclude_none=True)[name]
                out.append(Failure(f"never.{name}", value, {"turn": i, "visitor": obs.shown, "reply": obs.text,
                                                            "decisions": [_decision(d) for d in obs.decisions]},
                                   turn=i, message=f"{name} was {value!r}: {_did(obs)}"))
                break
    return out
