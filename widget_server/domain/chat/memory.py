"""What a conversation's turns carry from one to the next: its recent turns (the model's context) and its
guardrail state (refusals in a row, the previous turn a follow-up is read with).

A widget conversation keeps its memory with its channel, so a turn reads no history from storage; a REST turn
gets a fresh memory each time, whose turns are read from storage and whose guardrail state comes with the
conversation's row. The guardrail state is stored with every message of the turn either way.
"""

from __future__ import annotations

from collections import deque
from datetime import datetime

from widget_server.backends.providers import Turn
from widget_server.domain.guardrails.check import CheckContext


class Memory:
    def __init__(self, size: int, guard: CheckContext) -> None:
        self.turns: deque[Turn] = deque(maxlen=size)
        self.loaded = False  # whether `turns` holds the conversation's recent turns (else read them from storage)
        self.guard = guard
        self.token = ""  # what the conversation's lease held when this memory was last right (see live_turn)
        self.escalated_at: datetime | None = None  # the conversation's last takeover this memory knows of

    def load(self, turns: list[Turn]) -> None:
        self.turns.clear()
        self.turns.extend(turns)
        self.loaded = True

    def add(self, turn: Turn) -> None:
        if self.loaded:
            self.turns.append(turn)
