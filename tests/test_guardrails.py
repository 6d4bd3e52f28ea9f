"""The guardrails as pure functions: normalization, terms, patterns, PII, escalation, policy validation, and
the strict streaming filter under every chunking (hypothesis)."""

from __future__ import annotations

from typing import Any

import pytest
import re2
from hypothesis import given, settings
from hypothesis import strategies as st

from widget_server.domain.guardrails import (
    CheckContext,
    CompiledPolicy,
    StrictFilter,
    check_input,
    compile_policy,
    normalize,
    parse_policy,
    pii,
)
from widget_server.domain.guardrails.normalize import skeleton
from widget_server.errors import PolicyError

DOC: dict[str, Any] = {
    "version": 1,
    "input": {"max_chars": 4000},
    "blocked_terms": [{"id": "rival", "terms": ["acme rival", "rivalco"], "match": "word", "action": "refuse",
                       "applies_to": ["input", "output"]}],
    "patterns": [{"id": "ticket", "regex": r"TCK-\d{6}", "action": "mask", "applies_to": ["output"]},
                 {"id": "aaa", "regex": "(a+)+$", "action": "refuse", "applies_to": ["input"]}],
    "pii": {"entities": ["email", "phone", "credit_card", "iban", "us_ssn"], "action": "mask",
            "applies_to": ["input", "output"]},
    "topics": {"allowed": [{"id": "orders", "examples": ["where is my order"]}], "off_topic": "refuse"},
    "escalation": {"on_request": True, "after_refusals": 2, "message": "Connecting you with a person…"},
    "refusals": {"default": "Sorry, not that."},
}
POLICY = compile_policy(parse_policy(DOC))


def policy(**changes: Any) -> CompiledPolicy:
    return compile_policy(parse_policy({**DOC, **changes}))


def stream(cp: CompiledPolicy, chunks: list[str]) -> tuple[str, Any]:
    """What the client receives, and the decision that stopped the stream (if any)."""
    out = StrictFilter(cp)
    received = []
    for chunk in chunks:
        released, decision = out.feed(chunk)
        received.append(released)
        if decision is not None:
            return "".join(received), decision
    received.append(out.flush())
    return "".join(received), out.stopped


def chunked(text: str, cuts: list[int]) -> list[str]:
    points = sorted({c % (len(text) + 1) for c in cuts} | {0, len(text)})
    return [text[a:b] for a, b in zip(points, points[1:], strict=False) if b > a]


# -- blocked terms and normalization


@pytest.mark.parametrize("text", [
    "is rivalco cheaper?", "Is RivalCo cheaper?", "is ＲＩＶＡＬＣＯ cheaper?", "is riv\u200balco cheaper?",
    "is r\u202eivalco cheaper", "is r i v a l c o cheaper?", "is r.i.v.a.l.c.o cheaper?", "is r1valc0 cheaper?",
    "is rivаlco cheaper (Cyrillic a)?", "what about ACME Rival?", "ríválcó",
])
def test_variants_of_a_blocked_term_are_refused(text: str) -> None:
    decision = check_input(POLICY, text)
    assert (decision.action, decision.reason, decision.text) == ("refuse", "term.rival", "Sorry, not that.")


@pytest.mark.parametrize("text", ["rivalcos are a word of their own", "the rival company", "arrival cost",
                                  "a r i v a l", "acme rivalry"])
def test_word_terms_do_not_match_inside_other_words(text: str) -> None:
    assert check_input(POLICY, text).action == "allow"


def test_exact_terms_match_inside_words() -> None:
    cp = policy(blocked_terms=[{"id": "x", "terms": ["darn"], "match": "exact", "action": "refuse"}])
    assert check_input(cp, "Darnation").reason == "term.x"


def test_a_masking_term_masks_the_original_text() -> None:
    cp = policy(blocked_terms=[{"id": "code", "terms": ["opensesame"], "action": "mask"}])
    decision = check_input(cp, "the word is Open\u200bSesame, ok")
    assert decision.action == "mask" and decision.text == "the word is [redacted], ok"


# -- patterns


def test_a_catastrophic_pattern_runs_in_linear_time() -> None:
    decision = check_input(policy(input={"max_chars": 100_000}), "a" * 50_000)
    assert (decision.action, decision.reason) == ("refuse", "pattern.aaa")
    assert check_input(policy(input={"max_chars": 100_000}), "a" * 50_000 + "!").action == "allow"


def test_too_long_input_is_refused() -> None:
    assert check_input(POLICY, "x" * 4001).reason == "input.too_long"


