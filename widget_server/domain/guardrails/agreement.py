"""Two encoders agreeing on a denied topic: the mixed ask.

A visitor who wraps a denied ask in the tenant's own words ("do i need to declare the interest from my savings
account on my tax return") is closer to the allowed topics than to the denied one, so the rule of `topics.decide`
(the denied topic beats the allowed score by a margin) lets the message through. What tells such a message from an
on-topic one that merely shares a word with a denied example is that both encoders, MiniLM and the multilingual
one, trained apart on other data, put it near the same denied topic. When they do, each at `CLOSE` to one example
or `PAIR` to two on average, and the topic is within `MARGIN` of the allowed score in both, the denied topic wins.

Only for a policy with allowed topics, on a message the first reading let through: a policy of denied topics
alone (XSTest's) is judged as before. Chosen on the development tenants (bench/tenants/): 23 of their 78 denied
asks met it and none of their 230 on-topic and PII messages; a looser 0.45 / 0.38 took 31 and one on-topic message.
The second encoder runs only when the first finds a topic this close.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Protocol

import numpy as np
import numpy.typing as npt

from widget_server.domain.guardrails.embeddings import Matrix

CLOSE = 0.50
PAIR = 0.42
MARGIN = 0.0

Embed = Callable[[list[str]], Matrix]


class CompiledTopics(Protocol):
    """What this module reads of `topics.CompiledTopics` (which imports this module)."""

    @property
    def allowed(self) -> Matrix: ...

    @property
    def denied(self) -> Matrix: ...

    @property
    def denied_rows(self) -> tuple[tuple[str, npt.NDArray[np.intp]], ...]: ...


def close_topics(ct: CompiledTopics, vector: Matrix) -> dict[str, float]:
    """The denied topics this encoder puts the message near, with their closest example's similarity, when that is
    within `MARGIN` of the best allowed score."""
    if not len(ct.denied) or not len(ct.allowed):
        return {}
    allowed = float((ct.allowed @ vector).max())
    sims = ct.denied @ vector
    out = {}
    for topic, rows in ct.denied_rows:
        top = np.sort(sims[rows])[::-1][:2]
        first = float(top[0])
        if (first >= CLOSE or float(top.mean()) >= PAIR) and first >= allowed - MARGIN:
            out[topic] = first
    return out


def agreed(readings: Sequence[tuple[CompiledTopics, Embed]], text: str) -> tuple[str, float] | None:
    """The denied topic every reading (topics compiled for an encoder, that encoder) puts `text` near, the one with the
    best closest example over them when several; None when they do not agree. Stops at the first that finds none."""
    common: dict[str, float] | None = None
    for topics, embed in readings:
        found = close_topics(topics, embed([text])[0])
        common = found if common is None else {t: min(s, found[t]) for t, s in common.items() if t in found}
        if not common:
            return None
    assert common is not None
    topic = max(common, key=lambda t: common[t])
    return topic, common[topic]
