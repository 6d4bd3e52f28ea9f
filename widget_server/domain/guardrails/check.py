"""The check of a visitor's message: length, blocked terms, patterns, PII and requests for a person.

Reasons: `input.too_long`, `term.<id>`, `pattern.<id>`, `pii.<entity>`, `escalation.requested`,
`escalation.refusals`, `topic.denied.<id>`, `topic.off_topic`, `escalation.topic.<id>`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import re2

from widget_server.domain.guardrails import embeddings, normalize
from widget_server.domain.guardrails.compile import CompiledPolicy
from widget_server.domain.guardrails.decision import Decision
from widget_server.domain.guardrails.scan import Found, scan
from widget_server.domain.guardrails.topics import match

# Asking for a person, in the `fold` view (case folded, accents dropped). Phrases, not single words, so
# "my travel agent" or "human resources" do not hand a conversation over.
_PERSON_EN = (r"(?:a |an |some |one |)(?:real |live |actual )?"
              r"(?:human|person|agent|someone|somebody|representative|operator|employee)")
HUMAN_REQUEST = re2.compile("|".join([
    # English
    rf"\b(?:talk|speak|chat)(?:ing)? (?:to|with) {_PERSON_EN}\b",
    rf"\b(?:connect|transfer|put) me (?:to|with|through to) {_PERSON_EN}\b",
    rf"\b(?:i want|i need|i'd like|i would like|get me|give me) {_PERSON_EN}\b",
    r"\b(?:human|agent|operator|representative|person) please\b",
    r"\b(?:real|live) (?:human|person|agent)\b",
    r"\bare you (?:a )?(?:bot|robot)\b.{0,20}\b(?:human|person)\b",
    # German
    r"\b(?:echte[nrs]?|reale[nrs]?|richtige[nrs]?) (?:person|mensch(?:en)?|mitarbeiter(?:in)?)\b",
    r"\bmit (?:einem|einer) (?:menschen|mitarbeiter(?:in)?|person|berater(?:in)?)\b",
    r"\b(?:menschen|mitarbeiter(?:in)?|berater(?:in)?) (?:bitte|sprechen)\b",
    # Spanish
    r"\bhablar con (?:una persona|un humano|un agente|alguien|un asesor|una persona real)\b",
    r"\b(?:persona real|un humano por favor|agente por favor|humano por favor)\b",
    # French
    r"\bparler (?:a|avec) (?:un humain|une personne|un conseiller|une conseillere|un agent|quelqu'un)\b",
    r"\b(?:vraie personne|personne reelle|vrai humain|un humain s'il vous plait|conseiller s'il vous plait)\b",
]))


WORDS = re.compile(r"[\w']+")


@dataclass(frozen=True)
class CheckContext:
    """What the caller knows beyond the text: how many replies in a row were refusals, and the visitor's
    previous turn (a follow-up is judged with it as context)."""

    refusals: int = 0
    previous: str | None = None


def asks_for_person(text: str) -> bool:
    """Whether the visitor asks to be handed over to a person (EN, DE, ES, FR)."""
    words = WORDS.findall(normalize.fold(text).text.replace("’", "'"))
    return HUMAN_REQUEST.search(" ".join(words)) is not None


def stop_text(cp: CompiledPolicy, action: str) -> str:
    return cp.policy.escalation.message if action == "escalate" else cp.refusal()


def mask(text: str, found: list[Found]) -> str:
    """The text with each masked match replaced by its label (the first of overlapping matches wins)."""
    out, at = [], 0
    for f in sorted(found, key=lambda f: f.start):
        if f.start < at:
            continue
        out += [text[at:f.start], f.label]
        at = f.end
    return "".join(out) + text[at:]


def topic_decision(cp: CompiledPolicy, text: str, context: CheckContext) -> Decision | None:
    """A denied topic (refused, or escalated when listed in `escalation.topics`) or an off-topic message
    (per `topics.off_topic`); None when the topics let the message through."""
    ct, policy = cp.topics, cp.policy
    if ct is None or not text.strip():
        return None
    found = match(ct, text, embeddings.embed_recent, context.previous)
    if found.verdict == "denied" and found.topic is not None:
        if found.topic in policy.escalation.topics:
            return Decision("escalate", f"escalation.topic.{found.topic}", policy.escalation.message)
        rule = next(t for t in ct.topics.denied if t.id == found.topic)
        return refused(cp, f"topic.denied.{found.topic}", rule.refusal or policy.refusals.default, context)
    if found.verdict == "off_topic" and ct.topics.off_topic != "allow":
        if ct.topics.off_topic == "escalate":
            return Decision("escalate", "topic.off_topic", policy.escalation.message)
        return refused(cp, "topic.off_topic", policy.refusals.off_topic, context)
    return None


def refused(cp: CompiledPolicy, reason: str, text: str, context: CheckContext) -> Decision:
    """A refusal, or the hand-over once the visitor has been refused `after_refusals` times in a row."""
    limit = cp.policy.escalation.after_refusals
    if limit is not None and context.refusals >= limit:
        return Decision("escalate", "escalation.refusals", cp.policy.escalation.message)
    return Decision("refuse", reason, text)


def check_input(cp: CompiledPolicy, text: str, context: CheckContext | None = None) -> Decision:
    """The decision on a visitor's message: a block first, then a request for a person, then the first
    refusing rule (an escalation once the visitor has been refused `after_refusals` times in a row),
    then masking."""
    context = context or CheckContext()
    policy = cp.policy
    if policy.input.max_chars is not None and len(text) > policy.input.max_chars:
        return Decision("refuse", "input.too_long", cp.refusal())
    found = scan(cp, "input", text)
    masks = [f for f in found if f.action == "mask"]
    shown = mask(text, masks) if masks else None  # a refused message is stored masked too
    for f in found:
        if f.action == "block":
            return Decision("block", f.reason, cp.refusal(), shown)
    if policy.escalation.on_request and asks_for_person(text):
        return Decision("escalate", "escalation.requested", policy.escalation.message, shown)
    stop = next((f for f in found if f.action in ("refuse", "escalate")), None)
    if stop is not None:
        limit = policy.escalation.after_refusals
        if stop.action == "refuse" and limit is not None and context.refusals >= limit:
            return Decision("escalate", "escalation.refusals", policy.escalation.message, shown)
        return Decision(stop.action, stop.reason, stop_text(cp, stop.action), shown)
    topic = topic_decision(cp, text, context)
    if topic is not None:
        return Decision(topic.action, topic.reason, topic.text, shown)
    if masks:
        return Decision("mask", masks[0].reason, shown or text)
    return Decision("allow", text=text)