# -- PII


@pytest.mark.parametrize(("text", "masked", "reason"), [
    ("card 4111 1111 1111 1111 please", "card [card] please", "pii.credit_card"),
    ("card 4111-1111-1111-1111", "card [card]", "pii.credit_card"),
    ("card ４１１１１１１１１１１１１１１１", "card [card]", "pii.credit_card"),
    ("mail Jane.Doe+x@Example.co.uk now", "mail [email] now", "pii.email"),
    ("iban GB82 WEST 1234 5698 7654 32 thanks", "iban [iban] thanks", "pii.iban"),
    ("iban DE89370400440532013000", "iban [iban]", "pii.iban"),
    ("call +1 (555) 123-4567 today", "call [phone] today", "pii.phone"),
    ("call 030 1234 5678", "call [phone]", "pii.phone"),
    ("ssn 123-45-6789", "ssn [ssn]", "pii.us_ssn"),
])
def test_pii_is_masked(text: str, masked: str, reason: str) -> None:
    decision = check_input(POLICY, text)
    assert (decision.action, decision.reason, decision.text) == ("mask", reason, masked)


@pytest.mark.parametrize("text", [
    "card 4111 1111 1111 1112",  # fails Luhn
    "iban GB82 WEST 1234 5698 7654 33",  # fails mod-97
    "iban DE89370400440532013001",
    "ssn 666-45-6789", "ssn 123-00-6789",
    "order 12345678 and 2024-01-15",  # a bare number and a date are not phones
    "write to support at example dot com",
])
def test_things_that_only_look_like_pii_pass(text: str) -> None:
    assert check_input(POLICY, text).action == "allow"


def test_pii_can_block() -> None:
    cp = policy(pii={"entities": ["credit_card"], "action": "block"})
    assert check_input(cp, "4111111111111111").action == "block"


# -- escalation


@pytest.mark.parametrize("text", [
    "can I talk to a human", "Can I speak with a real person?", "agent please", "Human, please!",
    "connect me to an agent", "echte Person bitte", "Ich möchte mit einem Menschen sprechen",
    "quiero hablar con una persona", "agente por favor", "je veux parler à un humain", "Parler avec un conseiller",
])
def test_asking_for_a_person_escalates(text: str) -> None:
    decision = check_input(POLICY, text)
    assert (decision.action, decision.reason, decision.text) == (
        "escalate", "escalation.requested", "Connecting you with a person…")


@pytest.mark.parametrize("text", ["my travel agent booked it", "is this human resources?", "the person I met"])
def test_mentioning_people_does_not_escalate(text: str) -> None:
    assert check_input(POLICY, text).action == "allow"


def test_escalation_after_two_refusals_in_a_row() -> None:
    assert check_input(POLICY, "rivalco?", CheckContext(refusals=1)).action == "refuse"
    decision = check_input(POLICY, "rivalco?", CheckContext(refusals=2))
    assert (decision.action, decision.reason) == ("escalate", "escalation.refusals")
    assert check_input(POLICY, "where is my order", CheckContext(refusals=2)).action == "allow"


def test_escalation_on_request_can_be_off() -> None:
    cp = policy(escalation={"on_request": False})
    assert check_input(cp, "agent please").action == "allow"


# -- validation


@pytest.mark.parametrize(("change", "field"), [
    ({"blocked_terms": [{"id": "x", "terms": ["a"], "colour": "red"}]}, "blocked_terms.0.colour"),
    ({"patterns": [{"id": "x", "regex": "TCK-(\\d"}]}, "patterns.0.regex"),
    ({"patterns": [{"id": "ok", "regex": "x", "applies_to": ["input"]}, {"id": "y", "regex": "(?<=a)b"}]},
     "patterns.1.regex"),
    ({"patterns": [{"id": "x", "regex": "a+", "applies_to": ["output"]}]}, "patterns.0"),
    ({"topics": {"allowed": [{"id": "orders", "examples": []}]}}, "topics.allowed.0.examples"),
    ({"pii": {"entities": ["passport"]}}, "pii.entities.0"),
    ({"blocked_terms": [{"id": "x", "terms": ["a"], "action": "shout"}]}, "blocked_terms.0.action"),
    ({"version": 2}, "version"),
    ({"surprise": True}, "surprise"),
])
def test_policy_errors_name_the_field(change: dict[str, Any], field: str) -> None:
    with pytest.raises(PolicyError) as caught:
        parse_policy({**DOC, **change})
    assert caught.value.status_code == 422 and caught.value.code == "policy.invalid"
    assert caught.value.details["errors"][0]["field"] == field
    assert field in caught.value.message


