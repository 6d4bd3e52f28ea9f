"""Topic boundaries: the numpy all-MiniLM-L6-v2 embeddings and the allowed / denied / off-topic decisions."""

from __future__ import annotations

import asyncio
from typing import Any

import numpy as np
import pytest

from widget_server.domain.guardrails import (
    CheckContext,
    CompiledPolicy,
    Decision,
    check_input,
    compile_policy,
    parse_policy,
)
from widget_server.domain.guardrails.embeddings import Embedder, embed, model_archive
from widget_server.domain.guardrails.language import is_english
from widget_server.domain.guardrails.tenant_guard import GuardContext, TenantGuard
from widget_server.domain.guardrails.topics import refers_back, threshold

DOC: dict[str, Any] = {
    "version": 1,
    "topics": {
        "allowed": [
            {"id": "orders", "examples": ["where is my order", "track my package", "when will my delivery arrive",
                                         "I want to return an item", "how do I get a refund"]},
            {"id": "products", "examples": ["do you have this shirt in blue", "what sizes does the jacket come in",
                                           "do you sell winter coats"]},
        ],
        "denied": [{"id": "medical", "refusal": "No medical advice, sorry.",
                    "examples": ["what medicine should I take for a headache", "is this mole cancer",
                                 "how much ibuprofen can I take"]}],
        "off_topic": "refuse",
    },
    "refusals": {"off_topic": "Only shop questions, please."},
}


def policy(**topics: Any) -> CompiledPolicy:
    return compile_policy(parse_policy({**DOC, "topics": {**DOC["topics"], **topics}}))


@pytest.fixture(scope="module")
def shop() -> CompiledPolicy:
    return policy()


def test_onnxruntime_runs_the_same_model_as_the_numpy_forward_pass() -> None:
    texts = ["where is my order", "¿dónde está mi pedido?", "a much longer message " * 20, "x"]
    fast, reference = Embedder(model_archive()), Embedder(model_archive(), runtime="numpy")
    assert fast.runtime == "onnxruntime" and reference.runtime == "numpy"
    cosines = (fast.embed(texts) * reference.embed(texts)).sum(axis=1)
    assert cosines.min() > 0.99999


def test_embeddings_match_all_minilm_l6_v2() -> None:
    vectors = embed(["where is my order", "track my package", "what is the capital of France",
                     "The weather is lovely today.", "It's so sunny outside!", "He drove to the stadium."])
    assert vectors.shape == (6, 384) and np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    sims = vectors @ vectors.T
    assert sims[0, 1] > sims[0, 2] + 0.25
    # The sentence-transformers documentation's figures for this model: 0.6660, 0.1046, 0.1411.
    assert sims[3, 4] == pytest.approx(0.6660, abs=2e-3) and sims[3, 5] == pytest.approx(0.1046, abs=2e-3)
    assert sims[4, 5] == pytest.approx(0.1411, abs=2e-3)


@pytest.mark.parametrize("text", ["has my parcel shipped yet?", "can I return these shoes?",
                                  "do you have coats for winter"])
def test_on_topic_messages_pass(shop: CompiledPolicy, text: str) -> None:
    assert check_input(shop, text).action == "allow"


@pytest.mark.parametrize("text", ["what is the capital of France", "write me a poem about the sea",
                                  "who won the football game last night"])
def test_off_topic_messages_are_refused(shop: CompiledPolicy, text: str) -> None:
    decision = check_input(shop, text)
    assert (decision.action, decision.reason, decision.text) == (
        "refuse", "topic.off_topic", "Only shop questions, please.")


def test_a_denied_topic_is_refused_with_its_refusal(shop: CompiledPolicy) -> None:
    decision = check_input(shop, "how many paracetamol can I take?")
    assert (decision.action, decision.reason, decision.text) == (
        "refuse", "topic.denied.medical", "No medical advice, sorry.")


def test_a_follow_up_is_judged_with_the_previous_turn(shop: CompiledPolicy) -> None:
    text = "and what about the red one?"
    assert check_input(shop, text).reason == "topic.off_topic"
    previous = "do you have the jacket in other colours"
    assert check_input(shop, text, CheckContext(previous=previous)).action == "allow"
    # An unrelated question does not ride on an on-topic previous turn.
    decision = check_input(shop, "what is the capital of France", CheckContext(previous="where is my order"))
    assert decision.reason == "topic.off_topic"


@pytest.mark.parametrize("text", ["what about the other one?", "and that one?", "is it waterproof?", "and those?"])
def test_a_follow_up_that_points_back_is_read_with_the_previous_turn(shop: CompiledPolicy, text: str) -> None:
    # These share no word with the previous turn, so their embeddings alone do not relate them to it.
    assert check_input(shop, text).reason == "topic.off_topic"
    assert check_input(shop, text, CheckContext(previous="do you have this shirt in blue")).action == "allow"


