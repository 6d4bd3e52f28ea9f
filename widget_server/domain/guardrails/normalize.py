"""Normalized views of a text, each with a map back to the original offsets (so masks land on the original).

Every character is normalized on its own, so a view of a prefix is a prefix of the view of the whole text:
the streaming filter depends on that. Three views:

- `clean`: NFKC, zero-width and bidi controls removed (tenant patterns run here, case as written);
- `fold`: compatibility-decomposed, combining marks dropped, case folded (PII and escalation phrases);
- `skel`: `fold` with common look-alikes mapped to the letter they imitate (blocked terms).
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cached_property, lru_cache

# Zero-width characters, the soft hyphen and the bidi controls: invisible, and used to split a word.
INVISIBLE = frozenset([0x00AD, 0x034F, 0x061C, 0x180E, 0x200B, 0x200C, 0x200D, 0x200E, 0x200F, 0x2060, 0x2061,
                       0x2062, 0x2063, 0x2064, 0xFEFF, *range(0x202A, 0x202F), *range(0x2066, 0x206A)])

# Look-alikes that imitate a Latin letter: Cyrillic and Greek homoglyphs and the usual digit/symbol swaps.
# Applied to the terms too, so a term written with these characters still matches itself. `l`, `1`, `|`, `!` and
# `i` are one letter here (as in Unicode's confusable skeletons): "cyc1es" reads as "cycles" whichever of l or i
# the 1 stands for.
LOOK_ALIKES = str.maketrans({
    "а": "a", "е": "e", "о": "o", "р": "p", "с": "c", "х": "x", "у": "y", "і": "i", "ј": "j", "ѕ": "s",
    "ԁ": "d", "һ": "h", "ԛ": "q", "ԝ": "w", "к": "k", "м": "m", "т": "t", "в": "b", "н": "h", "ӏ": "i",
    "ѵ": "v", "α": "a", "ο": "o", "ε": "e", "ι": "i", "κ": "k", "ν": "v", "ρ": "p", "τ": "t", "υ": "u",
    "χ": "x", "ϳ": "j", "η": "n",
    "0": "o", "1": "i", "2": "z", "3": "e", "4": "a", "5": "s", "7": "t", "8": "b", "9": "g", "@": "a", "$": "s",
    "!": "i", "|": "i", "l": "i",
})
# Mapped before folding: capitals that imitate a Latin capital but fold to a letter that imitates another (Greek
# Ν folds to ν, read as v above; Υ to υ, read as u), and the lunate sigma ϲ, whose compatibility form is σ.
BEFORE_FOLD = {
    "ϲ": "c",
    "Α": "a", "Β": "b", "Ε": "e", "Ζ": "z", "Η": "h", "Ι": "i", "Κ": "k", "Μ": "m", "Ν": "n", "Ο": "o", "Ρ": "p",
    "Τ": "t", "Υ": "y", "Χ": "x", "Ϲ": "c", "А": "a", "В": "b", "Е": "e", "К": "k", "М": "m", "Н": "h", "О": "o",
    "Р": "p", "С": "c", "Т": "t", "Х": "x", "У": "y", "Ѕ": "s", "І": "i", "Ј": "j", "Ӏ": "i",
}

# A letter spelled out with separators between: "r i v a l c o", "r.i.v.a.l", "r-i-v-a-l".
SEPARATORS = " ._*-·/~+"
_SEP = "[" + re.escape(SEPARATORS) + "]{1,3}"
SPACED_RUN = re.compile(rf"(?<![^\W_])(?:[^\W_]{_SEP}){{2,}}[^\W_](?![^\W_])")
SPACED_TAIL = re.compile(rf"(?<![^\W_])(?:[^\W_]{_SEP})*[^\W_](?:{_SEP})?\Z")


# ASCII text, by far the most common, is normalized a whole string at a time: NFKC and NFKD leave it as it is,
# it has no invisible characters, its case folding is `lower`, and its skeleton is one translation.
_ASCII_SKEL = str.maketrans({**{chr(i): " " for i in range(128) if chr(i).isspace()},
                             **{chr(k): v for k, v in LOOK_ALIKES.items() if k < 128}})


def _ascii_skel(text: str) -> str:
    return text.lower().translate(_ASCII_SKEL)


@lru_cache(maxsize=16384)
def _clean(ch: str) -> str:
    return "" if ord(ch) in INVISIBLE else unicodedata.normalize("NFKC", ch)


@lru_cache(maxsize=16384)
def _fold(ch: str) -> str:
    if ord(ch) in INVISIBLE:
        return ""
    return "".join(c for c in unicodedata.normalize("NFKD", ch) if not unicodedata.combining(c)).casefold()


@lru_cache(maxsize=16384)
def _skel(ch: str) -> str:
    if ch in BEFORE_FOLD:
        return BEFORE_FOLD[ch].translate(LOOK_ALIKES)
    return " " if ch.isspace() else _fold(ch).translate(LOOK_ALIKES)


@dataclass(frozen=True)
class View:
    """A normalized text; `index[i]` is the original offset of view character `i` (`index[-1]` is the end)."""

    text: str
    index: Sequence[int]  # a range when the view is one for one

    def span(self, start: int, end: int) -> tuple[int, int]:
        """The original span of view characters `[start, end)`, with the invisible characters inside it."""
        return self.index[start], max(self.index[end], self.index[end - 1] + 1)


def _view(text: str, offset: int, fn: Callable[[str], str], ascii_fn: Callable[[str], str]) -> View:
    if text.isascii():
        return View(ascii_fn(text), range(offset, offset + len(text) + 1))
    outs = [fn(ch) for ch in text]
    joined = "".join(outs)
    if len(joined) == len(text) and all(len(o) == 1 for o in outs):  # one for one
        return View(joined, range(offset, offset + len(text) + 1))
    index: list[int] = []
    for i, out in enumerate(outs):
        index.extend([offset + i] * len(out))
    index.append(offset + len(text))
    return View(joined, tuple(index))


class Views:
    """The three views of one text, each made when first needed."""

    def __init__(self, text: str, offset: int = 0) -> None:
        self.text, self.offset = text, offset

    @cached_property
    def clean(self) -> View:
        return clean(self.text, self.offset)

    @cached_property
    def fold(self) -> View:
        return fold(self.text, self.offset)

    @cached_property
    def skel(self) -> View:
        return skeleton(self.text, self.offset)


def clean(text: str, offset: int = 0) -> View:
    return _view(text, offset, _clean, str)


def fold(text: str, offset: int = 0) -> View:
    return _view(text, offset, _fold, str.lower)


def skeleton(text: str, offset: int = 0) -> View:
    return _view(text, offset, _skel, _ascii_skel)


def term_key(term: str) -> str:
    """A blocked term as it is matched: its skeleton, with runs of white space made one space."""
    return " ".join(skeleton(term).text.split())


def squeeze(key: str) -> str:
    """A term without its separators: how it reads when spelled out letter by letter."""
    return "".join(c for c in key if c not in SEPARATORS)