def test_a_term_of_invisible_characters_only_is_kept_and_matches_nothing() -> None:
    # Schemathesis found it: a soft hyphen normalizes to nothing, and compiling indexed its first character (a 500).
    cp = compile_policy(parse_policy({**DOC, "blocked_terms": [{"id": "x", "terms": ["ok", "\u00ad\u200b"]}]}))
    assert check_input(cp, "ok then").reason == "term.x"
    assert check_input(cp, "fine \u00ad\u200b").action == "allow"


def test_topics_are_accepted() -> None:
    doc = {"version": 1, "topics": {"allowed": [{"id": "a", "description": "d", "examples": ["x"]}],
                                    "denied": [{"id": "b", "examples": ["y"], "refusal": "no"}],
                                    "off_topic": "escalate"}}
    assert parse_policy(doc).topics is not None


# -- the stream


def test_the_stream_releases_safe_text_at_once_and_holds_only_a_possible_match() -> None:
    out = StrictFilter(policy(patterns=[]))  # an output pattern holds back its longest match; none here
    assert out.feed("Hello there, the") == ("Hello there, ", None)  # "the" could still become an email
    assert out.feed(" acme ") == ("the ", None)  # "acme " may start "acme rival"
    assert out.feed("store. ") == ("acme store. ", None)
    assert out.feed("Try riv") == ("Try ", None)
    released, decision = out.feed("alco now")
    assert released == "" and decision is not None and decision.reason == "term.rival"


def test_the_stream_masks_pii_and_patterns() -> None:
    text = "Ticket TCK-123456: we'll write to bob@example.com or call +1 (555) 123-4567."
    for chunks in ([text], list(text)):
        assert stream(POLICY, chunks) == (
            "Ticket [redacted]: we'll write to [email] or call [phone].", None)


def test_a_term_at_the_very_end_stops_on_flush() -> None:
    received, decision = stream(POLICY, list("we beat rivalco"))
    assert received == "we beat " and decision.reason == "term.rival"


def test_an_output_pattern_holds_back_only_from_a_character_that_can_start_it() -> None:
    out = StrictFilter(POLICY)  # TCK-\d{6}: up to ten characters, starting with T
    assert out.feed("see ticket TC") == ("see ticket ", None)
    assert out.feed("X is new ") == ("TCX is new ", None)


# Filler that cannot form a term, PII or a pattern (no r, no digits, no @), with combining marks and invisibles
FILLER = st.text(alphabet="abcdefghijklmnpqstuvwxyz   ,.?e\u0301\u200b\u200eé", max_size=40)
TERMS = ["rivalco", "RivalCo", "ＲＩＶＡＬＣＯ", "riv\u200balco", "r i v a l c o", "r1valc0", "acme rival",
         "ACME RIVAL", "riva\u0301lco"]
PII = {"4111 1111 1111 1111": "[card]", "5500-0000-0000-0004": "[card]", "bob.smith@example.com": "[email]",
       "GB82 WEST 1234 5698 7654 32": "[iban]", "+44 20 7946 0958": "[phone]", "078-05-1120": "[ssn]",
       "TCK-123456": "[redacted]"}  # a tenant's masking pattern
CUTS = st.lists(st.integers(min_value=0, max_value=200), max_size=30)


@settings(max_examples=300, deadline=None)
@given(before=FILLER, term=st.sampled_from(TERMS), after=FILLER, cuts=CUTS, one_by_one=st.booleans())
def test_no_byte_of_a_blocked_term_reaches_the_client(before: str, term: str, after: str, cuts: list[int],
                                                      one_by_one: bool) -> None:
    head = before + " "
    text = head + term + " " + after
    received, decision = stream(POLICY, list(text) if one_by_one else chunked(text, cuts))
    assert decision is not None and decision.reason == "term.rival"
    assert head.startswith(received)  # nothing from the term on
    assert "rival" not in skeleton(received).text


@settings(max_examples=300, deadline=None)
@given(before=FILLER, value=st.sampled_from(sorted(PII)), after=FILLER, cuts=CUTS, one_by_one=st.booleans())
def test_pii_and_patterns_are_masked_whatever_the_chunking(before: str, value: str, after: str, cuts: list[int],
                                             one_by_one: bool) -> None:
    text = before + " " + value + " " + after
    received, decision = stream(POLICY, list(text) if one_by_one else chunked(text, cuts))
    assert decision is None
    assert received == before + " " + PII[value] + " " + after  # masked, and everything else arrives whole


