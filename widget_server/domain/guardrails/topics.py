"""Topic boundaries: semantic matching of a message against the allowed and denied topics' examples.

At compile time every example is embedded (all-MiniLM-L6-v2, see `embeddings`) and the off-topic threshold is
derived from the allowed examples themselves: each example's best similarity to the *other* allowed examples
(leave-one-out) gives the spread of scores an in-scope message gets, and the threshold is a low percentile
of that spread minus a margin, clamped to a sane range. So a narrow policy gets a strict threshold and a
broad one a lenient one; the global constants below were calibrated on CLINC150 `val`/`oos_val` only.

At check time the message's scores are the best similarity to the allowed examples and, per denied topic,
to that topic's examples. A denied topic wins when the message is close to the topic, not to one of its words:
to two of its examples on average, or to one of them very closely (a near paraphrase); and when it beats the
allowed score by a margin. ("How do I stop a frozen program" shares a verb with "how do I kill someone", not a
topic.) The message is off-topic when its allowed score is below the threshold. A short follow-up ("and the
red one?") is also read together with the previous visitor turn, and the better-supported reading counts, when
it relates to that turn or points back at it ("and that one?", "is it waterproof?": `refers_back`).
That reading is the normalized mean of the two turns' vectors: the previous turn's vector is still in the
recent-messages cache, so a follow-up costs no second forward pass (the p95 latency budget is 15 ms).

A message is read first with the model of its language (MiniLM for English, the multilingual encoder for the
others, `language.is_english`) and, when that finds it off-topic, again with the other (`match`); a topic's
description counts as examples too, item by item; a longer message is also searched clause by clause for a denied
ask, and a message refused as off-topic anyway is refused as the denied topic it is nearest (`DENY_WEAK`).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from functools import cached_property
from typing import Any

import numpy as np
import numpy.typing as npt

from widget_server.domain.guardrails import agreement
from widget_server.domain.guardrails import background as bg
from widget_server.domain.guardrails.embeddings import Matrix
from widget_server.domain.guardrails.language import is_english
from widget_server.domain.guardrails.policy import Topics

Embed = Callable[[list[str]], Matrix]

MIN_ALLOWED = 3  # fewer allowed examples than this cannot calibrate an off-topic threshold: not judged
LOO_PERCENTILE = 5.0  # of the allowed examples' leave-one-out scores
LOO_MARGIN = 0.10
THRESHOLD_RANGE = (0.35, 0.55)  # low end chosen on val: 0.30 gave F1 0.915, 0.35 0.933, 0.40 0.944 but 3.9 % refused
# The same for the multilingual encoder, whose similarities run lower: chosen on the development tenants' messages
# not in English: a low end of 0.25 / 0.30 / 0.35 / 0.40 allowed 82 / 66 / 47 / 32 % of the SaaS tenant's on-topic
# ones, 0.25 refused 84 % of its off-topic messages and 0.30 100 %.
THRESHOLD_RANGE_MULTILINGUAL = (0.30, 0.55)
# An English message that MiniLM finds off-topic is read again with the multilingual encoder, held to its threshold
# plus this: chosen on CLINC150 val + oos_val, where +0.20 / +0.15 / +0.10 / +0.05 refused 2.8 / 2.5 / 2.0 / 1.5 % of
# in-scope queries (3.1 % with one reading) at an average off-topic F1 of 0.933 / 0.932 / 0.926 / 0.907 (0.933).
SECOND_READING = 0.15
# A denied topic wins when its two closest examples are this similar to the message on average, or its closest
# one this much (DENY_SINGLE when the topic has one example), and the closest beats the allowed score by
# DENY_MARGIN. Chosen with `bench/guardrails.py --dev` on a development set of this project's own
# (`bench/guardrail_dev.py`) and CLINC150 `val`/`oos_val`, by one rule: refuse at most half the harmless
# questions (with the words of violence, weapons, drugs or hate) that the closest example alone at 0.55 refused,
# and as many harmful requests as can be. Harmless refused 2.7 % -> 1.2 %, harmful 37.5 % -> 32.1 %; everyday
# topics a tenant denies, 76 % -> 82 % of their messages refused.
DENY_PAIR = 0.48
DENY_CLOSE = 0.65
DENY_SINGLE = 0.55
DENY_MARGIN = 0.05
# A message refused as off-topic anyway is refused as the denied topic it is closest to, when it is this close to
# one of that topic's examples (and closer than to any allowed one): the visitor gets that topic's refusal and
# analytics its reason ("how much paracetamol should I take" is not merely off a bike shop's topics). Chosen on the
# development tenants: 0.35 / 0.30 / 0.25 gave 50 / 54 / 55 of their 78 denied asks their own reason, and kept 71 / 70
# / 67 of their 76 off-topic messages under `topic.off_topic`.
DENY_WEAK = 0.30
DENY_WEAK_MULTILINGUAL = 0.35  # the multilingual encoder puts unrelated texts closer (a poem 0.31 from medicine)
FOLLOWUP_WORDS = 8  # messages up to this many words are also read with the previous turn
CONTEXT_PENALTY = 0.03  # the contextual reading has to be clearly on-topic to count
FOLLOWUP_RELATED = 0.15  # ... and the message must relate to the previous turn ("what is the capital of
# France" after "where is my order" is not a follow-up, "and in blue?" after "this shirt in large" is)

# A follow-up that points back at the previous turn ("and that one?", "what about the other one?", "is it
# waterproof?") may share no word with it, so its embedding says nothing of the relation; these words say it.
# EN, DE, FR, ES, like the requests for a person.
REFERS_BACK = frozenset("""
it its it's itself that this these those them they their theirs one ones other others another same
es das dies diese dieser dieses den dem der die andere anderen anderes ihn ihm sie
ça cela ceci celui celle ceux celles autre autres même le la les lui
eso esto ese esa esos esas este esta otro otra otros otras mismo lo
""".split())
# Words that carry no topic of their own: a follow-up that points back may add at most one other word.
FUNCTION_WORDS = frozenset("""
a an the and or but so then also too what about how much many which who whom whose when where why is are was
were be been do does did can could would will shall should may might must have has had i you he she we me my
your our us of in on at for to with by from as if not no yes please ok okay any some more less than just
und oder aber was wie wo wann ist sind gibt es ein eine mit von für bitte auch noch
et ou mais quoi comment où quand est sont un une des du de avec pour aussi encore
y o pero qué cómo dónde cuándo es son un una de con para también
""".split())
WORDS = re.compile(r"[\w']+")
# A longer message is also read clause by clause for a denied ask: split at sentence ends, commas and the
# conjunctions that join two asks, in the seven languages of the requests for a person.
LIST_BREAK = re.compile(r"[.;:,()]+\s*|\s+(?:and|or|und|oder|y|o|et|ou|e|en|of)\s+", re.IGNORECASE)
SPLIT_WORDS = 8
CLAUSE_WORDS = 3
MAX_CLAUSES = 4
CLAUSE_BREAK = re.compile(r"[.?!;:,¿¡]+\s*|\s+(?:and|but|also|so|plus|und|aber|auch|y|pero|tambien|también|et|mais|"
                          r"aussi|e|ma|anche|mas|também|en|maar|ook)\s+", re.IGNORECASE)


@dataclass(frozen=True)
class CompiledTopics:
    topics: Topics
    allowed: Matrix  # (n, dim) unit vectors of the allowed examples
    denied: Matrix  # (m, dim) unit vectors of the denied examples
    denied_ids: tuple[str, ...]  # the topic id of each denied row
    threshold: float | None  # the off-topic threshold, None when there are too few allowed examples
    multilingual: CompiledTopics | None = None  # the same topics for messages in the other languages
    deny_weak: float = 0.0  # DENY_WEAK on this encoder's scale
    allowed_ids: tuple[str, ...] = ()  # the allowed topic of each allowed row (for the console's trace only)
    background: Matrix | None = None  # the background requests that are not this policy's business (`background`)
    relax: float = 0.0  # how far under the threshold a message clearly closer to the policy than to them may be

    @cached_property
    def denied_rows(self) -> tuple[tuple[str, npt.NDArray[np.intp]], ...]:
        """Each denied topic and the rows of its examples."""
        ids = np.array(self.denied_ids)
        return tuple((topic, np.flatnonzero(ids == topic)) for topic in dict.fromkeys(self.denied_ids))


@dataclass(frozen=True)
class TopicMatch:
    """The outcome: `denied` (with the topic id), `off_topic` or `on_topic`, and the scores behind it.

    It also keeps what the verdict was reached on (the compiled topics and the vectors read), so that `trace` can
    tell each topic's score and the thresholds they met: computed only when asked (the console's playground),
    never on a visitor's turn."""

    verdict: str
    topic: str | None
    allowed: float
    denied: float
    compiled: CompiledTopics | None = field(default=None, compare=False, repr=False)
    allowed_vector: Matrix | None = field(default=None, compare=False, repr=False)  # what `allowed` was read on
    denied_vector: Matrix | None = field(default=None, compare=False, repr=False)
    penalty: float = field(default=0.0, compare=False)  # taken off the allowed scores of a reading with context
    strict: float = field(default=0.0, compare=False)  # added to the off-topic threshold (a second reading)
    reading: str = field(default="message", compare=False)  # message | with the previous turn | clause
    encoder: str = field(default="MiniLM", compare=False)

    def trace(self) -> dict[str, Any]:
        """The verdict, each topic's score and the thresholds they were compared with."""
        ct = self.compiled
        out: dict[str, Any] = {"verdict": self.verdict, "topic": self.topic, "allowed": round(self.allowed, 3),
                               "denied": round(self.denied, 3), "reading": self.reading, "encoder": self.encoder}
        if ct is None:
            return out
        out["thresholds"] = {
            "off_topic": None if ct.threshold is None else round(ct.threshold + self.strict, 3),
            "deny_pair": DENY_PAIR, "deny_close": DENY_CLOSE, "deny_single": DENY_SINGLE, "deny_margin": DENY_MARGIN,
            "deny_weak": round(ct.deny_weak, 3), "relax": ct.relax, "background_above": bg.ABOVE,
            "background_below": bg.BELOW}
        if ct.background is not None and self.denied_vector is not None:
            out["background"] = round(bg.score(ct.background, self.denied_vector), 3)
        out["allowed_topics"] = _allowed_scores(ct, self.allowed_vector, self.penalty)
        out["denied_topics"] = _denied_scores(ct, self.denied_vector)
        return out


