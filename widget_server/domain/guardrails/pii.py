"""PII detectors over the `fold` view, for visitors writing in English, German, Spanish, French, Italian,
Portuguese and Dutch.

Each finds candidates with a linear-time RE2 pattern, then a well-kept library decides: Google's
libphonenumber rules (`phonenumbers`) for phone numbers, `python-stdnum` for IBANs and national numbers, a
checksum for cards. The entities (a policy's `pii.entities`; a hit's reason is `pii.<entity>`):

| entity | label | what | context word needed |
| --- | --- | --- | --- |
| `email` | `[email]` | an address | |
| `phone` | `[phone]` | international (`+49 30 1234567`), or national (US GB DE AT CH ES FR BE IT PT BR NL) | |
| `credit_card` | `[card]` | 13 to 19 digits passing Luhn | |
| `iban` | `[iban]` | any country's IBAN, its structure and mod-97 (upper or lower case, spaced or not) | |
| `us_ssn` | `[ssn]` | US social security number, `123-45-6789` | |
| `es_dni` | `[id]` | Spanish DNI `12345678Z` and NIE `X1234567L` (with its check letter) | |
| `it_codice_fiscale` | `[id]` | Italian codice fiscale of a person, `RSSMRA85T10A562S` | |
| `fr_nir` | `[id]` | French NIR (numéro de sécurité sociale), `1 85 05 78 006 084 36` | |
| `nl_bsn` | `[id]` | Dutch BSN (11-proof) | `bsn`, `burgerservicenummer`, `sofinummer` |
| `pt_nif` | `[id]` | Portuguese NIF | `nif`, `nipc`, `contribuinte` |
| `de_idnr` | `[id]` | German Steuer-ID (IdNr) | `steuer-id`, `steueridentifikationsnummer`, `idnr`, … |

`national_id` in a policy stands for all the national numbers (`us_ssn` and the six after it).

Phones: a cheap RE2 prefilter (digits in groups, with `+`, parentheses, spaces, dots, dashes or slashes) keeps
a candidate of 7 to 15 digits that is not a date (`2024-01-17`, `17.01.2024`); written in one piece it must start
with `+` or `0` (so `order 20240117` is not a phone). A candidate with `+` is a phone when libphonenumber finds it
possible for its country (leniency POSSIBLE: the plus and the country code already say "phone", and fictional
or newly opened ranges such as +1 555 are still someone's number). A national one must be valid in one of the
regions (leniency VALID: assigned ranges, the trunk prefix where the region needs one), since POSSIBLE, which
checks only lengths, takes prices and order numbers for phones.

Numbers that are 9 or 11 bare digits with a checksum (BSN, NIF, IdNr) are everywhere (order numbers, phone
numbers), so they count only after a context word, at most `LOOKBACK` characters before them. The streaming
filter keeps that much of what it released to read it.

`TAILS` say how far back a match still being written could start, for the streaming filter; `TAIL_CHARS` and
`RUNS` let it skip scans that could release nothing.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from functools import lru_cache

import phonenumbers
import re2
from stdnum import iban as std_iban
from stdnum.de import idnr
from stdnum.es import dni, nie
from stdnum.fr import nir
from stdnum.it import codicefiscale
from stdnum.nl import bsn
from stdnum.pt import nif

DIGIT = re.compile(r"\d")
NATIONAL_IDS = ("us_ssn", "es_dni", "it_codice_fiscale", "fr_nir", "nl_bsn", "pt_nif", "de_idnr")
ENTITIES = ("email", "phone", "credit_card", "iban", *NATIONAL_IDS)
ALIASES = {"national_id": NATIONAL_IDS}  # a name a policy may use for several entities
LABELS = {"email": "[email]", "phone": "[phone]", "credit_card": "[card]", "iban": "[iban]", "us_ssn": "[ssn]",
          **{e: "[id]" for e in NATIONAL_IDS[1:]}}
# National formats are tried in these regions (a number valid in any of them is a phone): where visitors
# writing the supported languages live.
REGIONS = ("US", "GB", "DE", "AT", "CH", "ES", "FR", "BE", "IT", "PT", "BR", "NL")
NEAR = 2  # how far back (in `fold` characters) a detector looks for a number that a match would go on
# libphonenumber takes up to 0.3 ms to turn a candidate down (it tries every region); past this many in one
# text (a long message of number-like groups) a candidate of a phone's shape is masked unchecked: more masked,
# never less, and the check stays within a few milliseconds.
MAX_PHONE_CHECKS = 32
LOOKBACK = 40  # how far (in `fold` characters) a context word may stand before the number it announces

EMAIL = re2.compile(r"[a-z0-9._%+-]+@[a-z0-9-]+(?:\.[a-z0-9-]+)*\.[a-z]{2,}")
CARD = re2.compile(r"\b(?:\d[ -]?){12,18}\d\b")
# Groups of digits (or a parenthesized area code) with at most one separator between; a leading + or (.
PHONE = re2.compile(r"\+?(?:\(\d{1,4}\)|\b\d+)(?:(?: ?[./-] ?| )?(?:\(\d{1,4}\)|\d+))*")
DATE = re.compile(r"\d{1,4}([./-])\d{1,2}\1\d{1,4}|\d{1,2}[./-]\d{4}")
IBAN = re2.compile(r"\b[a-z]{2}\d{2}(?: ?[a-z0-9]{4}){2,7}(?: ?[a-z0-9]{1,4})?\b")
SSN = re2.compile(r"\b(\d{3})[- ](\d{2})[- ](\d{4})\b")
DNI = re2.compile(r"\b(?:[xyz][ -]?\d{7}|\d{2}\.?\d{3}\.?\d{3})[ -]?[a-z]\b")
CF = re2.compile(r"\b[a-z]{6}[0-9lmnpqrstuv]{2}[a-z][0-9lmnpqrstuv]{2}[a-z][0-9lmnpqrstuv]{3}[a-z]\b")
NIR = re2.compile(r"\b[12] ?\d{2} ?\d{2} ?(?:\d{2}|2[ab]) ?\d{3} ?\d{3} ?\d{2}\b")
BSN = re2.compile(r"\b(?:\d[ .-]?){7,8}\d\b")
NIF = re2.compile(r"\b(?:\d[ .-]?){8}\d\b")
IDNR = re2.compile(r"\b(?:\d[ .-]?){10}\d\b")
CONTEXT = {
    "nl_bsn": re2.compile(r"\b(?:bsn|burger ?service ?nummer|burgerservicenr|sofi-?nummer|sofi-?nr)\b"),
    "pt_nif": re2.compile(r"\b(?:nif|n\.i\.f|nipc|contribuinte)\b"),
    "de_idnr": re2.compile(r"\b(?:steuer[ -]?id\w*|(?:steuerliche )?identifikationsnummer|id-?nr|tax ?id)\b"),
}

# What a match still being written can look like at the end of the text (each one's characters include
# every character its detector can match, so a match never starts before its tail).
_ID_DIGITS = r"[0-9][0-9 .-]*"
TAILS = {
    "email": r"[a-z0-9._%+-]+(?:@[a-z0-9.-]*)?",
    "phone": r"\+|\+?\(|\+?\(?[0-9][0-9 ().+/-]*",
    "credit_card": r"[0-9][0-9 -]*",
    "iban": r"[a-z]{1,2}|[a-z]{2}[0-9]{1,2}(?: ?[a-z0-9]){0,32} ?",
    "us_ssn": r"[0-9][0-9 -]*",
    "es_dni": r"[xyz][ -]?(?:[0-9][0-9. -]*[a-z]?)?|[0-9][0-9. -]*[a-z]?",
    "it_codice_fiscale": r"[a-z]{1,6}(?:[0-9lmnpqrstuv][a-z0-9]{0,9})?",
    "fr_nir": r"[12](?: ?[0-9ab]){0,14}[ .-]?",
    "nl_bsn": _ID_DIGITS,
    "pt_nif": _ID_DIGITS,
    "de_idnr": _ID_DIGITS,
}
_LOWER, _DIGITS = "abcdefghijklmnopqrstuvwxyz", "0123456789"
TAIL_CHARS = {  # every character each tail above can contain
    "email": frozenset(_LOWER + _DIGITS + "._%+-@"),
    "phone": frozenset(_DIGITS + " ().+/-"),
    "credit_card": frozenset(_DIGITS + " -"),
    "iban": frozenset(_LOWER + _DIGITS + " "),
    "us_ssn": frozenset(_DIGITS + " -"),
    "es_dni": frozenset(_LOWER + _DIGITS + " .-"),
    "it_codice_fiscale": frozenset(_LOWER + _DIGITS),
    "fr_nir": frozenset(_DIGITS + " ab.-"),
    "nl_bsn": frozenset(_DIGITS + " .-"),
    "pt_nif": frozenset(_DIGITS + " .-"),
    "de_idnr": frozenset(_DIGITS + " .-"),
}

# A held tail that one of these matches whole is still a possible match in progress after any more of the
# characters given (each run is a case of its entity's tail above): the streaming filter, holding such a tail,
# has nothing to release until another character comes, and need not look again before.
_DIGIT_RUN = (re.compile(_ID_DIGITS), frozenset(_DIGITS + " .-"))
RUNS = {
    "email": ((re.compile(r"[a-z0-9._%+-]+"), frozenset(_LOWER + _DIGITS + "._%+-")),
              (re.compile(r"[a-z0-9._%+-]+@[a-z0-9.-]*"), frozenset(_LOWER + _DIGITS + ".-"))),
    "phone": ((re.compile(r"\+?\(?[0-9][0-9 ().+/-]*"), frozenset(_DIGITS + " ().+/-")),),
    "credit_card": ((re.compile(r"[0-9][0-9 -]*"), frozenset(_DIGITS + " -")),),
    "us_ssn": ((re.compile(r"[0-9][0-9 -]*"), frozenset(_DIGITS + " -")),),
    "es_dni": (_DIGIT_RUN,),
    "nl_bsn": (_DIGIT_RUN,),
    "pt_nif": (_DIGIT_RUN,),
    "de_idnr": (_DIGIT_RUN,),
}
CONTEXT_ENTITIES = frozenset(CONTEXT)


@dataclass(frozen=True)
class Hit:
    entity: str
    start: int
    end: int


def expand(names: Iterable[str]) -> frozenset[str]:
    """The entities a policy's list names (an alias such as `national_id` stands for several)."""
    return frozenset(e for name in names for e in ALIASES.get(name, (name,)))


