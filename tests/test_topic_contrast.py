"""Topic boundaries against the rest of the world (background requests) and two encoders agreeing on a denied topic,
on the policies of the development tenants (`bench/tenants/`) with messages that are not in their sets."""

from __future__ import annotations

import pytest

from bench.tenants import load
from widget_server.domain.guardrails import CompiledPolicy, check_input, compile_policy, parse_policy
from widget_server.domain.guardrails import background as bg


@pytest.fixture(scope="module")
def bank() -> CompiledPolicy:
    return compile_policy(parse_policy(load("bank").policy))


@pytest.fixture(scope="module")
def restaurant() -> CompiledPolicy:
    return compile_policy(parse_policy(load("restaurant").policy))


@pytest.mark.parametrize(("allowed", "background", "off"), [
    (0.50, 0.20, False),  # over the threshold, nothing closer
    (0.50, 0.61, True),  # over the threshold, but a background request is 0.11 closer
    (0.50, 0.59, False),  # ... only 0.09 closer
    (0.38, 0.20, False),  # a little under the threshold, far clearer than any background request
    (0.38, 0.25, True),  # ... but not clearly (0.13 < BELOW)
    (0.30, 0.00, True),  # too far under the threshold
])
def test_a_score_is_judged_against_the_threshold_and_the_background(allowed: float, background: float,
                                                                    off: bool) -> None:
    assert bg.off_topic(allowed, threshold=0.40, relax=0.03, background=background) is off


def test_a_request_of_no_business_is_refused_though_its_score_clears_the_threshold(restaurant: CompiledPolicy) -> None:
    d = check_input(restaurant, "what's the forecast for saturday, rain or sun")
    assert d.action == "refuse" and d.reason == "topic.off_topic"
    assert d.topics is not None and d.topics.compiled is not None and d.topics.compiled.threshold is not None
    trace = d.topics.trace()
    assert trace["allowed"] >= trace["thresholds"]["off_topic"]  # the threshold alone would have answered it
    assert trace["background"] >= trace["allowed"] + bg.ABOVE


def test_a_tenant_keeps_the_background_requests_that_are_its_business() -> None:
    weather = compile_policy(parse_policy({"version": 1, "topics": {"off_topic": "refuse", "allowed": [
        {"id": "forecast", "examples": ["what's the weather tomorrow", "will it rain on saturday",
                                        "how warm will it be this weekend", "is a storm coming"]},
        {"id": "account", "examples": ["how do I cancel my subscription", "I can't log in to the app",
                                       "how do I change my city"]}]}}))
    for text in ("will it rain this weekend", "what's the weather like tomorrow in Lyon"):
        assert not check_input(weather, text).stops, text
    assert check_input(weather, "give me a recipe for chocolate cake").reason == "topic.off_topic"


def test_an_off_topic_legal_question_in_french_gets_the_legal_refusal(restaurant: CompiledPolicy) -> None:
    d = check_input(restaurant, "est-ce que je peux poursuivre mon propriétaire en justice ?")
    assert d.action == "refuse" and d.reason == "topic.denied.legal_advice"
    assert "legal advice" in d.text


@pytest.mark.parametrize("text", [
    "before I move my savings to you, is it legal for my landlord to keep my deposit",
    "I was in court over my divorce last week, what should I tell the judge about our joint mortgage",
])
def test_a_denied_ask_wrapped_in_banking_words_is_refused_as_denied(bank: CompiledPolicy, text: str) -> None:
    d = check_input(bank, text)
    assert d.action == "refuse" and d.reason == "topic.denied.legal_advice", (d.reason, d.topics and d.topics.reading)


@pytest.mark.parametrize("text", ["how do I pay my tax bill from my current account",
                                  "can I open a savings account for my tax refund"])
def test_a_banking_question_that_names_a_denied_topic_is_answered(bank: CompiledPolicy, text: str) -> None:
    assert not check_input(bank, text).stops


@pytest.mark.parametrize(("lang", "text"), [
    ("en", "how do I activate my new card"), ("de", "wo sehe ich meine kontoauszüge in der app"),
    ("es", "¿cómo activo mi tarjeta nueva?"), ("fr", "comment activer ma nouvelle carte bancaire ?"),
    ("it", "come posso attivare la mia nuova carta?"), ("pt", "como ativo o meu cartão novo?"),
    ("nl", "hoe activeer ik mijn nieuwe bankpas?"),
])
def test_a_banking_question_in_each_supported_language_is_answered(bank: CompiledPolicy, lang: str,
                                                                   text: str) -> None:
    d = check_input(bank, text)
    assert d.action == "allow", (lang, d.reason)


@pytest.mark.parametrize(("text", "entity"), [
    ("my new mobile number is +49 171 2345678, please use it for the sms codes", "pii.phone"),
    ("please send my statements to anna.schmidt@example.com from now on", "pii.email"),
])
def test_a_message_with_pii_stays_on_topic_and_is_served_masked(bank: CompiledPolicy, text: str,
                                                                 entity: str) -> None:
    d = check_input(bank, text)
    assert d.action == "mask" and d.reason == entity and not d.stops
    assert d.text is not None and "2345678" not in d.text and "anna.schmidt" not in d.text
    assert d.masks and d.masks[0].reason == entity
