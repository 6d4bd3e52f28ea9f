"""PII detectors over the `fold` view: email, phone, credit card (Luhn), IBAN (mod-97), US SSN.

Each finds candidates with a linear-time RE2 pattern, then a checksum or a rule drops the false ones.
`TAILS` say how far back a match still being written could start, for the streaming filter; `TAIL_CHARS` and
`RUNS` let it skip scans that could release nothing.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import re2

DIGIT = re.compile(r"\d")
ENTITIES = ("email", "phone", "credit_card", "iban", "us_ssn")
LABELS = {"email": "[email]", "phone": "[phone]", "credit_card": "[card]", "iban": "[iban]", "us_ssn": "[ssn]"}

EMAIL = re2.compile(r"[a-z0-9._%+-]+@[a-z0-9-]+(?:\.[a-z0-9-]+)*\.[a-z]{2,}")
CARD = re2.compile(r"\b(?:\d[ -]?){12,18}\d\b")
PHONE = re2.compile(r"(?:\+\d{1,3}[ .-]?)?(?:\(\d{2,4}\)|\b\d{2,4})[ .-]?\d{3,4}[ .-]?\d{3,4}\b")
IBAN = re2.compile(r"\b[a-z]{2}\d{2}(?: ?[a-z0-9]{4}){2,7}(?: ?[a-z0-9]{1,4})?\b")
SSN = re2.compile(r"\b(\d{3})[- ](\d{2})[- ](\d{4})\b")

# What a match still being written can look like at the end of the text (each one's characters include
# every character its detector can match, so a match never starts before its tail).
TAILS = {
    "email": r"[a-z0-9._%+-]+(?:@[a-z0-9.-]*)?",
    "phone": r"[+(]?[0-9][0-9 ().+-]*",
    "credit_card": r"[0-9][0-9 -]*",
    "iban": r"[a-z]{1,2}|[a-z]{2}[0-9]{1,2}(?: ?[a-z0-9]){0,32} ?",
    "us_ssn": r"[0-9][0-9 -]*",
}
_LOWER, _DIGITS = "abcdefghijklmnopqrstuvwxyz", "0123456789"
TAIL_CHARS = {  # every character each tail above can contain
    "email": frozenset(_LOWER + _DIGITS + "._%+-@"),
    "phone": frozenset(_DIGITS + " ().+-"),
    "credit_card": frozenset(_DIGITS + " -"),
    "iban": frozenset(_LOWER + _DIGITS + " "),
    "us_ssn": frozenset(_DIGITS + " -"),
}

# A held tail that one of these matches whole is still a possible match in progress after any more of the
# characters given (each run is a case of its entity's tail above): the streaming filter, holding such a tail,
# has nothing to release until another character comes, and need not look again before.
RUNS = {
    "email": ((re.compile(r"[a-z0-9._%+-]+"), frozenset(_LOWER + _DIGITS + "._%+-")),
              (re.compile(r"[a-z0-9._%+-]+@[a-z0-9.-]*"), frozenset(_LOWER + _DIGITS + ".-"))),
    "phone": ((re.compile(r"[+(]?[0-9][0-9 ().+-]*"), frozenset(_DIGITS + " ().+-")),),
    "credit_card": ((re.compile(r"[0-9][0-9 -]*"), frozenset(_DIGITS + " -")),),
    "us_ssn": ((re.compile(r"[0-9][0-9 -]*"), frozenset(_DIGITS + " -")),),
}


@dataclass(frozen=True)
class Hit:
    entity: str
    start: int
    end: int


def luhn(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch)
        if i % 2:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def iban_ok(compact: str) -> bool:
    if not 15 <= len(compact) <= 34 or not compact.isalnum():
        return False
    moved = compact[4:] + compact[:4]
    return int("".join(str(int(c, 36)) for c in moved)) % 97 == 1


def _digits(text: str) -> str:
    return "".join(c for c in text if c.isdigit())


def _emails(text: str) -> Iterator[tuple[int, int]]:
    for m in EMAIL.finditer(text):
        yield m.start(), m.end()


def _cards(text: str) -> Iterator[tuple[int, int]]:
    for m in CARD.finditer(text):
        digits = _digits(m.group())
        if 13 <= len(digits) <= 19 and luhn(digits):
            yield m.start(), m.end()


def _phones(text: str) -> Iterator[tuple[int, int]]:
    for m in PHONE.finditer(text):
        found = m.group()
        separated = found.startswith("+") or any(c in found for c in " ().-")
        if separated and 7 <= len(_digits(found)) <= 15 and not _in_longer_number(text, m.start(), m.end()):
            yield m.start(), m.end()


def _in_longer_number(text: str, start: int, end: int) -> bool:
    """Whether digit groups go on around a match (part of a longer number, like a card failing Luhn)."""
    before = text[max(0, start - 2):start].lstrip(" .-")
    after = text[end:end + 2].lstrip(" .-")
    return (before[-1:].isdigit()) or (after[:1].isdigit())


def _ibans(text: str) -> Iterator[tuple[int, int]]:
    for m in IBAN.finditer(text):
        # The pattern may take a following word in; try the candidate less its trailing groups.
        groups = m.group().split(" ")
        for n in range(len(groups), 0, -1):
            kept = " ".join(groups[:n])
            if iban_ok(kept.replace(" ", "").upper()):
                yield m.start(), m.start() + len(kept)
                break


def _ssns(text: str) -> Iterator[tuple[int, int]]:
    for m in SSN.finditer(text):
        area, group, serial = m.group(1), m.group(2), m.group(3)
        if area not in ("000", "666") and area[0] != "9" and group != "00" and serial != "0000":
            yield m.start(), m.end()


FINDERS: dict[str, Callable[[str], Iterator[tuple[int, int]]]] = {
    "email": _emails, "credit_card": _cards, "iban": _ibans, "us_ssn": _ssns, "phone": _phones,
}
ORDER = ("email", "credit_card", "iban", "us_ssn", "phone")  # a number is a card before it is a phone


def find(text: str, entities: frozenset[str]) -> list[Hit]:
    """Non-overlapping PII hits in a `fold` view, in order."""
    hits: list[Hit] = []
    has_at, has_digit = "@" in text, DIGIT.search(text) is not None
    for entity in ORDER:
        if entity not in entities or not (has_at if entity == "email" else has_digit):
            continue  # every entity but an email has digits, and an email has its @
        for start, end in FINDERS[entity](text):
            if all(end <= h.start or start >= h.end for h in hits):
                hits.append(Hit(entity, start, end))
    return sorted(hits, key=lambda h: h.start)


def run_of(held: str, entities: frozenset[str]) -> frozenset[str] | None:
    """The characters that keep a held `fold` text a possible match in progress from its first character (the
    widest such set), or None when no entity's run matches it whole."""
    best: frozenset[str] | None = None
    for entity in entities:
        for pattern, chars in RUNS.get(entity, ()):
            if (best is None or len(chars) > len(best)) and pattern.fullmatch(held):
                best = chars
    return best


def tail_pattern(entities: frozenset[str]) -> re2._Regexp | None:
    """One pattern matching, at the end of a text, the earliest start of a PII match still being written."""
    parts = [f"(?:{TAILS[e]})" for e in ENTITIES if e in entities]
    return re2.compile("(?:" + "|".join(parts) + r")\z") if parts else None