def luhn(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch)
        if i % 2:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def iban_ok(compact: str) -> bool:
    """An IBAN in its compact form: the country's length and structure, and mod-97 (python-stdnum)."""
    return std_iban.is_valid(compact)


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


# Each region's trunk prefix ("0" in most of Europe), or a prefix no number has where it has none.
_NATIONAL = phonenumbers.PhoneNumberFormat.NATIONAL
_TRUNK = {r: getattr(phonenumbers.PhoneMetadata.metadata_for_region(r), "national_prefix", None) or "-"
          for r in REGIONS}


@lru_cache(maxsize=4096)
def phone_ok(candidate: str) -> bool:
    """Whether libphonenumber takes a candidate (as written, `fold` view) for a phone number."""
    if candidate.startswith("+"):
        try:
            return phonenumbers.is_possible_number(phonenumbers.parse(candidate, None))
        except phonenumbers.NumberParseException:
            return False
    digits = _digits(candidate)
    for region in REGIONS:
        try:
            number = phonenumbers.parse(candidate, region)
        except phonenumbers.NumberParseException:
            continue
        if not phonenumbers.is_valid_number(number):
            continue
        # Valid for the region. Written with the region's trunk prefix, it is a phone; without, only where the
        # region writes its numbers without one (as leniency VALID has it: "123 456 789" is a French number
        # only as "01 23 45 67 89"), i.e. when the national format has the digits as written.
        if digits.startswith(_TRUNK[region]) or digits == _digits(phonenumbers.format_number(number, _NATIONAL)):
            return True
    return False


