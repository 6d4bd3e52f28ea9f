"""PII in the local formats of the supported languages (EN, DE, ES, FR, IT, PT, NL): phones by libphonenumber,
IBANs and national numbers by python-stdnum, their positions in the original text, the policy names, and the
strict streaming filter releasing not one byte of any of them however the reply is split (hypothesis)."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.test_guardrails import CUTS, FILLER, assert_shortcuts_change_nothing, chunked, stream
from widget_server.domain.guardrails import CompiledPolicy, StrictFilter, check_input, compile_policy, parse_policy, pii
from widget_server.domain.guardrails.normalize import fold
from widget_server.domain.guardrails.scan import scan
from widget_server.errors import PolicyError

ALL = ["email", "phone", "credit_card", "iban", "national_id"]
DOC: dict[str, Any] = {
    "version": 1,
    "blocked_terms": [{"id": "rival", "terms": ["rivalco"], "match": "word", "action": "refuse"}],
    "pii": {"entities": ALL, "action": "mask", "applies_to": ["input", "output"]},
}
POLICY = compile_policy(parse_policy(DOC))


def policy(**changes: Any) -> CompiledPolicy:
    return compile_policy(parse_policy({**DOC, **changes}))


# (message, the PII in it as written, its label, its entity)
LOCAL = [
    # English
    ("call me on +1 (415) 555-0134 please", "+1 (415) 555-0134", "phone"),
    ("my number is (415) 555-0134", "(415) 555-0134", "phone"),
    ("ring 020 7946 0958 after six", "020 7946 0958", "phone"),
    ("or +44 20 7946 0958", "+44 20 7946 0958", "phone"),
    ("ssn 536-90-4399 thanks", "536-90-4399", "us_ssn"),
    ("GB IBAN GB82 WEST 1234 5698 7654 32.", "GB82 WEST 1234 5698 7654 32", "iban"),
    # German
    ("Meine Nummer ist 0171 2345678, danke", "0171 2345678", "phone"),
    ("Meine Festnetznummer: +49 30 1234567", "+49 30 1234567", "phone"),
    ("Tel. 030/1234567 oder", "030/1234567", "phone"),
    ("Büro +49 (0)30 1234567", "+49 (0)30 1234567", "phone"),
    ("Österreich: 0664 1234567", "0664 1234567", "phone"),
    ("Zürich 044 668 18 00", "044 668 18 00", "phone"),
    ("Meine IBAN: DE89 3704 0044 0532 0130 00.", "DE89 3704 0044 0532 0130 00", "iban"),
    ("iban de89370400440532013000 bitte", "de89370400440532013000", "iban"),
    ("AT61 1904 3002 3457 3201", "AT61 1904 3002 3457 3201", "iban"),
    ("Steuer-ID: 36574261809", "36574261809", "de_idnr"),
    ("meine steuerliche Identifikationsnummer ist 65 929 970 489", "65 929 970 489", "de_idnr"),
    # Spanish
    ("mi móvil es +34 612 34 56 78", "+34 612 34 56 78", "phone"),
    ("llámame al 612 34 56 78", "612 34 56 78", "phone"),
    ("mi DNI es 12345678Z.", "12345678Z", "es_dni"),
    ("DNI 12.345.678-Z", "12.345.678-Z", "es_dni"),
    ("tengo NIE X1234567L", "X1234567L", "es_dni"),
    ("NIE y-1234567-x", "y-1234567-x", "es_dni"),
    ("cuenta ES91 2100 0418 4502 0005 1332", "ES91 2100 0418 4502 0005 1332", "iban"),
    # French
    ("appelez-moi au 06 12 34 56 78", "06 12 34 56 78", "phone"),
    ("ou au 06.12.34.56.78", "06.12.34.56.78", "phone"),
    ("Belgique : 0470 12 34 56", "0470 12 34 56", "phone"),
    ("mon numéro de sécu : 1 85 05 78 006 084 91", "1 85 05 78 006 084 91", "fr_nir"),
    ("NIR 185057800608491", "185057800608491", "fr_nir"),
    ("né en Corse : 1 85 05 2A 006 084 35", "1 85 05 2A 006 084 35", "fr_nir"),
    ("IBAN FR14 2004 1010 0505 0001 3M02 606", "FR14 2004 1010 0505 0001 3M02 606", "iban"),
    # Italian
    ("il mio cellulare è 333 123 4567", "333 123 4567", "phone"),
    ("chiamami al +39 333 123 4567", "+39 333 123 4567", "phone"),
    ("codice fiscale RSSMRA85T10A562S", "RSSMRA85T10A562S", "it_codice_fiscale"),
    ("cf: rssmra85t10a562s grazie", "rssmra85t10a562s", "it_codice_fiscale"),
    ("IBAN IT60 X054 2811 1010 0000 0123 456", "IT60 X054 2811 1010 0000 0123 456", "iban"),
    # Portuguese (Portugal and Brazil)
    ("o meu telemóvel é 912 345 678", "912 345 678", "phone"),
    ("ligue +351 912 345 678", "+351 912 345 678", "phone"),
    ("meu celular é (11) 91234-5678", "(11) 91234-5678", "phone"),
    ("ou +55 11 91234-5678", "+55 11 91234-5678", "phone"),
    ("NIF 123456789", "123456789", "pt_nif"),
    ("número de contribuinte: 512 345 678", "512 345 678", "pt_nif"),
    ("IBAN PT50 0002 0123 1234 5678 9015 4", "PT50 0002 0123 1234 5678 9015 4", "iban"),
    # Dutch
    ("bel me op 06-12345678", "06-12345678", "phone"),
    ("of +31 6 12345678", "+31 6 12345678", "phone"),
    ("mijn BSN is 123456782", "123456782", "nl_bsn"),
    ("burgerservicenummer: 1234.56.782", "1234.56.782", "nl_bsn"),
    ("rekening NL91 ABNA 0417 1643 00", "NL91 ABNA 0417 1643 00", "iban"),
]


@pytest.mark.parametrize(("text", "value", "entity"), LOCAL)
def test_each_local_format_is_masked(text: str, value: str, entity: str) -> None:
    decision = check_input(POLICY, text)
    assert (decision.action, decision.reason) == ("mask", f"pii.{entity}")
    assert decision.text == text.replace(value, pii.LABELS[entity])


@pytest.mark.parametrize(("text", "value", "entity"), LOCAL)
def test_a_hit_keeps_its_place_in_the_original_text(text: str, value: str, entity: str) -> None:
    # Full-width digits, a ligature (two `fold` characters for one) and invisible characters before and
    # inside shift the views; the hit is still the span of the value as written.
    for before in ("", "ﬁne ﬁ\u200b\u200b ", "Ｎｏ． "):
        written = before + text
        hits = [f for f in scan(POLICY, "input", written) if f.reason.startswith("pii.")]
        assert [(f.reason, written[f.start:f.end]) for f in hits] == [(f"pii.{entity}", value)]
    inside = value[:2] + "\u200b" + value[2:]
    written = text.replace(value, inside)
    (found,) = scan(POLICY, "input", written)
    assert written[found.start:found.end] == inside


def test_check_input_masks_in_full_width_digits_too() -> None:
    assert check_input(POLICY, "Nummer ０１７１ ２３４５６７８").text == "Nummer [phone]"


NOT_PII = [
    "order 20240117", "the order 20240117 is late", "it costs 12.99", "12,99 €", "on 2024-01-17", "am 17.01.2024",
    "le 17/01/2024", "at 10:30", "10:30-11:45", "postcode 10115", "75001 Paris", "28013 Madrid", "1012 AB Amsterdam",
    "order 4431-2231", "ref 123 456 789", "123456789", "36574261809", "call 123", "page 1234 5678",
    "card 4111 1111 1111 1112", "iban DE89370400440532013001", "dni 12345678A", "cf RSSMRA85T10A562X",
    "1 85 05 78 006 084 92", "bsn 123456789", "nif 123456780", "steuer-id 36574261808",
    "123456782 is my bsn",  # a context word after the number does not count
    "bsn: I will send it later, after lunch, maybe tomorrow 123456782",  # too far away
    "version 1.2.3.4.5.6.7", "1,234,567 visitors", "room 12345678b",
]


@pytest.mark.parametrize("text", NOT_PII)
def test_what_only_looks_like_pii_is_not_masked(text: str) -> None:
    decision = check_input(POLICY, text)
    assert (decision.action, decision.text) == ("allow", text), decision


def test_an_on_topic_message_with_pii_is_masked_and_still_allowed() -> None:
    doc = {**DOC, "topics": {"allowed": [{"id": "orders", "examples": [
        "where is my order", "my parcel has not arrived", "when will my package be delivered",
        "track my delivery"]}], "off_topic": "refuse"}}
    cp = compile_policy(parse_policy(doc))
    decision = check_input(cp, "where is my order? call me on 0171 2345678")
    assert (decision.action, decision.reason, decision.text) == (
        "mask", "pii.phone", "where is my order? call me on [phone]")
    assert check_input(cp, "tell me a poem about the sea").action == "refuse"  # the topics still apply


SHOP_TOPICS = {"allowed": [
    {"id": "orders", "examples": ["where is my order", "my parcel has not arrived", "when will my package be delivered",
                                  "track my delivery"]},
    {"id": "account", "examples": ["how do I reset my password", "I can't log in to my account",
                                   "change the email on my account", "close my account"]},
    {"id": "payments", "examples": ["my payment was declined", "I was charged twice", "can I pay by bank transfer",
                                    "get a refund"]}], "off_topic": "refuse"}


@pytest.mark.parametrize(("text", "served"), [
    ("the sms with my code never comes, my number is +44 7700 900123", "the sms with my code never comes, my number "
                                                                        "is [phone]"),
    ("update my card to 4242 4242 4242 4242, the old one expired", "update my card to [card], the old one expired"),
    ("card 4242 4242 4242 4242 expires next month, what do I do", "card [card] expires next month, what do I do"),
])
def test_who_gives_their_own_data_is_read_as_dealing_with_the_business(text: str, served: str) -> None:
    # Each of these is a little under the off-topic threshold read without its PII, and over it less PII_LENIENCY.
    cp = compile_policy(parse_policy({**DOC, "topics": SHOP_TOPICS}))
    decision = check_input(cp, text)
    assert (decision.action, decision.text) == ("mask", served), decision.reason


@pytest.mark.parametrize("text", [
    "who won the football game last night, mail me at ada@example.com",
    "write me a poem about the sea, my number is +44 7700 900123",
    "what's the weather in paris tomorrow? ada@example.com",
])
def test_an_off_topic_message_is_refused_whatever_data_it_carries(text: str) -> None:
    cp = compile_policy(parse_policy({**DOC, "topics": SHOP_TOPICS}))
    decision = check_input(cp, text)
    assert (decision.action, decision.reason) == ("refuse", "topic.off_topic")
    assert decision.shown is not None and ("[email]" in decision.shown or "[phone]" in decision.shown)  # stored masked


def test_the_policy_names_every_entity_and_the_old_lists_keep_working() -> None:
    for entities in (["email", "phone", "credit_card", "iban", "us_ssn"], [*pii.ENTITIES], ["national_id"]):
        assert parse_policy({"version": 1, "pii": {"entities": entities}}).pii is not None
    assert compile_policy(parse_policy({"version": 1, "pii": {"entities": ["national_id"]}})).pii_entities == \
        frozenset(pii.NATIONAL_IDS)
    old = compile_policy(parse_policy({"version": 1, "pii": {"entities": ["email", "us_ssn"]}}))
    assert old.pii_entities == {"email", "us_ssn"}
    with pytest.raises(PolicyError) as caught:
        parse_policy({"version": 1, "pii": {"entities": ["es_passport"]}})
    assert caught.value.details["errors"][0]["field"] == "pii.entities.0"


def test_only_the_entities_a_policy_names_are_masked() -> None:
    cp = policy(pii={"entities": ["es_dni"]})
    assert check_input(cp, "DNI 12345678Z, tel 0171 2345678").text == "DNI [id], tel 0171 2345678"


def test_a_context_word_counts_before_the_number_within_the_lookback() -> None:
    near = "mijn bsn: " + "x" * (pii.LOOKBACK - 10) + " 123456782"
    assert check_input(POLICY, near).action == "mask"
    far = "mijn bsn: " + "x" * pii.LOOKBACK + " 123456782"
    assert check_input(POLICY, far).action == "allow"


def test_phone_candidates_are_checked_once() -> None:
    pii.phone_ok.cache_clear()
    check_input(POLICY, "call 0171 2345678")
    check_input(POLICY, "again 0171 2345678")
    assert pii.phone_ok.cache_info().hits >= 1


# -- the stream: not one byte of any of them, however the reply is split

STREAMED = {value: pii.LABELS[entity] for _, value, entity in LOCAL if entity not in pii.CONTEXT_ENTITIES}
# A context word and its number: the word arrives (and is released) before the number does.
WITH_CONTEXT = [("bsn", "123456782"), ("BSN:", "1234.56.782"), ("NIF", "512 345 678"), ("Steuer-ID", "65 929 970 489"),
                ("burgerservicenummer\u200b\u200b", "123456782"), ("contribuinte n.º", "123456789")]


@settings(max_examples=400, deadline=None)
@given(before=FILLER, value=st.sampled_from(sorted(STREAMED)), after=FILLER, cuts=CUTS, one_by_one=st.booleans())
def test_local_formats_are_masked_whatever_the_chunking(before: str, value: str, after: str, cuts: list[int],
                                                         one_by_one: bool) -> None:
    text = before + " " + value + " " + after
    received, decision = stream(POLICY, list(text) if one_by_one else chunked(text, cuts))
    assert decision is None
    assert received == before + " " + STREAMED[value] + " " + after


@settings(max_examples=300, deadline=None)
@given(before=FILLER, value=st.sampled_from(WITH_CONTEXT), gap=st.sampled_from(["", " is", ": al", "\u200b" * 60]),
       after=FILLER, cuts=CUTS, one_by_one=st.booleans())
def test_a_context_word_released_before_its_number_still_counts(before: str, value: tuple[str, str], gap: str,
                                                                 after: str, cuts: list[int], one_by_one: bool) -> None:
    word, number = value
    text = before + " " + word + gap + " " + number + " " + after
    received, decision = stream(POLICY, list(text) if one_by_one else chunked(text, cuts))
    assert decision is None
    assert received == before + " " + word + gap + " [id] " + after
    assert check_input(POLICY, text).text == received  # the stream and the whole text agree


# Text at the new formats' edges: digits, letters and separators that may or may not become one.
EDGY = st.lists(st.sampled_from([
    "1", "0", "12", "0171", " ", "-", ".", "/", "(", ")", "+", "+49", "(11)", "z", "x", "a", "2a", "rssmra",
    "85t10", "a562s", "12345678", "12345678Z", "X1234567L", "bsn ", "nif ", "steuer-id ", "123456782",
    "06 12 34 56 78", " 2345678", "de89 3704", " 0044 0532 0130 00", "1 85 05 78 006 084 91", "\u200b", "é",
    ",", "!", "\n", "rivalco", "bob@x.com", "/1", "-5", ".7", "+34 612 34 56 78", "(11) 91234-5678",
]), max_size=20).map("".join)
VARIANTS = [POLICY, policy(pii={"entities": ["es_dni", "it_codice_fiscale", "fr_nir"]}),
            policy(pii={"entities": ["nl_bsn", "pt_nif", "de_idnr"]}), policy(pii={"entities": ["phone"]})]


@settings(max_examples=300, deadline=None)
@given(text=EDGY, cuts=CUTS, one_by_one=st.booleans())
def test_the_shortcuts_release_what_a_scan_of_every_delta_would(text: str, cuts: list[int],
                                                                 one_by_one: bool) -> None:
    assert_shortcuts_change_nothing(VARIANTS, list(text) if one_by_one else chunked(text, cuts))


@settings(max_examples=300, deadline=None)
@given(text=EDGY, cuts=CUTS, one_by_one=st.booleans())
def test_no_byte_of_what_the_whole_text_masks_is_released(text: str, cuts: list[int], one_by_one: bool) -> None:
    """Whatever the chunking, the stream sends exactly what checking the whole reply shows."""
    for cp in VARIANTS:
        whole = check_input(cp, text)
        if whole.action not in ("allow", "mask"):
            continue  # a blocked term: the stream stops, tested in test_guardrails
        received, decision = stream(cp, list(text) if one_by_one else chunked(text, cuts))
        assert decision is None and received == whole.text, (text, received, whole.text)


def test_the_held_context_is_what_fold_needs() -> None:
    out = StrictFilter(POLICY)
    out.feed("ﬁ" * 100 + " ")
    assert len(fold(out.before).text) >= pii.LOOKBACK and len(out.before) < 100
    assert StrictFilter(policy(pii={"entities": ["phone"]})).keep == pii.NEAR  # no context word needed


def test_a_text_of_many_number_groups_is_checked_in_bounded_time() -> None:
    groups = ", ".join(f"{i:04d}-{i * 7 % 10000:04d}" for i in range(1000, 1400))  # 400 look-alikes, none a phone
    pii.phone_ok.cache_clear()
    hits = pii.find(groups, frozenset({"phone"}))
    assert pii.phone_ok.cache_info().misses <= pii.MAX_PHONE_CHECKS
    assert len(hits) >= 400 - pii.MAX_PHONE_CHECKS  # past the checks, masked by shape: more, never less


@pytest.mark.parametrize("entity", sorted(pii.TAILS))
def test_the_new_tails_hold_every_prefix_of_their_formats(entity: str) -> None:
    """A prefix of a value, at the end of the text, is held from its first character by its entity's tail."""
    import re2

    tail = re2.compile(f"(?:{pii.TAILS[entity]})\\z")
    for _, value, of in LOCAL:
        if of != entity:
            continue
        folded = fold(value).text
        for k in range(1, len(folded) + 1):
            found = tail.search("see " + folded[:k])
            assert found is not None and found.start() == 4, (entity, folded[:k])
