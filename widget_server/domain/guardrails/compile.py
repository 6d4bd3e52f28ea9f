"""Compile a validated policy once into an immutable `CompiledPolicy`: Aho-Corasick automatons over the
normalized terms (as written, and squeezed for spelled-out variants), RE2 patterns, the PII set and the
topics' embedded examples (the embedding model is loaded only for a policy with topics)."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import Any

import ahocorasick

from widget_server.domain.guardrails import embeddings, multilingual, normalize, pii
from widget_server.domain.guardrails.policy import Policy, compile_re2
from widget_server.domain.guardrails.regex_info import first_chars, max_width
from widget_server.domain.guardrails.topics import CompiledTopics, compile_topics, has_examples


@dataclass(frozen=True)
class Rule:
    """One rule as the matchers see it: its reason code, action, where it applies and how it masks."""

    reason: str
    action: str
    sources: frozenset[str]
    word: bool = False
    label: str = "[redacted]"


@dataclass(frozen=True)
class CompiledPattern:
    rule: Rule
    regex: Any  # re2._Regexp
    width: int  # the longest match (bounded for output patterns)
    first: frozenset[str] | None  # the characters a match can start with, when known


@dataclass(frozen=True)
class Terms:
    """The blocked terms of one source: an automaton over their keys and one over their squeezed keys. Whether
    a text's end could be the start of a term still being streamed is asked of the automatons themselves (their
    tries hold every prefix), so memory grows with the terms' length, not its square."""

    automaton: Any  # ahocorasick.Automaton, value (key, rule)
    squeezed: Any  # ahocorasick.Automaton over squeezed keys, value (key, rule)
    firsts: frozenset[str]  # the first characters of the keys, as written and squeezed
    longest: int

    @property
    def empty(self) -> bool:
        return self.longest == 0

    def is_prefix(self, text: str) -> bool:
        """Whether `text` (non-empty) starts some key: more text could complete a term."""
        return bool(self.automaton.match(text)) if self.longest else False

    def is_squeezed_prefix(self, text: str) -> bool:
        return bool(self.squeezed.match(text)) if len(self.squeezed) else False


class Inert:
    """Whether a text has only characters that can take no part in a match of one source's rules: none starts
    a term (as written or spelled out) or a pattern, none can be in a PII match. The streaming filter, holding
    nothing, releases such a text as it comes: a scan would find nothing in it and hold none of it back."""

    def __init__(self, terms: Terms, patterns: tuple[CompiledPattern, ...], pii_entities: frozenset[str]) -> None:
        self.term_firsts = terms.firsts
        firsts = [p.first for p in patterns]
        self.pattern_firsts = None if None in firsts else frozenset().union(*(f for f in firsts if f is not None))
        self.pii_chars = frozenset().union(*(pii.TAIL_CHARS[e] for e in pii_entities))
        self.cache: dict[str, bool] = {}
        self.ascii_active = frozenset(c for c in map(chr, range(128)) if not self._inert(c))

    def _inert(self, ch: str) -> bool:
        if self.pattern_firsts is None:
            return False  # a pattern that can start anywhere holds back its width from every character
        return (self.term_firsts.isdisjoint(normalize.skeleton(ch).text)
                and self.pattern_firsts.isdisjoint(normalize.clean(ch).text)
                and self.pii_chars.isdisjoint(normalize.fold(ch).text))

    def __call__(self, text: str) -> bool:
        if text.isascii():
            return self.ascii_active.isdisjoint(text)
        for ch in text:
            known = self.cache.get(ch)
            if known is None:
                known = self._inert(ch)
                if len(self.cache) < 4096:  # the characters of a few scripts; past that, no more are kept
                    self.cache[ch] = known
            if not known:
                return False
        return True


@dataclass(frozen=True)
class CompiledPolicy:
    policy: Policy
    input_terms: Terms
    output_terms: Terms
    patterns: tuple[CompiledPattern, ...]
    pii_rule: Rule | None
    pii_entities: frozenset[str]
    pii_tail: Any  # re2._Regexp | None
    topics: CompiledTopics | None = None  # embedded examples, only when the policy has topics

    def terms(self, source: str) -> Terms:
        return self.input_terms if source == "input" else self.output_terms

    def pii_for(self, source: str) -> bool:
        return self.pii_rule is not None and source in self.pii_rule.sources

    def patterns_for(self, source: str) -> tuple[CompiledPattern, ...]:
        return self.input_patterns if source == "input" else self.output_patterns

    @cached_property
    def input_patterns(self) -> tuple[CompiledPattern, ...]:
        return tuple(p for p in self.patterns if "input" in p.rule.sources)

    @cached_property
    def output_patterns(self) -> tuple[CompiledPattern, ...]:
        return tuple(p for p in self.patterns if "output" in p.rule.sources)

    @cached_property
    def output_inert(self) -> Inert:
        return Inert(self.output_terms, self.output_patterns, self.pii_entities if self.pii_for("output") else
                     frozenset())

    def refusal(self) -> str:
        return self.policy.refusals.default


def _automaton(entries: dict[str, tuple[str, Rule]]) -> Any:
    auto = ahocorasick.Automaton()
    for key, value in entries.items():
        auto.add_word(key, value)
    if entries:
        auto.make_automaton()
    return auto


def _terms(policy: Policy, source: str) -> Terms:
    plain: dict[str, tuple[str, Rule]] = {}
    squeezed: dict[str, tuple[str, Rule]] = {}
    for group in policy.blocked_terms:
        if source not in group.applies_to:
            continue
        rule = Rule(f"term.{group.id}", group.action, frozenset(group.applies_to), group.match == "word")
        for term in group.terms:
            key = normalize.term_key(term)
            if not key.strip():  # invisible characters only (a soft hyphen): it can match nothing
                continue
            plain.setdefault(key, (key, rule))
            short = normalize.squeeze(key)
            if len(short) >= 3:  # two spelled-out letters are too common to mean anything
                squeezed.setdefault(short, (short, rule))
    firsts = frozenset(k[0] for k in [*plain, *squeezed])
    return Terms(_automaton(plain), _automaton(squeezed), firsts, max((len(k) for k in plain), default=0))


def compile_policy(policy: Policy) -> CompiledPolicy:
    """Everything matching needs, built once when the policy is saved."""
    patterns = tuple(
        CompiledPattern(Rule(f"pattern.{p.id}", p.action, frozenset(p.applies_to)), compile_re2(p.regex),
                        max_width(p.regex), first_chars(p.regex))
        for p in policy.patterns
    )
    entities = pii.expand(policy.pii.entities) if policy.pii else frozenset()
    pii_rule = (Rule("pii", policy.pii.action, frozenset(policy.pii.applies_to)) if policy.pii else None)
    topics = (compile_topics(policy.topics, embeddings.embed_cached, multilingual.embed_cached)
              if policy.topics is not None and has_examples(policy.topics) else None)
    return CompiledPolicy(policy, _terms(policy, "input"), _terms(policy, "output"), patterns, pii_rule,
                          entities, pii.tail_pattern(entities), topics)
