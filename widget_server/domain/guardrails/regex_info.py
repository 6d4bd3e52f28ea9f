"""What Python's own regex parser can tell about a tenant's pattern (RE2 syntax is mostly the same): the
longest match it can have, and the characters a match can start with. The streaming filter holds back
only that much text, and only from a character that could start a match."""

from __future__ import annotations

import re
from re import _constants as c  # type: ignore[attr-defined]
from re import _parser as parser  # type: ignore[attr-defined]
from typing import Any

UNBOUNDED = 1 << 30
DIGITS = frozenset("0123456789")
MAX_CLASS = 512  # a wider character class is as good as "any character"


def _parse(regex: str) -> Any:
    try:
        return parser.parse(regex)
    except (re.error, ValueError, OverflowError, RecursionError):
        return None


def max_width(regex: str) -> int:
    """The longest match of a pattern (RE2-only syntax counts as unbounded)."""
    parsed = _parse(regex)
    return UNBOUNDED if parsed is None else min(UNBOUNDED, int(parsed.getwidth()[1]))


def _class(items: Any) -> set[str] | None:
    out: set[str] = set()
    for op, av in items:
        if op is c.LITERAL:
            out.add(chr(av))
        elif op is c.RANGE and av[1] - av[0] < MAX_CLASS:
            out.update(chr(i) for i in range(av[0], av[1] + 1))
        elif op is c.CATEGORY and av is c.CATEGORY_DIGIT:
            out |= DIGITS
        else:
            return None
    return out


def _first(items: Any) -> tuple[set[str] | None, bool]:
    """The possible first characters of a sequence, and whether the sequence can match nothing."""
    out: set[str] = set()
    for op, av in items:
        if op is c.AT:
            continue  # an anchor takes no character
        if op is c.LITERAL:
            return out | {chr(av)}, False
        if op is c.IN:
            chars = _class(av)
            return (None, False) if chars is None else (out | chars, False)
        if op in (c.MAX_REPEAT, c.MIN_REPEAT):
            sub, empty = _first(av[2])
            can_skip = av[0] == 0 or empty
        elif op is c.SUBPATTERN:
            if av[1] & re.IGNORECASE:
                return None, False
            sub, can_skip = _first(av[3])
        elif op is c.BRANCH:
            sub, can_skip = set(), False
            for alt in av[1]:
                alt_first, alt_empty = _first(alt)
                if alt_first is None:
                    return None, False
                sub |= alt_first
                can_skip = can_skip or alt_empty
        else:
            return None, False
        if sub is None:
            return None, False
        out |= sub
        if not can_skip:
            return out, False
    return out, True


def first_chars(regex: str) -> frozenset[str] | None:
    """The characters any match of the pattern starts with, or None when that is not known."""
    parsed = _parse(regex)
    if parsed is None or parsed.state.flags & re.IGNORECASE:
        return None
    chars, empty = _first(parsed)
    return None if chars is None or empty else frozenset(chars)