def _phones(text: str) -> Iterator[tuple[int, int]]:
    checked = 0
    for m in PHONE.finditer(text):
        found, end = m.group(), m.end()
        if end < len(text) and text[end].isalnum():
            continue  # runs on into a word or a longer number
        digits = _digits(found)
        if not 7 <= len(digits) <= 15 or DATE.fullmatch(found):
            continue
        if found.isdigit() and not found.startswith("0"):
            continue  # one piece of digits: a phone only with its trunk or international prefix
        checked += 1
        if checked > MAX_PHONE_CHECKS or phone_ok(found):
            yield m.start(), end


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


def _compact(text: str) -> str:
    return "".join(c for c in text if c.isalnum()).upper()


def _in_longer_number(text: str, start: int, end: int) -> bool:
    """Whether digit groups go on around a match (part of a longer number, like a card failing Luhn)."""
    before = text[max(0, start - NEAR):start].rstrip(" .-/")
    after = text[end:end + NEAR].lstrip(" .-")  # (characters that every such entity's tail holds)
    return before[-1:].isdigit() or after[:1].isdigit()


def _after_number(text: str, start: int) -> bool:
    """Whether a match follows a group of digits ("+31 6 12345678 z" is a phone, not a DNI)."""
    return text[max(0, start - NEAR):start].rstrip(" .-/")[-1:].isdigit()