def _allowed_scores(ct: CompiledTopics, vector: Matrix | None, penalty: float) -> list[dict[str, Any]]:
    """Each allowed topic's best similarity to the message (its examples and its description's phrases)."""
    if vector is None or not len(ct.allowed) or len(ct.allowed_ids) != len(ct.allowed):
        return []
    sims = ct.allowed @ vector
    best: dict[str, float] = {}
    for topic, score in zip(ct.allowed_ids, sims.tolist(), strict=True):
        best[topic] = max(best.get(topic, -1.0), score)
    return sorted(({"id": t, "score": round(s - penalty, 3)} for t, s in best.items()), key=lambda d: -d["score"])


def _denied_scores(ct: CompiledTopics, vector: Matrix | None) -> list[dict[str, Any]]:
    """Each denied topic's closest example and the mean of its two closest, as `denied_topic` compares them."""
    if vector is None or not len(ct.denied):
        return []
    sims = ct.denied @ vector
    out = []
    for topic, rows in ct.denied_rows:
        top = np.sort(sims[rows])[::-1][:2]
        out.append({"id": topic, "closest": round(float(top[0]), 3),
                    "pair": round(float(top.mean()), 3) if len(top) == 2 else None})
    return sorted(out, key=lambda d: -d["closest"])


def has_examples(topics: Topics | None) -> bool:
    return topics is not None and bool(topics.allowed or topics.denied)