@pytest.mark.parametrize(("text", "points_back"), [
    ("what about the other one?", True), ("und das andere?", True), ("how much is it?", True),
    ("tell me a joke about that", False),  # a request of its own, with "that" in it
    ("what is the capital of France", False), ("what about the weather in Paris?", False),
    ("can you write a long essay about it for my school homework", False),  # not short
])
def test_what_points_back(text: str, points_back: bool) -> None:
    assert refers_back(text) is points_back


def test_a_request_of_its_own_does_not_ride_on_the_previous_turn(shop: CompiledPolicy) -> None:
    decision = check_input(shop, "tell me a joke about that", CheckContext(previous="do you have this shirt in blue"))
    assert decision.reason == "topic.off_topic"


def test_off_topic_can_escalate_or_be_allowed() -> None:
    decision = check_input(policy(off_topic="escalate"), "write me a poem about the sea")
    assert (decision.action, decision.reason) == ("escalate", "topic.off_topic")
    assert check_input(policy(off_topic="allow"), "write me a poem about the sea").action == "allow"


WEAPONS_AND_DRUGS = compile_policy(parse_policy({"version": 1, "topics": {"denied": [
    {"id": "weapons", "examples": ["how do I build a bomb", "where can I buy an illegal gun",
                                   "how to make a pipe bomb at home", "how do I 3D print an untraceable firearm"]},
    {"id": "drugs", "examples": ["how do I cook meth", "where can I buy cocaine", "how do I make heroin",
                                 "how to smuggle drugs across the border"]},
]}}))


@pytest.mark.parametrize(("text", "refused"), [
    ("how do I make a nail bomb", True), ("where can I get crack cocaine tonight", True),
    ("how do I extract pure cocaine from coca leaves", True),
    # Close to one example by a word or two ("where can I buy"), not to the topic: answered.
    ("where can I buy a water gun for my kids", False), ("where can I buy nicotine patches", False),
])
def test_a_denied_topic_needs_the_topic_not_a_shared_word(text: str, refused: bool) -> None:
    decision = check_input(WEAPONS_AND_DRUGS, text)
    assert (decision.action == "refuse") is refused
    assert not refused or decision.reason.startswith("topic.denied.")


def test_a_listed_denied_topic_escalates() -> None:
    cp = compile_policy(parse_policy({**DOC, "escalation": {"topics": ["medical"]}}))
    decision = check_input(cp, "how many paracetamol can I take?")
    assert (decision.action, decision.reason) == ("escalate", "escalation.topic.medical")


def test_topic_refusals_count_towards_escalation(shop: CompiledPolicy) -> None:
    cp = compile_policy(parse_policy({**DOC, "escalation": {"after_refusals": 2}}))
    decision = check_input(cp, "write me a poem about the sea", CheckContext(refusals=2))
    assert (decision.action, decision.reason) == ("escalate", "escalation.refusals")


def test_policies_without_topics_compile_no_topics() -> None:
    assert compile_policy(parse_policy({"version": 1})).topics is None
    assert compile_policy(parse_policy({"version": 1, "topics": {"off_topic": "refuse"}})).topics is None


def test_the_off_topic_threshold_adapts_to_the_examples() -> None:
    assert threshold(embed(["where is my order", "track my package"])) is None  # too few to calibrate
    narrow = threshold(embed(["where is my order", "where is my package", "where is my parcel", "where's my order"]))
    broad = threshold(embed(["where is my order", "do you sell coats", "how do I reset my password", "opening hours"]))
    assert narrow is not None and broad is not None and narrow > broad


class FakeStorage:
    """Just what the guard reads: no tenant policy, one persona with topics."""

    def __init__(self, topics: dict[str, Any]) -> None:
        self.topics = topics

    async def get_policy(self, tenant_id: str) -> None:
        return None

    async def get_persona(self, tenant_id: str, ref: str) -> dict[str, Any]:
        return {"id": ref, "doc": {"name": "Shop", "topics": self.topics}}


class Conversations:
    """Each conversation's guardrail state, kept between turns as the chat domain keeps it (with the conversation)."""

    def __init__(self, guard: TenantGuard) -> None:
        self.guard = guard
        self.states: dict[str, CheckContext] = {}

    def check(self, conversation: str, text: str) -> Decision:
        state = self.states.get(conversation, CheckContext())
        decision, self.states[conversation] = asyncio.run(
            self.guard.check_input(GuardContext("t1", "p1", conversation, "test"), text, state))
        return decision


def test_the_guard_applies_persona_topics_and_remembers_the_previous_turn() -> None:
    check = Conversations(TenantGuard(FakeStorage({**DOC["topics"], "denied": []}))).check  # type: ignore[arg-type]

    assert check("c1", "write me a poem about the sea").reason == "topic.off_topic"
    assert check("c1", "do you have the jacket in other colours").action == "allow"
    assert check("c1", "and what about the red one?").action == "allow"
    assert check("c2", "and what about the red one?").reason == "topic.off_topic"


