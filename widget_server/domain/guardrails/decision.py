"""What a guardrail check decides, and the shape of the filter that checks a streamed reply.

The engine (`check`, `stream`) returns these; the tenant guard hands them to the turn; the turn records each as an
annotation on the stored message, a `guardrail` frame and a `guardrail.triggered` event.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from widget_server.domain.guardrails.topics import TopicMatch


@dataclass(frozen=True)
class Span:
    """A masked stretch of the visitor's message as written: `[start, end)` in code points, the rule that masked it."""

    reason: str
    start: int
    end: int


@dataclass(frozen=True)
class Decision:
    action: str  # allow | refuse | mask | escalate | block
    reason: str | None = None
    text: str = ""  # the text the visitor is shown (masked input, or the refusal)
    shown: str | None = None  # a refused input as stored and shown back, when it had something to mask
    masks: tuple[Span, ...] = ()  # what was masked in the input, also when the input was then refused
    # How the topics read the message (None when they were not read): for the console's trace, no part of the
    # decision, so not compared.
    topics: TopicMatch | None = field(default=None, compare=False, repr=False)

    @property
    def stops(self) -> bool:
        return self.action in ("refuse", "escalate", "block")

    def annotation(self, source: str, spans: bool = True) -> dict[str, Any]:
        """The decision as reported to REST and SSE callers and in frames (a mask with its spans), and as stored
        on a message (`spans=False`: the stored text is the masked one, which the spans do not index)."""
        out: dict[str, Any] = {"action": self.action, "reason": self.reason, "source": source}
        if spans and self.action == "mask" and self.masks:
            out["spans"] = [{"start": m.start, "end": m.end} for m in self.masks if m.reason == self.reason]
        return out

    def every(self) -> list[Decision]:
        """Every decision this one stands for: the stop (or none), then one mask per masking rule, each with its
        spans, so that a turn reports the masks of a refused message too."""
        out = [self] if self.action not in ("allow", "mask") else []
        for reason in dict.fromkeys(m.reason for m in self.masks):
            out.append(Decision("mask", reason, self.shown or self.text, masks=self.masks))
        if self.action == "mask" and not self.masks:
            out.append(self)
        return out


ALLOW = Decision("allow")


class OutputFilter(Protocol):
    @property
    def stopped(self) -> Decision | None:
        """The decision that ended the stream, also when it came at `flush`."""
        ...

    @property
    def masked(self) -> list[str]:
        """The reasons of what was masked without stopping."""
        ...

    def feed(self, text: str) -> tuple[str, Decision | None]:
        """Take the next provider delta; return the text safe to release now and a decision if it stops."""
        ...

    def flush(self) -> str:
        """The end of the stream: release whatever was held back."""
        ...


class PassThroughFilter:
    """The output filter of a tenant without a policy: everything is released as it comes."""

    def __init__(self) -> None:
        self.stopped: Decision | None = None
        self.masked: list[str] = []

    def feed(self, text: str) -> tuple[str, Decision | None]:
        return text, None

    def flush(self) -> str:
        return ""
