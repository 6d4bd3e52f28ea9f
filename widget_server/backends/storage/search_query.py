"""The transcript search's query language, and the marks on what it found.

What a support person types: words (all must match), "quoted phrases" (also „…“ and «…»), and the last word
matching as a prefix while it is being typed ("refun" finds "refund"). Nothing else is syntax: FTS5's operators,
quotes left open, NUL, a megabyte of text or only punctuation are words or nothing, so every string is a valid
query that matches something or nothing.

Words are split like SQLite's `unicode61` tokenizer splits them (letters, digits and private-use characters
make a word, anything else separates words), so a "word" such as `e-mail` is the phrase `e mail`, as the index
holds it. The marks (`highlight`) follow the same rule, with case and diacritics folded as `remove_diacritics 2`
folds them; on PostgreSQL ('simple' configuration: case folded, diacritics kept) a mark may fall on a word that
only matched there with its accent, which is harmless.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

MAX_CHARS = 500  # of the query: past that it is cut (a search box is not a document)
MAX_TERMS = 12
MAX_TOKENS = 12  # in one phrase
MAX_TOKEN_CHARS = 100  # a longer "word" is base64 or noise: cut, it then matches what begins like it, or nothing
PREFIX_MIN = 3  # a shorter last word is matched whole: "a*" would read most of the index
QUOTES = {'"': '"', "\u201c": "\u201d", "\u201e": "\u201c", "\u00ab": "\u00bb", "\u201d": "\u201d"}
SNIPPET_CHARS = 160
_UNSTORABLE = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff]")  # no database takes NUL or a lone surrogate


def _word_char(ch: str) -> bool:
    category = unicodedata.category(ch)
    return category[0] in "LN" or category == "Co"


def tokens(text: str) -> list[tuple[int, int]]:
    """The (start, end) of each word of `text`, as unicode61 finds them."""
    out: list[tuple[int, int]] = []
    start = -1
    for i, ch in enumerate(text):
        if _word_char(ch):
            if start < 0:
                start = i
        elif start >= 0:
            out.append((start, i))
            start = -1
    if start >= 0:
        out.append((start, len(text)))
    return out


def fold(word: str) -> str:
    """A word as the index compares it: lower case, diacritics removed."""
    decomposed = unicodedata.normalize("NFKD", word.lower())
    return "".join(ch for ch in decomposed if not unicodedata.combining(ch))


@dataclass(frozen=True)
class Term:
    """One word or phrase of a query: its words in order, and whether the last one matches as a prefix."""

    words: tuple[str, ...]
    prefix: bool = False
    phrase: bool = False  # typed in quotes
    source: str = ""  # as typed: PostgreSQL reads it with its own parser too (`bob@example.com` is one lexeme there)

    def fts5(self) -> str:
        """The term as an FTS5 string: its words are letters and digits only, so quoting needs no escape."""
        return '"' + " ".join(self.words) + '"' + (" *" if self.prefix else "")

    def tsquery(self) -> str:
        """The term in to_tsquery's syntax: each word a quoted lexeme, phrases joined with <->."""
        lexemes = [f"'{w}'" for w in self.words]
        if self.prefix:
            lexemes[-1] += ":*"
        return " <-> ".join(lexemes)


@dataclass(frozen=True)
class TextQuery:
    raw: str
    terms: tuple[Term, ...]

    @property
    def searchable(self) -> bool:
        return bool(self.terms)


def _words(chunk: str) -> tuple[str, ...]:
    return tuple(chunk[s:e][:MAX_TOKEN_CHARS].lower() for s, e in tokens(chunk))[:MAX_TOKENS]


def _chunks(raw: str) -> list[tuple[str, bool]]:
    """The query cut into (text, quoted) pieces: a quote opens a phrase, its closing quote (or the end) ends it."""
    out: list[tuple[str, bool]] = []
    i, plain = 0, list[str]()
    while i < len(raw):
        ch = raw[i]
        if ch in QUOTES:
            end = raw.find(QUOTES[ch], i + 1)
            end = len(raw) if end < 0 else end
            out += [(w, False) for w in "".join(plain).split()] + [(raw[i + 1:end], True)]
            plain, i = [], end + 1
            continue
        plain.append(ch)
        i += 1
    return out + [(w, False) for w in "".join(plain).split()]


def parse(raw: str) -> TextQuery:
    """The query a person typed, as terms (see the module's docstring); never fails."""
    raw = _UNSTORABLE.sub(" ", raw[:MAX_CHARS])
    chunks = _chunks(raw)
    terms: list[Term] = []
    for n, (chunk, quoted) in enumerate(chunks):
        words = _words(chunk)
        if not words:
            continue
        last = n == len(chunks) - 1
        prefix = (last and not quoted and len(words) == 1 and len(words[0]) >= PREFIX_MIN
                  and bool(raw) and _word_char(raw[-1]))
        term = Term(words, prefix, quoted, chunk)
        if all(t.words != term.words or t.prefix != term.prefix for t in terms):
            terms.append(term)
    return TextQuery(raw, tuple(terms[:MAX_TERMS]))


def _matches(text: str, query: TextQuery) -> list[tuple[int, int]]:
    spans = tokens(text)
    folded = [fold(text[s:e]) for s, e in spans]
    marked: set[int] = set()
    for term in query.terms:
        want = [fold(w) for w in term.words]
        for i in range(len(folded) - len(want) + 1):
            window = folded[i:i + len(want)]
            last = window[-1].startswith(want[-1]) if term.prefix else window[-1] == want[-1]
            if window[:-1] == want[:-1] and last:
                marked.update(range(i, i + len(want)))
    return [spans[i] for i in sorted(marked)]


Segments = list[tuple[str, bool]]  # (text, marked): a template writes marked text inside <mark>, all escaped


def highlight(text: str, query: TextQuery, window: int | None = SNIPPET_CHARS) -> Segments:
    """`text` cut into segments with the query's matches marked. With `window`, only about that many characters
    around the first match, with an ellipsis where it was cut (a snippet)."""
    found = _matches(text, query)
    start, end = 0, len(text)
    if window is not None and len(text) > window:
        first = found[0][0] if found else 0
        start = max(0, min(first - window // 3, len(text) - window))
        end = start + window
        found = [(s, e) for s, e in found if s >= start and e <= end]
    out: Segments = [("…", False)] if start > 0 else []
    at = start
    for s, e in found:
        if s > at:
            out.append((text[at:s], False))
        out.append((text[s:e], True))
        at = e
    if at < end:
        out.append((text[at:end], False))
    if end < len(text):
        out.append(("…", False))
    return out