def threshold(allowed: Matrix, bounds: tuple[float, float] | None = None) -> float | None:
    """A low percentile of each allowed example's best similarity to the others, minus a margin."""
    if len(allowed) < MIN_ALLOWED:
        return None
    sims = allowed @ allowed.T
    np.fill_diagonal(sims, -1.0)
    loo = sims.max(axis=1)
    low, high = bounds or THRESHOLD_RANGE
    return float(np.clip(np.percentile(loo, LOO_PERCENTILE) - LOO_MARGIN, low, high))


def description_phrases(description: str) -> list[str]:
    """A description as it is read: whole, and each of the things it lists ("Bike repairs and servicing:
    punctures, tyres and tyre pressure, brakes" → "punctures", "tyre pressure", …), each a reading of its own,
    so that a visitor's two trade words meet the listed two words rather than a sentence about everything."""
    parts = [p.strip() for p in LIST_BREAK.split(description)]
    return [description, *(p for p in parts if p and p != description)]


def compile_topics(topics: Topics, embed: Embed, multilingual: Embed | None = None) -> CompiledTopics:
    """Embed every example, and each topic's description beside its examples (a description names the trade
    words the few examples miss: "tyres, brakes, gears, wheel truing"). The off-topic threshold is calibrated
    on the examples alone: a description is worded unlike a visitor, and would loosen it. With `multilingual`,
    the same again with that encoder, for messages not in English."""
    examples = list(dict.fromkeys(e for t in topics.allowed for e in t.examples))
    descriptions = [d for d in dict.fromkeys(p for t in topics.allowed if t.description
                                             for p in description_phrases(t.description)) if d not in examples]
    denied_rows = [(t.id, e) for t in topics.denied
                   for e in dict.fromkeys([*t.examples, *([t.description] if t.description else [])])]
    allowed_texts = examples + descriptions
    texts = allowed_texts + [e for _, e in denied_rows] + list(bg.REQUESTS)
    ids = tuple(i for i, _ in denied_rows)
    owner: dict[str, str] = {}
    for t in topics.allowed:
        for text in [*t.examples, *(description_phrases(t.description) if t.description else [])]:
            owner.setdefault(text, t.id)
    allowed_ids = tuple(owner[text] for text in allowed_texts)

    def compiled(vectors: Matrix, bounds: tuple[float, float], weak: float, relax: float,
                 other: CompiledTopics | None) -> CompiledTopics:
        allowed, denied = vectors[:len(allowed_texts)], vectors[len(allowed_texts):len(allowed_texts) + len(ids)]
        requests = bg.kept(vectors[len(allowed_texts) + len(ids):], allowed)
        return CompiledTopics(topics, allowed, denied, ids, threshold(allowed[:len(examples)], bounds), other, weak,
                              allowed_ids, requests, relax)

    other = (compiled(multilingual(texts), THRESHOLD_RANGE_MULTILINGUAL, DENY_WEAK_MULTILINGUAL,
                      bg.RELAX_MULTILINGUAL, None) if multilingual else None)
    return compiled(embed(texts), THRESHOLD_RANGE, DENY_WEAK, bg.RELAX, other)