def _checked(pattern: re2._Regexp, valid: Callable[[str], bool],
             digits_first: bool = True) -> Callable[[str], Iterator[tuple[int, int]]]:
    """Matches of a pattern that pass their check and do not go on a number: not inside a longer one, nor
    (when they start with digits) right after one."""
    def finder(text: str) -> Iterator[tuple[int, int]]:
        for m in pattern.finditer(text):
            start, end = m.start(), m.end()
            if text[end - 1].isdigit() and _in_longer_number(text, start, end) or (
                    digits_first and _after_number(text, start)):
                continue
            if valid(_compact(m.group())):
                yield start, end
    return finder


def _dni_or_nie(compact: str) -> bool:
    return nie.is_valid(compact) if compact[0] in "XYZ" else dni.is_valid(compact)


def _after_context(entity: str, pattern: re2._Regexp,
                   valid: Callable[[str], bool]) -> Callable[[str], Iterator[tuple[int, int]]]:
    context = CONTEXT[entity]

    def finder(text: str) -> Iterator[tuple[int, int]]:
        for m in pattern.finditer(text):
            start, end = m.start(), m.end()
            if _in_longer_number(text, start, end):
                continue
            if context.search(text[max(0, start - LOOKBACK):start]) is not None and valid(_compact(m.group())):
                yield start, end
    return finder


FINDERS: dict[str, Callable[[str], Iterator[tuple[int, int]]]] = {
    "email": _emails, "credit_card": _cards, "iban": _ibans, "us_ssn": _ssns, "phone": _phones,
    "es_dni": _checked(DNI, _dni_or_nie),
    "it_codice_fiscale": _checked(CF, codicefiscale.is_valid, digits_first=False),
    "fr_nir": _checked(NIR, nir.is_valid),
    "nl_bsn": _after_context("nl_bsn", BSN, bsn.is_valid),
    "pt_nif": _after_context("pt_nif", NIF, nif.is_valid),
    "de_idnr": _after_context("de_idnr", IDNR, idnr.is_valid),
}
# Which entity a span is when several take it: an IBAN first (it starts with letters), a NIR (15 digits from 1 or
# 2) before a card (no 15-digit card starts so), a card before an id, the checked numbers before a phone.
ORDER = ("email", "iban", "fr_nir", "credit_card", "it_codice_fiscale", "es_dni", "us_ssn", "de_idnr", "nl_bsn",
         "pt_nif", "phone")
assert set(ORDER) == set(ENTITIES) == set(FINDERS) == set(LABELS) == set(TAILS) == set(TAIL_CHARS)


def find(text: str, entities: frozenset[str], first: int = 0) -> list[Hit]:
    """Non-overlapping PII hits in a `fold` view, in order; the text before `first` is only read (its hits may
    be left out)."""
    hits: list[Hit] = []
    has_at, has_digit = "@" in text[first:], DIGIT.search(text, first) is not None
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
