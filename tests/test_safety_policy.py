"""`/v1/safety-policy` over HTTP, and the policy at work on a real widget socket with a real upstream."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from tests.conftest import Stack

POLICY: dict[str, Any] = {
    "version": 1,
    "blocked_terms": [{"id": "rival", "terms": ["acme rival", "rivalco"], "match": "word", "action": "refuse"}],
    "pii": {"entities": ["email", "credit_card", "iban"], "action": "mask"},
    "escalation": {"after_refusals": 2},
    "refusals": {"default": "I can't talk about that."},
}


def put(stack: Stack, doc: Any, sk: str | None = None) -> httpx.Response:
    return httpx.put(f"{stack.url}/v1/safety-policy", json=doc, headers={"Authorization": f"Bearer {sk or stack.sk}"})


def test_put_get_delete(stack: Stack) -> None:
    url = f"{stack.url}/v1/safety-policy"
    assert httpx.get(url, headers=stack.auth).json()["error"]["code"] == "policy.not_found"
    r = put(stack, POLICY)
    assert r.status_code == 200
    stored = r.json()["policy"]
    assert stored["blocked_terms"][0]["terms"] == ["acme rival", "rivalco"]
    assert stored["output"] == {"mode": "strict"}  # defaults filled in
    got = httpx.get(url, headers=stack.auth).json()
    assert got["policy"] == stored and got["updated_at"]
    assert httpx.delete(url, headers=stack.auth).status_code == 204
    assert httpx.get(url, headers=stack.auth).status_code == 404
    assert httpx.delete(url, headers=stack.auth).status_code == 404


def test_a_policy_can_be_sent_as_yaml(stack: Stack) -> None:
    body = yaml.safe_dump(POLICY)
    r = httpx.put(f"{stack.url}/v1/safety-policy", content=body,
                  headers={**stack.auth, "Content-Type": "application/yaml"})
    assert r.status_code == 200 and r.json()["policy"]["refusals"]["default"] == "I can't talk about that."


@pytest.mark.parametrize(("change", "field"), [
    ({"patterns": [{"id": "t", "regex": "TCK-(\\d{6}", "applies_to": ["input"]}]}, "patterns.0.regex"),
    ({"blocked_terms": [{"id": "rival", "terms": ["x"], "colour": "red"}]}, "blocked_terms.0.colour"),
    ({"topics": {"denied": [{"id": "medical", "examples": []}]}}, "topics.denied.0.examples"),
])
def test_an_invalid_policy_is_a_422_naming_the_field(stack: Stack, change: dict[str, Any], field: str) -> None:
    r = put(stack, {**POLICY, **change})
    assert r.status_code == 422
    error = r.json()["error"]
    assert error["code"] == "policy.invalid" and error["type"] == "policy"
    assert error["details"]["errors"][0]["field"] == field and field in error["message"]
    assert error["request_id"] == r.headers["x-request-id"]
    assert httpx.get(f"{stack.url}/v1/safety-policy", headers=stack.auth).status_code == 404  # nothing stored


def _over(limit: str) -> int:
    from widget_server.domain.guardrails.policy import LIMITS

    return LIMITS[limit] + 1


@pytest.mark.parametrize(("change", "field", "limit"), [
    ({"blocked_terms": [{"id": "long", "terms": ["x" * 12_000]}]}, "blocked_terms.0.terms.0", "term_chars"),
    ({"blocked_terms": [{"id": f"g{i}", "terms": ["x"]} for i in range(_over("term_groups"))]}, "blocked_terms",
     "term_groups"),
    ({"blocked_terms": [{"id": f"g{g}", "terms": [f"t{g}-{i}" for i in range(600)]} for g in range(2)]},
     "(policy)", "terms"),
    ({"patterns": [{"id": f"p{i}", "regex": "a", "applies_to": ["input"]} for i in range(_over("patterns"))]},
     "patterns", "patterns"),
    ({"patterns": [{"id": "big", "regex": "|".join(f"word{i}" for i in range(400)), "applies_to": ["input"]}]},
     "patterns.0.regex", "pattern_chars"),
    ({"patterns": [{"id": "prog", "regex": r"\w{1000}" * 7, "applies_to": ["input"]}]},
     "patterns.0.regex", "pattern_program"),
    ({"topics": {"allowed": [{"id": "a", "examples": ["x" * 201]}]}}, "topics.allowed.0.examples.0",
     "example_chars"),
    ({"topics": {"allowed": [{"id": f"t{i}", "examples": [f"e{i}-{j}" for j in range(50)]} for i in range(7)]}},
     "topics", "examples"),
    ({"refusals": {"default": "no " * 1000}}, "refusals.default", "text_chars"),
])
def test_every_size_a_tenant_chooses_is_bounded(stack: Stack, change: dict[str, Any], field: str, limit: str) -> None:
    """One 12,000-character term cost 263 MiB to compile; every tenant-chosen size now has a documented limit."""
    from widget_server.domain.guardrails.policy import LIMITS

    r = put(stack, {**POLICY, **change})
    assert r.status_code == 422, r.text
    errors = r.json()["error"]["details"]["errors"]
    assert errors[0]["field"].startswith(field) and str(LIMITS[limit]) in errors[0]["message"], errors[0]
    assert httpx.get(f"{stack.url}/v1/safety-policy", headers=stack.auth).status_code == 404  # nothing stored
    readme = (Path(__file__).parents[1] / "README.md").read_text()
    assert f"`{limit}`" in readme, f"the limit {limit} is not documented"


def test_policies_are_per_tenant(stack: Stack) -> None:
    other = stack.tenant()
    assert put(stack, POLICY).status_code == 200
    r = httpx.get(f"{stack.url}/v1/safety-policy", headers={"Authorization": f"Bearer {other['sk']}"})
    assert r.status_code == 404
    assert httpx.delete(f"{stack.url}/v1/safety-policy",
                        headers={"Authorization": f"Bearer {other['sk']}"}).status_code == 404
    assert httpx.get(f"{stack.url}/v1/safety-policy", headers=stack.auth).status_code == 200
    assert httpx.get(f"{stack.url}/v1/safety-policy").status_code == 401


def _conversation(stack: Stack, conversation_id: str) -> dict[str, Any]:
    return httpx.get(f"{stack.url}/v1/conversations/{conversation_id}", headers=stack.auth).json()  # type: ignore[no-any-return]


def test_a_blocked_term_streamed_one_character_per_chunk_never_reaches_the_client(stack: Stack) -> None:
    assert put(stack, POLICY).status_code == 200
    persona = stack.persona("spell:Sure! Compared with RivalCo we are cheaper.")
    ready, frames = stack.turn(persona, "how do you compare?")
    shown = "".join(f["text"] for f in frames if f["type"] == "reply.delta")
    assert shown == "Sure! Compared with "  # what came before the term, and not one character of it
    guardrail = next(f for f in frames if f["type"] == "guardrail")
    assert (guardrail["action"], guardrail["reason"], guardrail["text"]) == (
        "refuse", "term.rival", "I can't talk about that.")
    assert frames[-1]["finish_reason"] == "guardrail"
    reply = _conversation(stack, ready["conversation_id"])["messages"][-1]
    assert reply["text"] == "I can't talk about that." and "rivalco" not in str(reply).lower()


def test_a_blocked_term_that_ends_the_reply_is_caught_when_the_stream_ends(stack: Stack) -> None:
    assert put(stack, POLICY).status_code == 200
    # A word term: only the end of the stream decides.
    _, frames = stack.turn(stack.persona("spell:Ask acme rival"), "who else?")
    assert "".join(f["text"] for f in frames if f["type"] == "reply.delta") == "Ask "
    assert next(f for f in frames if f["type"] == "guardrail")["reason"] == "term.rival"
    assert frames[-1]["finish_reason"] == "guardrail"


def test_pii_in_the_stream_is_masked_and_the_rest_arrives_whole(stack: Stack) -> None:
    assert put(stack, POLICY).status_code == 200
    persona = stack.persona("spell:Write to help@shop.example.com, thanks!")
    ready, frames = stack.turn(persona, "how do I reach you?")
    assert "".join(f["text"] for f in frames if f["type"] == "reply.delta") == "Write to [email], thanks!"
    assert frames[-1]["finish_reason"] == "stop"
    reply = _conversation(stack, ready["conversation_id"])["messages"][-1]
    assert reply["text"] == "Write to [email], thanks!"
    assert reply["guardrail"] == {"action": "mask", "reason": "pii.email", "source": "output"}


def test_a_refused_message_is_stored_with_its_pii_masked(stack: Stack) -> None:
    assert put(stack, POLICY).status_code == 200
    ready, frames = stack.turn(stack.persona("echo"), "rivalco took my card 4111111111111111")
    assert frames[0]["text"] == "rivalco took my card [card]"
    assert next(f for f in frames if f["type"] == "guardrail")["reason"] == "term.rival"
    assert "4111" not in str(_conversation(stack, ready["conversation_id"])["messages"])


def test_a_card_number_in_the_input_is_masked_when_shown_and_stored(stack: Stack) -> None:
    assert put(stack, POLICY).status_code == 200
    ready, frames = stack.turn(stack.persona("echo"), "my card is 4111 1111 1111 1111 ok")
    assert frames[0]["type"] == "message.accepted" and frames[0]["text"] == "my card is [card] ok"
    messages = _conversation(stack, ready["conversation_id"])["messages"]
    assert messages[0]["text"] == "my card is [card] ok"
    assert messages[0]["guardrail"] == {"action": "mask", "reason": "pii.credit_card", "source": "input"}
    assert all("4111" not in m["text"] for m in messages)  # (timestamps may hold those digits)
    end = next(f for f in frames if f["type"] == "reply.end")  # the widget hears of the mask, and where it was
    assert end["guardrails"] == [{"action": "mask", "reason": "pii.credit_card", "source": "input",
                                  "spans": [{"start": 11, "end": 30}]}]


def test_asking_for_a_person_and_repeated_refusals_escalate(stack: Stack) -> None:
    assert put(stack, POLICY).status_code == 200
    ws = stack.open(stack.persona("echo"))
    ready = ws.recv()
    ws.send({"type": "message", "client_id": "c1", "text": "echte Person bitte"})
    frames = ws.until("reply.end")
    guardrail = next(f for f in frames if f["type"] == "guardrail")
    assert (guardrail["action"], guardrail["reason"]) == ("escalate", "escalation.requested")
    assert {"type": "escalation", "status": "requested"}.items() <= next(
        f for f in frames if f["type"] == "escalation").items()
    assert _conversation(stack, ready["conversation_id"])["status"] == "escalated"
    # (While it waits for a person the persona says nothing: tests/test_takeover.py.) Refusals in a row escalate
    # too, in a conversation of its own.
    ws = stack.open(stack.persona("echo"))
    ready = ws.recv()
    reasons = []
    for i in range(3):
        ws.send({"type": "message", "client_id": f"r{i}", "text": "tell me about rivalco"})
        reasons.append(next(f for f in ws.until("reply.end") if f["type"] == "guardrail")["reason"])
    assert reasons == ["term.rival", "term.rival", "escalation.refusals"]
    assert _conversation(stack, ready["conversation_id"])["status"] == "escalated"


def test_deleting_the_policy_lets_everything_through_again(stack: Stack) -> None:
    assert put(stack, POLICY).status_code == 200
    assert httpx.delete(f"{stack.url}/v1/safety-policy", headers=stack.auth).status_code == 204
    ready, frames = stack.turn(stack.persona("echo"), "rivalco 4111 1111 1111 1111")
    assert frames[0]["text"] == "rivalco 4111 1111 1111 1111" and frames[-1]["finish_reason"] == "stop"


def test_the_rest_prompt_applies_the_policy(stack: Stack) -> None:
    assert put(stack, POLICY).status_code == 200
    persona = stack.persona("spell:Mail help@shop.example.com today")
    url = f"{stack.url}/v1/personas/{persona}/prompt"
    refused = httpx.post(url, json={"message": "RivalCo?"}, headers=stack.auth).json()
    assert refused["text"] == "I can't talk about that."
    assert refused["guardrail"] == {"action": "refuse", "reason": "term.rival", "source": "input"}
    masked = httpx.post(url, json={"message": "how to reach you"}, headers=stack.auth).json()
    assert masked["text"] == "Mail [email] today"
    assert masked["guardrail"] == {"action": "mask", "reason": "pii.email", "source": "output"}


def test_a_policy_is_stored_on_each_database(stack_factory, db_url: str) -> None:  # type: ignore[no-untyped-def]
    stack = stack_factory(database_url=db_url)
    assert put(stack, POLICY).status_code == 200
    changed = {**POLICY, "refusals": {"default": "No."}}
    assert put(stack, changed).status_code == 200  # replaces
    got = httpx.get(f"{stack.url}/v1/safety-policy", headers=stack.auth).json()
    assert got["policy"]["refusals"]["default"] == "No."
    ws = stack.open(stack.persona("echo"))
    ws.recv()
    ws.send({"type": "message", "client_id": "c1", "text": "rivalco"})
    assert next(f for f in ws.until("reply.end") if f["type"] == "guardrail")["text"] == "No."


def test_a_term_no_database_can_hold_is_a_422_not_a_500(stack: Stack) -> None:
    r = put(stack, {**POLICY, "blocked_terms": [{"id": "nul", "terms": ["bad\u0000term"]}]})
    assert r.status_code == 422 and r.json()["error"]["details"]["errors"][0]["field"] == "blocked_terms.0.terms"
