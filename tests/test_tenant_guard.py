"""The tenant guard at work on a real server: a conversation's guardrail state is stored with it (it survives a
restart), and a policy or persona topics that cannot be compiled refuse every message instead of letting it through."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest

from tests.conftest import Stack
from tests.support.servers import serve_in_thread
from tests.support.upstream import Upstream
from widget_server.app import create_app
from widget_server.backends.storage import open_storage

SHOP_TOPICS: dict[str, Any] = {
    "allowed": [
        {"id": "orders", "examples": ["where is my order", "track my package", "when will my delivery arrive",
                                     "I want to return an item", "how do I get a refund"]},
        {"id": "products", "examples": ["do you have this shirt in blue", "what sizes does the jacket come in",
                                       "do you sell winter coats"]},
    ],
    "denied": [],
    "off_topic": "refuse",
}


def prompt(stack: Stack, persona: str, message: str, conversation_id: str | None = None) -> dict[str, Any]:
    body = {"message": message, **({"conversation_id": conversation_id} if conversation_id else {})}
    r = httpx.post(f"{stack.url}/v1/personas/{persona}/prompt", json=body, headers=stack.auth, timeout=30)
    assert r.status_code == 200, r.text
    return r.json()  # type: ignore[no-any-return]


def restarted(stack: Stack) -> Stack:
    """A new server process on the same database and keys: nothing of the first one's memory is left."""
    url = stack.exits.enter_context(serve_in_thread(create_app(stack.settings)))
    return Stack(url, stack.settings, stack.tenant_id, stack.sk, stack.pk, stack.exits)


def reasons(answer: dict[str, Any]) -> list[str]:
    return [g["reason"] for g in answer["guardrails"]]


def test_refusals_in_a_row_are_counted_across_a_restart(stack: Stack) -> None:
    policy = {"version": 1, "blocked_terms": [{"id": "rival", "terms": ["rivalco"]}],
              "escalation": {"after_refusals": 2}}
    assert httpx.put(f"{stack.url}/v1/safety-policy", json=policy, headers=stack.auth).status_code == 200
    persona = stack.persona("echo")
    first = prompt(stack, persona, "is rivalco cheaper?")
    conversation = first["conversation_id"]
    assert reasons(first) == ["term.rival"]
    assert reasons(prompt(stack, persona, "and rivalco's bikes?", conversation)) == ["term.rival"]
    again = restarted(stack)
    third = prompt(again, persona, "rivalco, then?", conversation)
    assert reasons(third) == ["escalation.refusals"] and third["guardrail"]["action"] == "escalate"


def test_a_follow_up_is_read_with_the_previous_turn_after_a_restart(stack: Stack) -> None:
    persona = stack.persona("echo", topics=SHOP_TOPICS)
    first = prompt(stack, persona, "do you have this shirt in blue")
    assert first["finish_reason"] == "stop"
    again = restarted(stack)
    follow_up = prompt(again, persona, "and what about the red one?", first["conversation_id"])
    assert follow_up["finish_reason"] == "stop" and follow_up["guardrails"] == []
    # The same words with no previous turn are off-topic: it was the stored turn that made them a follow-up.
    assert reasons(prompt(again, persona, "and what about the red one?")) == ["topic.off_topic"]


def _write_raw(stack: Stack, **docs: Any) -> None:
    """Write documents straight into storage, as an older server (or a hand edit) may have left them."""
    async def run() -> None:
        storage = await open_storage(stack.settings.resolved_database_url)
        try:
            if "policy" in docs:
                await storage.put_policy(stack.tenant_id, docs["policy"])
            if "persona" in docs:
                slug, doc = docs["persona"]
                row = await storage.get_persona(stack.tenant_id, slug)
                assert row is not None
                await storage.update_persona(stack.tenant_id, row["id"], slug, {**row["doc"], **doc})
        finally:
            await storage.close()
    asyncio.run(run())


def test_a_stored_policy_that_no_longer_compiles_refuses_every_message(
    stack: Stack, upstream: tuple[Upstream, str]
) -> None:
    persona = stack.persona("echo")
    _write_raw(stack, policy={"version": 1, "patterns": [{"id": "bad", "regex": "(unclosed"}]})
    calls = len(upstream[0].requests)
    answer = prompt(stack, persona, "hello there")
    assert answer["finish_reason"] == "guardrail" and reasons(answer) == ["policy.unavailable"]
    assert answer["text"] and "hello" not in answer["text"]
    assert len(upstream[0].requests) == calls, "the model was called for an unchecked message"