def _allowed_score(ct: CompiledTopics, vectors: Matrix) -> Matrix:
    if not len(ct.allowed):
        return np.zeros(len(vectors), dtype=np.float32)
    best: Matrix = (vectors @ ct.allowed.T).max(axis=1)
    return best


def decide(ct: CompiledTopics, vector: Matrix, context_vector: Matrix | None = None,
           penalty: float = CONTEXT_PENALTY, strict: float = 0.0, whole: bool = True) -> TopicMatch:
    """The verdict for one message's unit vector, and optionally its reading with the previous turn (which
    counts for the allowed topics, less `penalty`; a denied topic is judged on the message alone). `strict`
    raises the off-topic threshold (a second reading). A clause (`whole=False`) is not held against the background
    requests for its denied topic: a clause of an on-topic message is often off-topic on its own."""
    allowed = float(_allowed_score(ct, vector[None, :])[0])
    read_on, taken, reading = vector, 0.0, "message"
    if context_vector is not None:
        with_previous = float(_allowed_score(ct, context_vector[None, :])[0]) - penalty
        if with_previous > allowed:
            allowed, read_on, taken, reading = with_previous, context_vector, penalty, "with the previous turn"

    def found(verdict: str, topic: str | None, denied: float) -> TopicMatch:
        return TopicMatch(verdict, topic, allowed, denied, ct, read_on, vector, taken, strict, reading)

    topic, denied = denied_topic(ct, vector)
    if topic is not None and denied >= allowed + DENY_MARGIN:
        return found("denied", topic, denied)
    if ct.threshold is not None and _off_topic(ct, allowed, vector, strict):
        nearest, score = nearest_denied(ct, vector)
        if nearest is not None and _weakly_denied(ct, vector, allowed, score, whole):
            return found("denied", nearest, score)  # refused either way: for the right reason
        return found("off_topic", None, denied)
    return found("on_topic", None, denied)


