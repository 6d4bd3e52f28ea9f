"""What a guardrail check decides, and the shape of the filter that checks a streamed reply.

The engine (`check`, `stream`) returns these; the tenant guard hands them to the turn; the turn records each as an
annotation on the stored message, a `guardrail` frame and a `guardrail.triggered` event.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol


@dataclass(frozen=True)
class Decision:
    action: str  # allow | refuse | mask | escalate | block
    reason: str | None = None
    text: str = ""  # the text the visitor is shown (masked input, or the refusal)
    shown: str | None = None  # a refused input as stored and shown back, when it had something to mask

    @property
    def stops(self) -> bool:
        return self.action in ("refuse", "escalate", "block")

    def annotation(self, source: str) -> dict[str, Any]:
        """The decision as stored on a message and reported to REST and SSE callers."""
        return {"action": self.action, "reason": self.reason, "source": source}


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
