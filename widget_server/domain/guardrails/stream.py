"""The strict-mode output filter: nothing reaches the visitor before it is checked.

Each delta is added to the text held back; whatever cannot be the start of a match still being written is
released at once (masked where PII or a masking rule matched); a refusing rule stops the stream. Only the
held text is scanned again, so the work per delta stays proportional to what is held, not to the reply.

Two shortcuts keep a reply streamed a character at a time cheap; each gives out what a scan would:
- nothing held, and a delta with no character that could take part in a match (`Inert`): it is released as is;
- everything held is a word or a number that could still become an email or a phone number, and the delta
  goes on with it: it is held too, and the scan waits for a character that ends the run. That is the same as
  receiving those deltas as one, which every chunking must be safe for; a blocked term inside the run is only
  noticed at the run's end, still unsent.

The end of what was released is kept as `before`, for a scan to read (never to release): its last character
for word boundaries, and, for the PII detectors only, the last `pii.NEAR` characters of its `fold` view (a
number that a match would go on), or `pii.LOOKBACK` when the policy masks a number that counts only after a
context word ("BSN 123456782"), so that the word is still read once released.
"""

from __future__ import annotations

from widget_server.domain.guardrails.check import mask, stop_text
from widget_server.domain.guardrails.compile import CompiledPolicy
from widget_server.domain.guardrails.decision import Decision
from widget_server.domain.guardrails.normalize import _fold, fold
from widget_server.domain.guardrails.pii import CONTEXT_ENTITIES, LOOKBACK, NEAR, run_of
from widget_server.domain.guardrails.scan import STOPS, hold_point, scan, views


class StrictFilter:
    """An `OutputFilter` over one reply. `stopped` is the decision that ended it (also after `flush`)."""

    def __init__(self, cp: CompiledPolicy, source: str = "output") -> None:
        self.cp = cp
        self.source = source
        self.pending = ""
        self.before = ""  # the end of what was released, for word boundaries and context words (see above)
        self.stopped: Decision | None = None
        self.masked: list[str] = []  # the reasons of what was masked
        self.run: frozenset[str] | None = None  # the characters that keep all of `pending` held (see above)
        self.runs = cp.pii_entities if cp.pii_for(source) else frozenset()
        self.inert = cp.output_inert if source == "output" else None
        # `fold` characters of `before` to keep (see above)
        self.keep = LOOKBACK if self.runs & CONTEXT_ENTITIES else NEAR

    def feed(self, text: str) -> tuple[str, Decision | None]:
        if self.stopped is not None:
            return "", self.stopped
        if not self.pending and self.inert is not None and self.inert(text):
            self._released(text)
            return text, None
        self.pending += text
        if self._held_whole(text):
            return "", None
        return self._step(final=False), self.stopped

    def _held_whole(self, text: str) -> bool:
        """Whether all the text held is still a possible PII match in progress from its first character, so
        that a scan could release nothing (cheap: a set lookup while the deltas go on with the same run)."""
        if not self.runs:
            return False
        if self.run is not None and self.run.issuperset(text.lower() if text.isascii() else fold(text).text):
            return True
        held = fold(self.pending)
        # The run has to start at the first character held (not after an invisible one, which is released).
        self.run = run_of(held.text, self.runs) if held.index[0] == 0 else None
        return self.run is not None

    def flush(self) -> str:
        if self.stopped is not None:
            return ""
        return self._step(final=True)

    def _step(self, final: bool) -> str:
        window = self.pending
        v = views(window, self.before[-1:], self.before[:-1])
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
        self._released(window[:hold])
        self.pending = window[hold:]
        self.run = None
        return mask(window[:hold], done)

    def _released(self, text: str) -> None:
        """Keep the end of what was released: at least `keep` characters of its `fold` view (or all of it)."""
        kept = self.before + text
        if len(kept) <= self.keep:
            self.before = kept
        elif kept.isascii():
            self.before = kept[-self.keep:]
        else:
            i, width = len(kept), 0
            while i > 0 and width < self.keep:
                i -= 1
                width += len(_fold(kept[i]))
            self.before = kept[i:]
