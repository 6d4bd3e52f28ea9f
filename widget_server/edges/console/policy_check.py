"""The "check this text" box of the Safety policy page: the decision a compiled policy makes on one text, as a
person reads it — the action and reason, what is shown instead, the masked text with each masked span marked, and
every decision the turn would report (`Decision.every()`).

The decision is `evaluate.judge`'s (the same as `widget-server guard check`). Where the masks fall is read from
the policy's own scan of the text; it is shown only when those spans give exactly the decision's masked text, so
the marks can never disagree with what a visitor would get (otherwise the text is shown unmarked).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from widget_server.domain.guardrails.check import applied
from widget_server.domain.guardrails.compile import CompiledPolicy
from widget_server.domain.guardrails.decision import Decision
from widget_server.domain.guardrails.evaluate import judge
from widget_server.domain.guardrails.scan import scan
from widget_server.domain.guardrails.tenant_guard import Compiled, Unavailable, unavailable

SOURCES = ("input", "output")


@dataclass(frozen=True)
class Piece:
    """A stretch of the masked text: as is (`reason` None), or the label put in place of `original`."""

    text: str
    reason: str | None = None
    original: str = ""
    start: int = 0  # where `original` is in the text checked, [start, end) in code points
    end: int = 0


@dataclass(frozen=True)
class Checked:
    decision: Decision
    source: str
    masked: str | None  # the text with its masks applied (None: nothing masked)
    pieces: tuple[Piece, ...]  # `masked` with the masked spans marked
    every: tuple[Decision, ...]

    @property
    def spans(self) -> list[Piece]:
        return [p for p in self.pieces if p.reason]


def _pieces(cp: CompiledPolicy, text: str, source: str, masked: str) -> tuple[Piece, ...]:
    found = applied([f for f in scan(cp, source, text) if f.action == "mask"])
    pieces, at = [], 0
    for f in found:
        pieces += [Piece(text[at:f.start]), Piece(f.label, f.reason, text[f.start:f.end], f.start, f.end)]
        at = f.end
    pieces.append(Piece(text[at:]))
    kept = tuple(p for p in pieces if p.text or p.reason)
    return kept if "".join(p.text for p in kept) == masked else (Piece(masked),)


def _masked(decision: Decision, source: str) -> str | None:
    if source == "input":
        return decision.shown or (decision.text if decision.action == "mask" else None)
    return decision.text if decision.action == "mask" else None


def describe(compiled: Compiled, text: str, source: str) -> Checked:
    """The decision of the policy (None: no policy, everything passes) on `text` as `source`."""
    if compiled is None:
        decision = Decision("allow", text=text)
    elif isinstance(compiled, Unavailable):
        decision = unavailable()
    else:
        decision = judge(compiled, text, source)
    masked = _masked(decision, source)
    pieces = _pieces(compiled, text, source, masked) if masked is not None and isinstance(
        compiled, CompiledPolicy) else ()
    return Checked(decision, source, masked, pieces, tuple(decision.every()))


async def check(compiled: Compiled, text: str, source: str) -> Checked:
    """`describe` in a worker thread: a policy with topics runs the embedding model."""
    return await asyncio.to_thread(describe, compiled, text, source)
