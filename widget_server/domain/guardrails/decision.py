"""The guardrail hook around a visitor's input and around the streamed output.

The guardrails issue fills these in with a compiled tenant policy; here they let everything through.
Pure functions over state, no I/O, so the domain can call them on the hot path.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True)
class Decision:
    action: str  # allow | refuse | mask | escalate | block
    reason: str | None = None
    text: str = ""  # the text the visitor is shown (masked input, or the refusal)
    shown: str | None = None  # a refused input as stored and shown back, when it had something to mask

    @property
    def stops(self) -> bool:
        return self.action in ("refuse", "escalate", "block")


ALLOW = Decision("allow")


@dataclass(frozen=True)
class GuardContext:
    tenant_id: str
    persona_id: str
    conversation_id: str
    channel: str


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


class Guard(Protocol):
    async def check_input(self, ctx: GuardContext, text: str) -> Decision: ...

    def output_filter(self, ctx: GuardContext) -> OutputFilter: ...


class PassThroughFilter:
    def __init__(self) -> None:
        self.stopped: Decision | None = None
        self.masked: list[str] = []

    def feed(self, text: str) -> tuple[str, Decision | None]:
        return text, None

    def flush(self) -> str:
        return ""


class AllowAll:
    async def check_input(self, ctx: GuardContext, text: str) -> Decision:
        return Decision("allow", text=text)

    def output_filter(self, ctx: GuardContext) -> OutputFilter:
        return PassThroughFilter()
