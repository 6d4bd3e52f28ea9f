"""The tenant development sets of `bench/tenants`: well formed, as large and as varied as promised, valid data.

These sets tune the guardrail engine, so nothing here runs the engine on the messages: only the policy is parsed.
"""

from __future__ import annotations

import re
from collections import Counter
from typing import Any

import pytest

from bench.tenants import LANGS, NAMES, Message, Tenant, load
from widget_server.domain.guardrails import compile_policy, parse_policy
from widget_server.domain.guardrails.policy import Topic

MINIMUM = {"on_topic": 55, "off_topic": 25, "denied": 25, "escalate": 25, "pii": 15, "role_override": 8}
ON_TOPIC_PER_LANG = 4  # in each language other than English
ESCALATE_PER_LANG = 3  # in every language, English included
IBAN = re.compile(r"\b[A-Z]{2}\d{2}(?: ?[A-Z0-9]{1,4}){2,8}")
CARD = re.compile(r"\b\d(?:[ -]?\d){12,18}\b")
EMAIL = re.compile(r"\b[\w.+-]+@[\w-]+(?:\.[\w-]+)+\b")
NATIONAL_ID = re.compile(r"\b(?:\d{8}-?[A-Z]|\d{9}|[A-Z]{6}\d{2}[A-Z]\d{2}[A-Z]\d{3}[A-Z]|[12](?: ?\d){12} ?\d{2})\b")


@pytest.fixture(params=NAMES)
def tenant(request: pytest.FixtureRequest) -> Tenant:
    return load(request.param)


def in_category(tenant: Tenant, category: str) -> list[Message]:
    return [m for m in tenant.messages if m.category == category]


def without_descriptions(policy: dict[str, Any]) -> dict[str, Any]:
    """The policy as the schema accepts it: `description` dropped from topics while `Topic` has no such field."""
    if "description" in Topic.model_fields:
        return policy
    topics = {side: [{k: v for k, v in t.items() if k != "description"} for t in policy["topics"].get(side, [])]
              for side in ("allowed", "denied")}
    return {**policy, "topics": {**policy["topics"], **topics}}


def test_the_policy_is_valid_and_shaped_as_a_tenant_writes_it(tenant: Tenant) -> None:
    policy = parse_policy(without_descriptions(tenant.policy))
    assert policy.topics is not None and policy.topics.off_topic == "refuse"
    assert 4 <= len(policy.topics.allowed) <= 6 and 2 <= len(policy.topics.denied) <= 3
    assert all(4 <= len(t.examples) <= 6 for t in policy.topics.allowed)
    assert policy.escalation.on_request and policy.pii is not None
    assert all(t.get("description") for t in tenant.policy["topics"]["allowed"] + tenant.policy["topics"]["denied"])
    assert compile_policy(policy).topics is not None  # every example embeds


def test_every_category_has_its_share(tenant: Tenant) -> None:
    assert len(tenant.messages) >= 150
    counts = Counter(m.category for m in tenant.messages)
    assert {c: counts[c] for c in MINIMUM if counts[c] < MINIMUM[c]} == {}
    denied = Counter(m.expect.removeprefix("denied:") for m in in_category(tenant, "denied"))
    assert set(denied) == {t["id"] for t in tenant.policy["topics"]["denied"]}
    assert min(denied.values()) >= 5


def test_on_topic_and_escalation_are_asked_in_every_language(tenant: Tenant) -> None:
    on_topic = Counter(m.lang for m in in_category(tenant, "on_topic"))
    escalate = Counter(m.lang for m in in_category(tenant, "escalate"))
    assert {lang: on_topic[lang] for lang in LANGS if lang != "en" and on_topic[lang] < ON_TOPIC_PER_LANG} == {}
    assert {lang: escalate[lang] for lang in LANGS if escalate[lang] < ESCALATE_PER_LANG} == {}


def test_no_message_is_listed_twice(tenant: Tenant) -> None:
    texts = Counter(m.text.casefold() for m in tenant.messages)
    assert [t for t, n in texts.items() if n > 1] == []


def mod97(iban: str) -> bool:
    compact = iban.replace(" ", "")
    return len(compact) >= 15 and int("".join(str(int(c, 36)) for c in compact[4:] + compact[:4])) % 97 == 1


def luhn(number: str) -> bool:
    digits = [int(d) for d in reversed(re.sub(r"\D", "", number))]
    return sum(d if i % 2 == 0 else (d * 2 - 9 if d > 4 else d * 2) for i, d in enumerate(digits)) % 10 == 0


def prefixes(candidate: str) -> list[str]:
    """An IBAN found in running text may run on into a number after it: try it and each shorter group-prefix."""
    groups = candidate.split(" ")
    return [" ".join(groups[:n]) for n in range(len(groups), 0, -1)] if len(groups) > 1 else [candidate]


def test_ibans_and_card_numbers_carry_valid_check_digits(tenant: Tenant) -> None:
    for m in tenant.messages:
        if "iban" in m.entities:
            assert any(mod97(p) for c in IBAN.findall(m.text) for p in prefixes(c)), m.text
        if "credit_card" in m.entities:
            assert any(luhn(c) for c in CARD.findall(m.text)), m.text
        if "email" in m.entities:
            assert EMAIL.search(m.text), m.text
        if "phone" in m.entities:
            assert re.search(r"\d(?:[ ()+-]*\d){7,}", m.text), m.text


def test_national_ids_carry_valid_check_digits(tenant: Tenant) -> None:
    stdnum = pytest.importorskip("stdnum")
    from stdnum.es import dni
    from stdnum.fr import nir
    from stdnum.it import codicefiscale
    from stdnum.nl import bsn

    assert stdnum
    validators = (dni, nir, codicefiscale, bsn)
    for m in tenant.messages:
        if "national_id" in m.entities:
            found = NATIONAL_ID.findall(m.text)
            assert any(v.is_valid(c) for c in found for v in validators), m.text
