"""Find every rule's matches in a text, and how far back a match still being streamed could start.

Offsets are in the original text. The streaming filter passes `views(text, before, context)`, where `before`
is the character preceding the text (already released), read only for word boundaries, and `context` what was
released before that, read only by the PII detectors (see `Window`). With `final=False` a
match touching the end is left for later: more text may extend it or break its word boundary (the hold
point keeps it back meanwhile).
"""

from __future__ import annotations

from bisect import bisect_left
from dataclasses import dataclass
from functools import cached_property

from widget_server.domain.guardrails import normalize, pii
from widget_server.domain.guardrails.compile import CompiledPattern, CompiledPolicy, Terms
from widget_server.domain.guardrails.normalize import SEPARATORS, SPACED_RUN, View, Views

STOPS = ("block", "escalate", "refuse")


@dataclass(frozen=True)
class Found:
    reason: str
    action: str
    start: int
    end: int
    label: str = "[redacted]"


def _word_ok(text: str, start: int, end: int) -> bool:
    return (start == 0 or not text[start - 1].isalnum()) and (end == len(text) or not text[end].isalnum())


def _terms(terms: Terms, view: View, final: bool) -> list[Found]:
    text, n, out = view.text, len(view.text), []
    for last, (key, rule) in terms.automaton.iter(text):
        start, end = last - len(key) + 1, last + 1
        if (end == n and not final) or (rule.word and not _word_ok(text, start, end)):
            continue
        out.append(Found(rule.reason, rule.action, *view.span(start, end)))
    for run in SPACED_RUN.finditer(text):
        pos = [i for i in range(run.start(), run.end()) if text[i] not in SEPARATORS]
        for last, (key, rule) in terms.squeezed.iter("".join(text[i] for i in pos)):
            start, end = pos[last - len(key) + 1], pos[last] + 1
            if end < n or final:
                out.append(Found(rule.reason, rule.action, *view.span(start, end)))
    return out


def _pii(cp: CompiledPolicy, view: View, final: bool) -> list[Found]:
    assert cp.pii_rule is not None
    n = len(view.text)
    first = bisect_left(view.index, 0)  # where the text scanned starts, after what is only read before it
    return [Found(f"pii.{hit.entity}", cp.pii_rule.action, *view.span(hit.start, hit.end), pii.LABELS[hit.entity])
            for hit in pii.find(view.text, cp.pii_entities, first) if hit.end < n or final]


def _patterns(cp: CompiledPolicy, source: str, view: View, final: bool) -> list[Found]:
    out, n = [], len(view.text)
    for pattern in cp.patterns_for(source):
        if pattern.first is not None and pattern.first.isdisjoint(view.text):
            continue  # no character a match could start with
        for m in pattern.regex.finditer(view.text):
            if m.end() > m.start() and (m.end() < n or final):
                out.append(Found(pattern.rule.reason, pattern.rule.action, *view.span(m.start(), m.end())))
    return out


class Window(Views):
    """The views of `before + text`, but for `fold`, the PII detectors' view, which has `context` before that:
    what they read before a match (a context word, a number it would go on), and no other rule does."""

    def __init__(self, text: str, before: str, context: str) -> None:
        super().__init__(before + text, -len(before))
        self.context = context

    @cached_property
    def fold(self) -> View:
        return normalize.fold(self.context + self.text, self.offset - len(self.context))


def views(text: str, before: str = "", context: str = "") -> Views:
    """The views of `before + text` (and `context` before it for PII), offsets counted from the start of
    `text`."""
    return Window(text, before, context) if context else Views(before + text, -len(before))


def scan(cp: CompiledPolicy, source: str, text: str | Views, *, final: bool = True) -> list[Found]:
    """Every match of the policy's rules for `source` that starts in `text`, in text order."""
    v = text if isinstance(text, Views) else views(text)
    found: list[Found] = []
    terms = cp.terms(source)
    if not terms.empty:
        found += _terms(terms, v.skel, final)
    if cp.pii_for(source):
        found += _pii(cp, v.fold, final)
    if cp.patterns_for(source):
        found += _patterns(cp, source, v.clean, final)
    return sorted((f for f in found if f.start >= 0), key=lambda f: (f.start, -f.end))


def _spaced_tail(text: str) -> list[int]:
    """The positions of the letters of a spelled-out run ending the text ("… r i v a"), oldest first."""
    i, letters = len(text), []
    gap = 0
    while i > 0 and text[i - 1] in SEPARATORS and gap < 3:
        i, gap = i - 1, gap + 1
    while i > 0 and text[i - 1].isalnum() and (i == 1 or not text[i - 2].isalnum()):
        letters.append(i - 1)
        i -= 1
        gap = 0
        while i > 0 and text[i - 1] in SEPARATORS and gap < 3:
            i, gap = i - 1, gap + 1
        if gap == 0:
            break
    return letters[::-1]


def _term_hold(terms: Terms, text: str) -> int:
    n, hold = len(text), len(text)
    for k in range(min(terms.longest, n), 0, -1):
        if terms.is_prefix(text[n - k:]):
            hold = n - k
            break
    pos = _spaced_tail(text)
    letters = "".join(text[i] for i in pos)
    for j in range(max(0, len(pos) - terms.longest), len(pos)):
        if terms.is_squeezed_prefix(letters[j:]):
            return min(hold, pos[j])
    return hold


def _pattern_hold(patterns: tuple[CompiledPattern, ...], text: str) -> int:
    n, hold = len(text), len(text)
    for p in patterns:
        start = max(0, n - p.width)
        if p.first is None:
            return start
        hold = min(hold, next((i for i in range(start, n) if text[i] in p.first), n))
    return hold


def hold_point(cp: CompiledPolicy, source: str, v: Views) -> int:
    """The earliest offset in the text where a match could be starting that more text might complete:
    everything before it can be released."""
    holds = [len(v.text) + v.offset]
    terms = cp.terms(source)
    if not terms.empty:
        holds.append(v.skel.index[_term_hold(terms, v.skel.text)])
    if cp.pii_for(source) and cp.pii_tail is not None:
        m = cp.pii_tail.search(v.fold.text)
        if m is not None:
            holds.append(v.fold.index[m.start()])
    patterns = cp.patterns_for(source)
    if patterns:
        holds.append(v.clean.index[_pattern_hold(patterns, v.clean.text)])
    return max(0, min(holds))