def _off_topic(ct: CompiledTopics, allowed: float, vector: Matrix, strict: float) -> bool:
    """Under the threshold, or (with background requests) off it as `background.off_topic` judges."""
    assert ct.threshold is not None
    if ct.background is None:
        return allowed < ct.threshold + strict
    return bg.off_topic(allowed, ct.threshold + strict, ct.relax, bg.score(ct.background, vector))


def _weakly_denied(ct: CompiledTopics, vector: Matrix, allowed: float, score: float, whole: bool) -> bool:
    """Whether a message refused as off-topic is refused as the denied topic whose example is `score` close: close in
    itself (`deny_weak`), or closer to it than to the allowed topics and to every background request."""
    if score >= ct.deny_weak and score >= allowed + DENY_MARGIN:
        return True
    return (whole and ct.background is not None and score >= allowed
            and score >= bg.score(ct.background, vector) + bg.DENIED_OVER)


def nearest_denied(ct: CompiledTopics, vector: Matrix) -> tuple[str | None, float]:
    """The denied topic with the example closest to the message, and that similarity."""
    if not len(ct.denied):
        return None, 0.0
    sims = ct.denied @ vector
    best = int(np.argmax(sims))
    return ct.denied_ids[best], float(sims[best])


def denied_topic(ct: CompiledTopics, vector: Matrix) -> tuple[str | None, float]:
    """The denied topic the message is close to (the closest, when several are), or None; and the similarity
    of that topic's closest example (of any topic's, when none is close)."""
    if not len(ct.denied):
        return None, 0.0
    sims = ct.denied @ vector
    found, best = None, float(sims.max())
    for topic, rows in ct.denied_rows:
        top = np.sort(sims[rows])[::-1][:2]
        first = float(top[0])
        if len(top) == 1:
            close = first >= DENY_SINGLE
        else:
            close = first >= DENY_CLOSE or float(top.mean()) >= DENY_PAIR
        if close and (found is None or first > best):
            found, best = topic, first
    return found, best


def is_followup(text: str) -> bool:
    return len(text.split()) <= FOLLOWUP_WORDS


def refers_back(text: str) -> bool:
    """Whether a short message points back at the previous turn and adds at most one word of its own."""
    words = WORDS.findall(text.casefold().replace("’", "'"))
    if not words or len(words) > FOLLOWUP_WORDS or REFERS_BACK.isdisjoint(words):
        return False
    return sum(w not in REFERS_BACK and w not in FUNCTION_WORDS for w in words) <= 1


def with_context(message: Matrix, previous: Matrix) -> Matrix:
    """The reading of a follow-up together with the previous turn: the mean of the two unit vectors,
    normalized (close to embedding the two texts joined, and free when the previous turn's vector is known)."""
    joined = message + previous
    norm = float(np.linalg.norm(joined))
    return joined / norm if norm > 0 else message


def clauses(text: str) -> list[str]:
    """The asks of a longer message: its sentences and clauses of at least `CLAUSE_WORDS` words, when there are
    several ("my wrist is swollen after I fell off my bike, how much paracetamol can I take" → two)."""
    if len(text.split()) < SPLIT_WORDS:
        return []
    parts = [p.strip() for p in CLAUSE_BREAK.split(text)]
    parts = [p for p in parts if len(p.split()) >= CLAUSE_WORDS]
    return parts[:MAX_CLAUSES] if len(parts) > 1 else []


def _denied_in_clause(ct: CompiledTopics, vectors: Matrix) -> tuple[str | None, float, Matrix | None]:
    """A denied topic that one clause asks about, the clause judged on its own ("which painkiller should I take"
    after a sentence about the helmet the visitor bought), and that clause's vector."""
    for vector in vectors:
        found = decide(ct, vector, whole=False)
        if found.verdict == "denied":
            return found.topic, found.denied, vector
    return None, 0.0, None


