"""Background requests: what visitors ask a support bot that belongs to no business (the weather, a recipe, a joke,
homework), the contrast an allowed score is judged against.

A message's best similarity to a tenant's allowed examples says how close it is to the policy, not whether it is
closer to the policy than to the rest of the world: with five short examples per topic an on-topic message in the
trade's own words ("dogs allowed inside?") can score under the off-topic threshold, and an unrelated one that shares a
word ("is it gonna snow this week" at a restaurant open this week) above it. These sentences are that rest of the
world. A message is off-topic when a background request beats its allowed score by `ABOVE`, whatever the threshold;
and a message a little under the threshold (`RELAX`, per encoder) is on-topic when its allowed score beats every
background request by `BELOW`. A background request close to the policy's own allowed texts (`OWN`) is dropped at
compile time: a weather service's bot keeps its weather questions.

The sentences are generic (none is a development tenant's message, nor from CLINC150 or XSTest), in English: the
multilingual encoder puts their translations next to them. The constants were chosen on the development tenants
(bench/tenants/) and CLINC150 `val` + `oos_val`: with these, `val`'s average off-topic F1 went 0.932 -> 0.918 with
in-scope refused 2.5 % -> 1.7 %, and through `check_input` the tenants' on-topic allowed 92/75/88 % -> 93/80/90 %,
off-topic refused 100/96/92 % -> 100/100/96 % (bank/saas/restaurant). A larger `RELAX` or a smaller `BELOW`
lets more on-topic messages through on the tenants and more CLINC out-of-domain ones in: `RELAX` 0.05 for MiniLM
too gave `val` F1 0.910, `BELOW` 0.10 gave 0.911, both 0.08 / 0.0 gave 0.837.
"""

from __future__ import annotations

from widget_server.domain.guardrails.embeddings import Matrix

ABOVE = 0.10  # a background request this much closer than the allowed topics makes the message off-topic
BELOW = 0.15  # a message within RELAX under the threshold is on-topic when this much closer than any background
RELAX = 0.03  # MiniLM
RELAX_MULTILINGUAL = 0.05  # the multilingual encoder, whose similarities run lower and closer together
# A message refused as off-topic is refused as the denied topic it is nearest when that topic's example is closer to
# it than the allowed topics and this much closer than any background request ("puis-je attaquer mon voisin en
# justice" is a legal question, not small talk); it changes the refusal's text and reason, never whether to refuse.
# On the development tenants: +4 denied asks with their own reason, no off-topic message moved (0.03 moved one).
DENIED_OVER = 0.05
OWN = 0.60  # a background request this close to one of the policy's allowed texts is the tenant's business

REQUESTS = (
    "what's the weather like tomorrow", "will it rain this weekend", "who won the football match last night",
    "what's the score of the game", "give me a recipe for chocolate cake", "how long do I cook rice",
    "plan a holiday itinerary for me", "find me a cheap flight and a hotel", "recommend a good movie to watch tonight",
    "suggest a book to read", "what's a good song to listen to", "tell me a joke", "write a poem about love",
    "write an essay for my school assignment", "help me with my math homework", "explain how photosynthesis works",
    "who was the first president of the united states", "what is the capital of japan", "how tall is the eiffel tower",
    "when did world war two end", "write a python function that sorts a list",
    "how do I fix a bug in my javascript code", "what's a good workout to lose weight",
    "how many calories should I eat a day", "how do I fix a leaking faucet", "how do I change a car tire",
    "what gift should I buy for my girlfriend", "how do I get over a breakup", "what should I name my dog",
    "how do I train my cat", "translate this sentence into spanish", "what time is it in new york",
    "what's the latest news about the election", "who is the richest person in the world",
    "what's the meaning of life", "are aliens real", "how do I learn to play the piano",
    "what's the best smartphone to buy", "how do I grow tomatoes in my garden", "tell me a fun fact",
)


def kept(background: Matrix, allowed: Matrix) -> Matrix:
    """The background requests that are not the policy's business: none of them within `OWN` of an allowed text."""
    if not len(background) or not len(allowed):
        return background
    out: Matrix = background[(background @ allowed.T).max(axis=1) < OWN]
    return out


def score(background: Matrix, vector: Matrix) -> float:
    """The message's best similarity to a background request (-1 when there is none)."""
    return float((background @ vector).max()) if len(background) else -1.0


def off_topic(allowed: float, threshold: float, relax: float, background: float) -> bool:
    """Whether an allowed score of `allowed` is off-topic against `threshold`, given the best background score."""
    if allowed <= background - ABOVE:
        return True
    if allowed >= threshold:
        return False
    return allowed < threshold - relax or allowed < background + BELOW