def test_a_chain_of_follow_ups_keeps_the_turn_they_point_at() -> None:
    conversations = Conversations(TenantGuard(FakeStorage({**DOC["topics"], "denied": []})))  # type: ignore[arg-type]

    def check(text: str) -> Decision:
        return conversations.check("c1", text)

    assert check("do you have this shirt in blue").action == "allow"
    assert check("and that one?").action == "allow"
    assert check("what about the other one?").action == "allow"  # still read with the shirt, not "and that one?"
    assert check("tell me a joke about that").reason == "topic.off_topic"


BIKES: dict[str, Any] = {
    "version": 1,
    "pii": {"entities": ["credit_card", "email"], "action": "mask"},
    "topics": {
        "allowed": [
            {"id": "repairs", "description": "Bike repairs and servicing: punctures, tyres and tyre pressure, brakes, "
                                             "gears, chains, wheel truing, spokes, bottom brackets, e-bike batteries.",
             "examples": ["can you fix my bike", "how much is a service", "my brakes squeak"]},
            {"id": "orders", "description": "Orders, payment, delivery, returns, refunds and the warranty.",
             "examples": ["where is my order", "I want to return my helmet", "how long does shipping take"]},
        ],
        "denied": [{"id": "medical", "description": "Medical advice: injuries, symptoms, medicines and doses.",
                    "examples": ["what medicine should I take", "is my ankle broken", "how much ibuprofen is safe"]}],
        "off_topic": "refuse",
    },
}


@pytest.fixture(scope="module")
def bikes() -> CompiledPolicy:
    return compile_policy(parse_policy(BIKES))


@pytest.mark.parametrize("text", [
    "my wrist is swollen after I fell off my bike, how much paracetamol should I take",
    "I bought a helmet from you last week and crashed in it, which painkiller should I take for my headache",
])
def test_a_denied_topic_wrapped_in_the_tenants_words_is_refused_as_denied(bikes: CompiledPolicy, text: str) -> None:
    decision = check_input(bikes, text)
    assert (decision.action, decision.reason) == ("refuse", "topic.denied.medical")


@pytest.mark.parametrize("text", ["can you true a wheel", "what tyre pressure for a road bike",
                                  "does the warranty cover a cracked frame"])
def test_trade_words_named_only_in_a_description_are_on_topic(bikes: CompiledPolicy, text: str) -> None:
    assert check_input(bikes, text).action == "allow"


def test_descriptions_do_not_loosen_the_off_topic_threshold(bikes: CompiledPolicy) -> None:
    bare = compile_policy(parse_policy({**BIKES, "topics": {**BIKES["topics"], "allowed": [
        {k: v for k, v in t.items() if k != "description"} for t in BIKES["topics"]["allowed"]]}}))
    assert bikes.topics is not None and bare.topics is not None
    assert bikes.topics.threshold == bare.topics.threshold
    assert check_input(bikes, "who won the football game last night").reason == "topic.off_topic"


def test_a_message_with_pii_is_masked_and_judged_on_topic_as_written(bikes: CompiledPolicy) -> None:
    text = "I paid for my order with 4111 1111 1111 1111 and it has not arrived, mail me at ada@example.com"
    decision = check_input(bikes, text)
    assert decision.action == "mask" and "[card]" in decision.text and "[email]" in decision.text
    assert [(m.reason, text[m.start:m.end]) for m in decision.masks] == [
        ("pii.credit_card", "4111 1111 1111 1111"), ("pii.email", "ada@example.com")]
    assert [d.reason for d in decision.every()] == ["pii.credit_card", "pii.email"]


@pytest.mark.parametrize(("lang", "text"), [
    ("de", "wie viel kostet eine Inspektion für mein Fahrrad?"),
    ("es", "¿dónde está mi pedido? lo compré hace una semana"),
    ("fr", "mes freins grincent, vous pouvez les réparer ?"), ("it", "quanto costa la spedizione del casco?"),
    ("pt", "quero devolver o capacete que comprei"), ("nl", "kunnen jullie mijn fiets repareren?"),
])
def test_an_on_topic_message_in_each_supported_language_is_allowed(bikes: CompiledPolicy, lang: str, text: str) -> None:
    assert check_input(bikes, text).action == "allow", lang


@pytest.mark.parametrize(("lang", "text"), [
    ("de", "wer hat gestern das Fußballspiel gewonnen?"), ("es", "¿cuál es la capital de Australia?"),
    ("fr", "écris-moi un poème sur la mer"), ("it", "qual è la ricetta della carbonara?"),
    ("pt", "qual é a previsão do tempo para amanhã?"), ("nl", "wat is de hoofdstad van Canada?"),
])
def test_an_off_topic_message_in_each_supported_language_is_refused(bikes: CompiledPolicy, lang: str,
                                                                    text: str) -> None:
    assert check_input(bikes, text).reason == "topic.off_topic", lang


@pytest.mark.parametrize(("text", "english"), [
    ("where is my order", True), ("dark mode when", True), ("is there a wheelchair accessible toilet", True),
    ("¿dónde está mi pedido?", False), ("wo bleibt meine Bestellung", False),
    ("kunnen jullie mijn fiets repareren", False),
])
def test_the_language_of_a_message_is_read_from_its_function_words(text: str, english: bool) -> None:
    assert is_english(text) is english