def match(ct: CompiledTopics, text: str, embed: Embed, previous: str | None = None,
          multilingual: Embed | None = None, lenient: float = 0.0) -> TopicMatch:
    """Embed the message (and for a short follow-up read it with the previous turn too) and decide. A denied
    topic is also looked for in each clause of a longer message, so that the tenant's own words around a denied
    ask ("I fell off my bike, how much paracetamol…") do not hide it.

    With the multilingual encoder (topics compiled with it), the message is read twice when the first reading
    finds it off-topic: a message not in English first with the multilingual encoder, then with MiniLM (product
    names and trade words are often English in any language: "der Jira-Import bricht ab"); an English message
    first with MiniLM, then with the multilingual encoder held to a stricter threshold (`SECOND_READING`). A
    second reading can only find the message on topic. Only MiniLM readings take the previous turn into
    account: the follow-up constants were chosen on its scale. `lenient` lowers every reading's off-topic
    threshold (`check.PII_LENIENCY`)."""
    if ct.multilingual is None or multilingual is None:
        return _match(ct, text, embed, previous, -lenient)

    def read(topics: CompiledTopics, english_model: bool, strict: float, first: bool) -> TopicMatch:
        found = _match(topics, text, embed if english_model else multilingual, previous if english_model else None,
                       strict - lenient, denied_clauses=first)  # a second reading only looks for the allowed topics
        return replace(found, encoder="MiniLM" if english_model else "multilingual")

    english = is_english(text)
    found = _read_twice(ct, english, read)
    if found.verdict != "on_topic" or ct.threshold is None or not len(ct.denied):
        return found
    readings = [(ct, embed), (ct.multilingual, multilingual)]
    both = agreement.agreed(readings if english else readings[::-1], text)
    if both is None:
        return found
    return replace(found, verdict="denied", topic=both[0], denied=both[1], reading="both encoders")


def either(ct: CompiledTopics, english_vector: Matrix, multilingual_vector: Matrix, english: bool) -> TopicMatch:
    """`match` for one message whose two vectors are known (no previous turn, no clauses): the benchmarks' way."""
    if ct.multilingual is None:
        return decide(ct, english_vector)

    def read(topics: CompiledTopics, english_model: bool, strict: float, first: bool) -> TopicMatch:
        return decide(topics, english_vector if english_model else multilingual_vector, strict=strict)

    return _read_twice(ct, english, read)


Reading = Callable[[CompiledTopics, bool, float, bool], TopicMatch]  # (topics, English model?, strict, first?)


def _read_twice(ct: CompiledTopics, english: bool, read: Reading) -> TopicMatch:
    """The first reading with the message's own model; when it finds the message off-topic, a second with the other
    model (the multilingual one held to `SECOND_READING` for an English message), which can only let it through."""
    assert ct.multilingual is not None
    first, second = (ct, ct.multilingual) if english else (ct.multilingual, ct)
    found = read(first, english, 0.0, True)
    if found.verdict != "off_topic":
        return found
    again = read(second, not english, SECOND_READING if english else 0.0, False)
    return again if again.verdict == "on_topic" else found


def _match(ct: CompiledTopics, text: str, embed: Embed, previous: str | None, strict: float = 0.0,
           denied_clauses: bool = True) -> TopicMatch:
    parts = clauses(text) if denied_clauses and len(ct.denied) else []
    followup = bool(previous) and bool(len(ct.allowed)) and is_followup(text)
    vectors = embed([text, *([previous] if followup and previous else []), *parts])
    message, rest = vectors[0], vectors[1:]
    if parts:
        topic, denied, clause = _denied_in_clause(ct, rest[-len(parts):])
        if topic is not None:
            allowed = float(_allowed_score(ct, message[None, :])[0])
            return TopicMatch("denied", topic, allowed, denied, ct, message, clause, strict=strict, reading="clause")
    if not followup:
        return decide(ct, message, strict=strict)
    before = rest[0]
    if refers_back(text):  # about what the previous turn was about, give or take a word
        return decide(ct, message, before, penalty=0.0, strict=strict)
    if float(message @ before) < FOLLOWUP_RELATED:
        return decide(ct, message, strict=strict)
    return decide(ct, message, with_context(message, before), strict=strict)
