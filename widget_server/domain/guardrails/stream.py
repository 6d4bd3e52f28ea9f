"""The strict-mode output filter: nothing reaches the visitor before it is checked.

Each delta is added to the text held back; whatever cannot be the start of a match still being written is
released at once (masked where PII or a masking rule matched); a refusing rule stops the stream. Only the
held text is scanned again, so the work per delta stays proportional to what is held, not to the reply.
"""

from __future__ import annotations

from widget_server.domain.guard import Decision
from widget_server.domain.guardrails.check import mask, stop_text
from widget_server.domain.guardrails.compile import CompiledPolicy
from widget_server.domain.guardrails.scan import STOPS, hold_point, scan, views


class StrictFilter:
    """An `OutputFilter` over one reply. `stopped` is the decision that ended it (also after `flush`)."""

    def __init__(self, cp: CompiledPolicy, source: str = "output") -> None:
        self.cp = cp
        self.source = source
        self.pending = ""
        self.before = ""  # the last character released, for word boundaries
        self.stopped: Decision | None = None
        self.masked: list[str] = []  # the reasons of what was masked

    def feed(self, text: str) -> tuple[str, Decision | None]:
        if self.stopped is not None:
            return "", self.stopped
        self.pending += text
        return self._step(final=False), self.stopped

    def flush(self) -> str:
        if self.stopped is not None:
            return ""
        return self._step(final=True)

    def _step(self, final: bool) -> str:
        window = self.pending
        v = views(window, self.before)
        found = scan(self.cp, self.source, v, final=final)
        stop = next((f for f in found if f.action in STOPS), None)
        if stop is not None:
            self.stopped = Decision(stop.action, stop.reason, stop_text(self.cp, stop.action))
            self.pending = ""
            return ""
        hold = len(window) if final else hold_point(self.cp, self.source, v)
        masks = [f for f in found if f.action == "mask"]
        for f in masks:
            if f.start < hold < f.end:
                hold = f.start
        done = [f for f in masks if f.end <= hold]
        self.masked += [f.reason for f in done]
        if hold:
            self.before = window[hold - 1]
        self.pending = window[hold:]
        return mask(window[:hold], done)
