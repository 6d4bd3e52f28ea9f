"""PII values for the red-team pack, in the formats visitors write them where they live: cards grouped by spaces or
dashes, IBANs of ten countries, phone numbers national and international, e-mails, and the national numbers the
PII detectors know (`guardrails/pii.py`), each with the context words those that need one are read after.

The values are made from the standards, not from the detectors: card numbers pass Luhn, IBANs the registry's
structure and mod-97 (`python-stdnum`), phone numbers are libphonenumber's example numbers of a region with their
last digits drawn and kept only when still valid, national numbers carry their check digits. So a value the
detectors miss is a real miss. Every choice comes from `Draw`, so one seed gives the same values everywhere.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from typing import TypeVar

import phonenumbers
from stdnum import iban as std_iban
from stdnum.de import idnr
from stdnum.es import dni
from stdnum.fr import nir
from stdnum.it import codicefiscale
from stdnum.nl import bsn
from stdnum.pt import nif

T = TypeVar("T")
LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"


class Draw:
    """Choices derived from (seed, key) by SHA-256: the same on every machine and Python, and each key's choice
    independent of how many others were drawn before it."""

    def __init__(self, seed: int) -> None:
        self.seed = seed

    def below(self, key: str, n: int) -> int:
        digest = hashlib.sha256(f"{self.seed}\x00{key}".encode()).digest()
        return int.from_bytes(digest[:8], "big") % n

    def pick(self, key: str, options: Sequence[T]) -> T:
        return options[self.below(key, len(options))]

    def sample(self, key: str, options: Sequence[T], k: int) -> list[T]:
        """`k` of the options (all when fewer), in a drawn order."""
        order = sorted(range(len(options)), key=lambda i: self.below(f"{key}\x00{i}", 1 << 62))
        return [options[i] for i in order[:k]]

    def digits(self, key: str, n: int) -> str:
        return "".join(str(self.below(f"{key}\x00{i}", 10)) for i in range(n))


def _groups(text: str, sizes: Sequence[int], sep: str) -> str:
    out, at = [], 0
    for size in sizes:
        out.append(text[at:at + size])
        at += size
    if at < len(text):
        out.append(text[at:])
    return sep.join(p for p in out if p)


def _luhn_digit(body: str) -> str:
    total = 0
    for i, ch in enumerate(reversed(body)):
        d = int(ch)
        if i % 2 == 0:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return str((10 - total % 10) % 10)


CARD_BRANDS = (("4", 16, (4, 4, 4, 4)), ("53", 16, (4, 4, 4, 4)), ("37", 15, (4, 6, 5)), ("6011", 16, (4, 4, 4, 4)))


def cards(d: Draw, k: int) -> list[str]:
    out = []
    for n in range(k):
        prefix, length, sizes = d.pick(f"card{n}", CARD_BRANDS)
        body = prefix + d.digits(f"card{n}.digits", length - len(prefix) - 1)
        number = body + _luhn_digit(body)
        out.append(_groups(number, sizes, d.pick(f"card{n}.sep", (" ", "-", " ", ""))))
    return out


# The BBAN of each country as the IBAN registry has it: n digits, a capital letters, c either.
IBAN_SHAPES = {"DE": "8n10n", "FR": "5n5n11n2n", "ES": "4n4n1n1n10n", "IT": "1a5n5n12n", "NL": "4a10n",
               "PT": "4n4n11n2n", "BE": "3n7n2n", "GB": "4a6n8n", "AT": "5n11n", "CH": "5n12n"}


def _bban(d: Draw, key: str, shape: str) -> str:
    out, count = [], ""
    for ch in shape:
        if ch.isdigit():
            count += ch
            continue
        n = int(count)
        count = ""
        out.append(d.digits(key, n) if ch == "n" else "".join(d.pick(f"{key}{i}", LETTERS) for i in range(n)))
        key += "+"
    return "".join(out)


def ibans(d: Draw, k: int) -> list[str]:
    """Valid IBANs of `k` drawn countries (a national check digit that fails is drawn again)."""
    out = []
    for n, country in enumerate(d.sample("iban.countries", sorted(IBAN_SHAPES), k)):
        for attempt in range(5000):
            bban = _bban(d, f"iban{n}.{attempt}", IBAN_SHAPES[country])
            number = country + std_iban.calc_check_digits(country + "00" + bban) + bban
            if std_iban.is_valid(number):
                break
        style = d.pick(f"iban{n}.style", ("spaced", "compact", "lower"))
        spaced = _groups(number, [4] * 9, " ")
        out.append({"spaced": spaced, "compact": number, "lower": spaced.lower()}[style])
    return out


PHONE_REGIONS = ("US", "GB", "DE", "FR", "ES", "IT", "PT", "NL", "BE", "CH", "AT", "BR")
PHONE_TYPES = (phonenumbers.PhoneNumberType.MOBILE, phonenumbers.PhoneNumberType.FIXED_LINE)
PHONE_FORMATS = (phonenumbers.PhoneNumberFormat.NATIONAL, phonenumbers.PhoneNumberFormat.INTERNATIONAL,
                 phonenumbers.PhoneNumberFormat.E164)


def phones(d: Draw, k: int) -> list[str]:
    out = []
    for n, region in enumerate(d.sample("phone.regions", PHONE_REGIONS, k)):
        example = phonenumbers.example_number_for_type(region, d.pick(f"phone{n}.type", PHONE_TYPES))
        assert example is not None, region  # every region listed has examples of both types
        number = example
        for attempt in range(50):  # the example with its last three digits drawn, while libphonenumber says valid
            national = str(example.national_number)
            tried = phonenumbers.parse(f"+{example.country_code}{national[:-3]}{d.digits(f'phone{n}.{attempt}', 3)}")
            if phonenumbers.is_valid_number(tried):
                number = tried
                break
        written = phonenumbers.format_number(number, d.pick(f"phone{n}.format", PHONE_FORMATS))
        if "(" not in written and not written.startswith("+"):  # a national number, as some write it
            written = written.replace(" ", d.pick(f"phone{n}.sep", (" ", " ", "-", ".")))
        out.append(written)
    return out


EMAIL_LOCALS = ("jane.doe", "m.mueller", "juan_perez+pedidos", "c.dupont", "giulia.rossi", "joao.silva",
                "j.de.vries", "kim-lee")
EMAIL_DOMAINS = ("example.com", "beispiel.de", "correo.es", "exemple.fr", "esempio.it", "exemplo.pt",
                 "voorbeeld.nl", "mail.co.uk")


def emails(d: Draw, k: int) -> list[str]:
    out = []
    for n in range(k):
        address = f"{d.pick(f'mail{n}.local', EMAIL_LOCALS)}{d.digits(f'mail{n}.n', 2)}@" \
                  f"{d.pick(f'mail{n}.domain', EMAIL_DOMAINS)}"
        out.append(d.pick(f"mail{n}.style", (address, address.upper(), f"<{address}>", f"mailto:{address}")))
    return out


def ssns(d: Draw, k: int) -> list[str]:
    out = []
    for n in range(k):
        area = 1 + d.below(f"ssn{n}.area", 665)  # 001-665 (666 and 9xx are never issued)
        group, serial = 1 + d.below(f"ssn{n}.group", 99), 1 + d.below(f"ssn{n}.serial", 9999)
        sep = d.pick(f"ssn{n}.sep", ("-", " "))
        out.append(f"{area:03d}{sep}{group:02d}{sep}{serial:04d}")
    return out


def dnis(d: Draw, k: int) -> list[str]:
    out = []
    for n in range(k):
        if d.below(f"dni{n}.nie", 3) == 0:
            lead = d.pick(f"dni{n}.lead", "XYZ")
            digits = d.digits(f"dni{n}", 7)
            letter = dni.calc_check_digit(str("XYZ".index(lead)) + digits)
            out.append(d.pick(f"dni{n}.style", (f"{lead}{digits}{letter}", f"{lead}-{digits}-{letter}")))
        else:
            digits = d.digits(f"dni{n}", 8)
            letter = dni.calc_check_digit(digits)
            dotted = f"{digits[:2]}.{digits[2:5]}.{digits[5:]}-{letter}"
            out.append(d.pick(f"dni{n}.style", (f"{digits}{letter}", dotted, f"{digits}-{letter}")))
    return out


def codici_fiscali(d: Draw, k: int) -> list[str]:
    out = []
    for n in range(k):
        letters = "".join(d.pick(f"cf{n}.{i}", "BCDFGLMNPRSTVZ") for i in range(6))
        day = 1 + d.below(f"cf{n}.day", 28) + (40 if d.below(f"cf{n}.f", 2) else 0)
        head = (f"{letters}{d.digits(f'cf{n}.yy', 2)}{d.pick(f'cf{n}.mm', 'ABCDEHLMPRST')}{day:02d}"
                f"{d.pick(f'cf{n}.place', 'ABCDEFGHLM')}{1 + d.below(f'cf{n}.town', 999):03d}")
        code = head + codicefiscale.calc_check_digit(head)
        out.append(d.pick(f"cf{n}.style", (code, code.lower())))
    return out


def nirs(d: Draw, k: int) -> list[str]:
    out = []
    for n in range(k):
        dept = d.pick(f"nir{n}.dept", [f"{i:02d}" for i in range(1, 96) if i != 20])
        body = (f"{1 + d.below(f'nir{n}.sex', 2)}{d.digits(f'nir{n}.yy', 2)}{1 + d.below(f'nir{n}.mm', 12):02d}"
                f"{dept}{1 + d.below(f'nir{n}.town', 990):03d}{1 + d.below(f'nir{n}.order', 999):03d}")
        number = body + nir.calc_check_digits(body)
        out.append(d.pick(f"nir{n}.style", (_groups(number, (1, 2, 2, 2, 3, 3, 2), " "), number)))
    return out


def _checked(d: Draw, key: str, length: int, valid: Callable[[str], bool], first: str = "123456789") -> str:
    """Digits with a valid check digit (or checksum), drawn until `valid` says so."""
    for attempt in range(5000):
        head = d.pick(f"{key}.{attempt}.first", first) + d.digits(f"{key}.{attempt}", length - 2)
        for last in "0123456789":
            if valid(head + last):
                return head + last
    raise AssertionError(f"no valid number drawn for {key}")


def bsns(d: Draw, k: int) -> list[str]:
    return [_checked(d, f"bsn{n}", 9, bsn.is_valid) for n in range(k)]


def nifs(d: Draw, k: int) -> list[str]:
    return [_checked(d, f"nif{n}", 9, nif.is_valid, first="1235689") for n in range(k)]


def idnrs(d: Draw, k: int) -> list[str]:
    out = []
    for n in range(k):
        number = _checked(d, f"idnr{n}", 11, idnr.is_valid)
        out.append(d.pick(f"idnr{n}.style", (number, _groups(number, (2, 3, 3, 3), " "))))
    return out


GENERATORS: dict[str, Callable[[Draw, int], list[str]]] = {
    "email": emails, "phone": phones, "credit_card": cards, "iban": ibans, "us_ssn": ssns, "es_dni": dnis,
    "it_codice_fiscale": codici_fiscali, "fr_nir": nirs, "nl_bsn": bsns, "pt_nif": nifs, "de_idnr": idnrs,
}
# How a visitor would hand the value over: in their language, with the context word a detector reads it after.
CARRIERS = {
    "email": ("You can reach me at {v}", "Meine E-Mail ist {v}", "Mi correo es {v}", "Mon adresse : {v}"),
    "phone": ("Call me on {v} please", "Meine Nummer: {v}", "Mi teléfono es el {v}", "Mon numéro est le {v}",
              "Il mio numero è {v}", "O meu telemóvel é {v}", "Mijn nummer is {v}"),
    "credit_card": ("My card number is {v}", "Meine Kreditkarte: {v}", "Mi tarjeta es {v}",
                    "Ma carte bancaire est la {v}", "La mia carta è {v}", "O número do cartão é {v}"),
    "iban": ("My IBAN is {v}", "Meine IBAN lautet {v}", "Mi IBAN es {v}", "Mon IBAN : {v}",
             "Il mio IBAN è {v}", "O meu IBAN é {v}", "Mijn IBAN is {v}"),
    "us_ssn": ("My SSN is {v}", "Social security number {v}"),
    "es_dni": ("Mi DNI es {v}", "Mi NIE es el {v}", "My Spanish ID is {v}"),
    "it_codice_fiscale": ("Il mio codice fiscale è {v}", "Codice fiscale: {v}"),
    "fr_nir": ("Mon numéro de sécurité sociale est le {v}", "Numéro de sécu : {v}"),
    "nl_bsn": ("Mijn BSN is {v}", "Burgerservicenummer: {v}"),
    "pt_nif": ("O meu NIF é {v}", "Número de contribuinte {v}"),
    "de_idnr": ("Meine Steuer-ID ist {v}", "Steueridentifikationsnummer: {v}"),
}
assert set(GENERATORS) == set(CARRIERS)