def test_persona_topics_that_cannot_be_compiled_refuse_every_message(
    stack: Stack, upstream: tuple[Upstream, str]
) -> None:
    persona = stack.persona("echo")
    _write_raw(stack, persona=(persona, {"topics": {"allowed": [{"id": "bike repair", "examples": ["fix my bike"]}],
                                                    "denied": [], "off_topic": "refuse"}}))
    calls = len(upstream[0].requests)
    answer = prompt(stack, persona, "what is the capital of France?")
    assert answer["finish_reason"] == "guardrail" and reasons(answer) == ["policy.unavailable"]
    assert len(upstream[0].requests) == calls


def largest_policy() -> dict[str, Any]:
    """A policy at every documented limit (README, Guardrails: limits)."""
    from widget_server.domain.guardrails.policy import LIMITS

    words = "order parcel delivery refund return invoice shipping tracking basket voucher size colour".split()

    def sentence(i: int, topic: int) -> str:
        text = " ".join(words[(i * 7 + topic + k) % len(words)] + str(i) for k in range(60))
        return text[:LIMITS["example_chars"]]

    per_topic = LIMITS["examples"] // 20
    return {
        "version": 1,
        "blocked_terms": [{"id": f"g{g}", "terms": [f"{g}-{i}-" + "x" * (LIMITS["term_chars"] - 12) for i in
                                                    range(LIMITS["terms"] // LIMITS["term_groups"])]}
                          for g in range(LIMITS["term_groups"])],
        "patterns": [{"id": f"p{i}", "regex": rf"TCK-{i}\d{{6}}", "applies_to": ["output"]}
                     for i in range(LIMITS["patterns"])],
        "pii": {"entities": ["email", "phone", "credit_card", "iban", "us_ssn"]},
        "topics": {"allowed": [{"id": f"a{t}", "examples": [sentence(i, t) for i in range(per_topic)]}
                               for t in range(10)],
                   "denied": [{"id": f"d{t}", "examples": [sentence(i, 10 + t) for i in range(per_topic)]}
                              for t in range(10)]},
    }


def test_health_answers_while_the_largest_policy_is_compiled_for_a_save_and_a_prompt(
        stack: Stack, monkeypatch: pytest.MonkeyPatch) -> None:
    """Compiling and embedding run off the event loop: before, 150 topic examples held /health for 3.8 s and a
    persona's first prompt stalled every tenant's replies for 2.6 s. Here each compile waits, once started, until
    /health has answered: were it on the event loop, nothing could answer and the compile would fail its wait."""
    import threading

    from widget_server.domain.guardrails import tenant_guard

    persona = stack.persona("echo", topics=SHOP_TOPICS)
    prompt(stack, persona, "where is my order")  # the embedding model is loaded once per process: not held
    compiling, answered, done = threading.Event(), threading.Event(), threading.Event()

    def held(fn: Any) -> Any:
        def run(arg: Any) -> Any:
            compiling.set()
            if not answered.wait(timeout=60):
                raise RuntimeError("/health did not answer while a policy compiled")
            answered.clear()
            return fn(arg)
        return run

    monkeypatch.setattr(tenant_guard, "validate", held(tenant_guard.validate))
    monkeypatch.setattr(tenant_guard, "compile_persona_topics", held(tenant_guard.compile_persona_topics))
    results: dict[str, Any] = {}

    def save_and_use() -> None:
        try:
            r = httpx.put(f"{stack.url}/v1/safety-policy", json=largest_policy(), headers=stack.auth, timeout=300)
            results["put"] = r.status_code
            results["prompt"] = prompt(stack, stack.persona("echo", topics=SHOP_TOPICS),
                                       "order3 parcel4 delivery5")["finish_reason"]
        finally:
            done.set()

    worker = threading.Thread(target=save_and_use)
    worker.start()
    held_answers = 0
    with httpx.Client(timeout=30) as client:
        while not done.is_set():
            if compiling.wait(timeout=0.1):  # a compile has started and waits
                compiling.clear()
                assert client.get(f"{stack.url}/health").status_code == 200
                held_answers += 1
                answered.set()
    worker.join()
    assert results["put"] == 200 and results["prompt"] in ("stop", "guardrail")
    assert held_answers >= 2  # the policy's compile on save, the new persona's topics on its first prompt