@settings(max_examples=200, deadline=None)
@given(text=FILLER, cuts=CUTS)
def test_allowed_text_arrives_whole(text: str, cuts: list[int]) -> None:
    assert stream(POLICY, chunked(text, cuts)) == (text, None)


# -- the stream's shortcuts change nothing the client sees


class ScanEveryDelta(StrictFilter):
    """The filter without its shortcuts: every delta is scanned with all that is held."""

    def __init__(self, cp: CompiledPolicy) -> None:
        super().__init__(cp)
        self.inert, self.runs = None, frozenset()


def releases(make: Any, cp: CompiledPolicy, chunks: list[str]) -> tuple[list[str], str | None]:
    """What each delta (and the end) releases, until the stream stops; and the reason it stopped."""
    out, released = make(cp), []
    for chunk in chunks:
        text, decision = out.feed(chunk)
        released.append(text)
        if decision is not None:
            return released, decision.reason
    released.append(out.flush())
    return released, None if out.stopped is None else out.stopped.reason


# Text made to hit the shortcuts' edges: runs of letters, digits and separators that may or may not become
# an email, a phone, a card, a ticket or a blocked term, next to characters that start nothing.
EDGY = st.lists(st.sampled_from([
    "a", "x", "r", "T", "TCK-", "TCK-123456", "123456", "1", "55", "4111 1111", " 1111 1111", "-", ".", "@",
    "@example.com", " ", "  ",
    ",", "!", "\n", "é", "\u200b", "ｒ", "rival", "rivalco", "bob.smith", "+44 20 7946 0958", "(555)", "#", ";",
]), max_size=25).map("".join)


VARIANTS = [POLICY, policy(pii=None), policy(pii=None, patterns=[]),
            policy(pii={"entities": ["phone", "credit_card", "us_ssn"], "action": "mask"}, patterns=[])]


@settings(max_examples=400, deadline=None)
@given(text=EDGY, cuts=CUTS, one_by_one=st.booleans())
def test_the_shortcuts_release_what_a_scan_of_every_delta_would(text: str, cuts: list[int],
                                                                 one_by_one: bool) -> None:
    assert_shortcuts_change_nothing(VARIANTS, list(text) if one_by_one else chunked(text, cuts))


def assert_shortcuts_change_nothing(variants: list[CompiledPolicy], chunks: list[str]) -> None:
    """The strict filter, with its shortcuts, releases what a scan of every delta would, for each policy."""
    for cp in variants:
        fast, fast_reason = releases(StrictFilter, cp, chunks)
        slow, slow_reason = releases(ScanEveryDelta, cp, chunks)
        # The same text at the same delta; a blocked term may be noticed a few deltas later, nothing sent meanwhile.
        assert fast_reason == slow_reason
        assert fast[:len(slow)] == slow[:len(fast)] and not "".join(fast[len(slow):] + slow[len(fast):])


def test_text_that_can_start_no_match_is_released_without_a_scan() -> None:
    out = StrictFilter(policy(pii=None))  # terms start with a or r, the pattern with T
    assert out.feed("Hello, ") == ("Hello, ", None) and out.pending == ""
    assert out.feed("kind folks") == ("kind folks", None)
    assert out.cp.output_inert("hello") and not out.cp.output_inert("hello rival")
    assert not StrictFilter(POLICY).cp.output_inert("hello")  # any word could become an email


@pytest.mark.parametrize("char", [chr(i) for i in range(128)])
def test_ascii_views_are_the_per_character_views(char: str) -> None:
    for view, per_char in ((normalize.clean, normalize._clean), (normalize.fold, normalize._fold),
                           (normalize.skeleton, normalize._skel)):
        assert view("a" + char + "b").text == "a" + per_char(char) + "b"


@pytest.mark.parametrize("entity", sorted(pii.TAILS))
def test_the_pii_tails_use_only_their_characters(entity: str) -> None:
    tail = re2.compile(f"(?:{pii.TAILS[entity]})\\z")
    for char in map(chr, range(32, 127)):
        for head in ("", "a", "1", "ab12", "gb82 west 1234", "bob", "bob@x", "+(", "12 3"):
            found = tail.search(head + char)
            assert found is None or char in pii.TAIL_CHARS[entity] and set(found.group()) <= pii.TAIL_CHARS[entity]
