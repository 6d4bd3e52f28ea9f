"""`POST /v1/personas/{id}/prompt` and `/prompt/stream` against a real server and the fake upstream."""

from __future__ import annotations

import json
from typing import Any

import httpx

from tests.conftest import Stack
from tests.support.errors import assert_error
from tests.support.upstream import Upstream


def prompt(stack: Stack, persona: str, timeout: float = 30, sk: str | None = None, **body: Any) -> httpx.Response:
    headers = {"Authorization": f"Bearer {sk}"} if sk else stack.auth
    return httpx.post(f"{stack.url}/v1/personas/{persona}/prompt", json=body, headers=headers, timeout=timeout)


def conversation(stack: Stack, conversation_id: str) -> dict[str, Any]:
    r = httpx.get(f"{stack.url}/v1/conversations/{conversation_id}", headers=stack.auth)
    assert r.status_code == 200, r.text
    return r.json()  # type: ignore[no-any-return]


def sse_events(text: str) -> list[tuple[str, dict[str, Any]]]:
    """(event name, JSON data) for each Server-Sent Event of a body."""
    events = []
    for block in text.replace("\r\n", "\n").split("\n\n"):
        if not block.strip():
            continue
        fields: dict[str, list[str]] = {}
        for line in block.split("\n"):
            if line.startswith(":"):
                continue
            name, _, value = line.partition(":")
            fields.setdefault(name, []).append(value.removeprefix(" "))
        events.append((fields["event"][0], json.loads("\n".join(fields["data"]))))
    return events


def stream(stack: Stack, persona: str, **body: Any) -> tuple[httpx.Response, list[tuple[str, dict[str, Any]]]]:
    with httpx.stream("POST", f"{stack.url}/v1/personas/{persona}/prompt/stream", json=body, headers=stack.auth,
                      timeout=30) as r:
        text = r.read().decode()
    return r, sse_events(text) if r.status_code == 200 else []


def test_prompt_answers_with_the_reply_usage_and_timing(stack: Stack) -> None:
    r = prompt(stack, stack.persona("echo"), message="hello there world")
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["text"] == "hello there world"
    assert body["conversation_id"].startswith("conv_") and body["message_id"].startswith("msg_")
    assert body["usage"] == {"input_tokens": 11, "output_tokens": 3}
    assert body["timing"]["ttft_ms"] >= 0 and body["timing"]["total_ms"] >= body["timing"]["ttft_ms"]
    assert "guardrail" not in body
    stored = conversation(stack, body["conversation_id"])
    assert stored["channel"] == "api"
    assert [(m["role"], m["text"]) for m in stored["messages"]] == [
        ("visitor", "hello there world"), ("persona", "hello there world")]
    assert stored["messages"][1]["id"] == body["message_id"]


def test_the_persona_is_found_by_id_as_well_as_slug(stack: Stack) -> None:
    slug = stack.persona("echo")
    persona_id = httpx.get(f"{stack.url}/v1/personas/{slug}", headers=stack.auth).json()["id"]
    assert prompt(stack, persona_id, message="by id").json()["text"] == "by id"


def test_the_system_prompt_reaches_the_model(stack: Stack, upstream: tuple[Upstream, str]) -> None:
    slug = stack.persona("echo", system_prompt="You are Ada, unique-marker-4711.")
    assert prompt(stack, slug, message="marker check").status_code == 200
    sent = next(b for b in reversed(upstream[0].requests) if b["messages"][-1]["content"] == "marker check")
    assert sent["messages"][0] == {"role": "system", "content": "You are Ada, unique-marker-4711."}


def test_continuing_a_conversation_appends_and_sends_the_history(
    stack: Stack, upstream: tuple[Upstream, str]
) -> None:
    slug = stack.persona("echo")
    first = prompt(stack, slug, message="first question").json()
    second = prompt(stack, slug, message="second question", conversation_id=first["conversation_id"])
    assert second.status_code == 200, second.text
    assert second.json()["conversation_id"] == first["conversation_id"]
    assert second.json()["message_id"] != first["message_id"]
    stored = conversation(stack, first["conversation_id"])
    assert [(m["role"], m["text"]) for m in stored["messages"]] == [
        ("visitor", "first question"), ("persona", "first question"),
        ("visitor", "second question"), ("persona", "second question")]
    sent = next(b for b in reversed(upstream[0].requests) if b["messages"][-1]["content"] == "second question")
    assert [(m["role"], m["content"]) for m in sent["messages"][1:]] == [
        ("user", "first question"), ("assistant", "first question"), ("user", "second question")]
    listed = httpx.get(f"{stack.url}/v1/conversations", headers=stack.auth).json()["data"]
    assert [c["id"] for c in listed] == [first["conversation_id"]]


def test_visitor_id_is_kept_on_the_conversation(stack: Stack) -> None:
    body = prompt(stack, stack.persona("echo"), message="hi", visitor_id="visitor-42").json()
    assert conversation(stack, body["conversation_id"])["visitor_id"] == "visitor-42"


def test_a_conversation_of_another_tenant_is_404(stack: Stack) -> None:
    other = stack.tenant()
    theirs_slug = "theirs"
    r = httpx.post(f"{stack.url}/v1/personas", json={"name": "Theirs", "slug": theirs_slug,
                                                       "provider": {"kind": "openai", "model": "echo"}},
                   headers={"Authorization": f"Bearer {other['sk']}"})
    assert r.status_code == 201, r.text
    theirs = prompt(stack, theirs_slug, sk=other["sk"], message="secret stuff").json()
    mine = stack.persona("echo")
    r = prompt(stack, mine, message="let me in", conversation_id=theirs["conversation_id"])
    assert_error(r, 404, "conversation.not_found", "not_found")
    # nothing was appended to their conversation
    got = httpx.get(f"{stack.url}/v1/conversations/{theirs['conversation_id']}",
                    headers={"Authorization": f"Bearer {other['sk']}"}).json()
    assert [m["text"] for m in got["messages"]] == ["secret stuff", "secret stuff"]


def test_a_conversation_of_another_persona_is_404(stack: Stack) -> None:
    first = prompt(stack, stack.persona("echo"), message="hi").json()
    r = prompt(stack, stack.persona("echo"), message="hi", conversation_id=first["conversation_id"])
    assert_error(r, 404, "conversation.not_found")


def test_unknown_conversation_is_404(stack: Stack) -> None:
    r = prompt(stack, stack.persona("echo"), message="hi", conversation_id="conv_nope")
    assert_error(r, 404, "conversation.not_found")


def test_bad_prompt_bodies_are_400(stack: Stack) -> None:
    slug = stack.persona("echo")
    err = assert_error(prompt(stack, slug), 400, "request.invalid", "invalid_request")
    assert {e["field"] for e in err["details"]["errors"]} == {"message"}
    err = assert_error(prompt(stack, slug, message="hi", mood="grumpy"), 400, "request.invalid")
    assert {e["field"] for e in err["details"]["errors"]} == {"mood"}
    assert_error(prompt(stack, slug, message="   "), 400, type_="invalid_request")
    assert_error(prompt(stack, slug, message=42), 400, type_="invalid_request")
    assert_error(prompt(stack, slug, message="hi", visitor_id="v" * 81), 400, type_="invalid_request")
    assert_error(prompt(stack, slug, message="x" * (stack.settings.max_message_chars + 1)), 400,
                 type_="invalid_request")
    r = httpx.post(f"{stack.url}/v1/personas/{slug}/prompt", content=b"{nope", headers=stack.auth)
    assert_error(r, 400, type_="invalid_request")
    assert httpx.get(f"{stack.url}/v1/conversations", headers=stack.auth).json()["data"] == []


def test_prompt_needs_a_key(stack: Stack) -> None:
    slug = stack.persona("echo")
    r = httpx.post(f"{stack.url}/v1/personas/{slug}/prompt", json={"message": "hi"})
    assert_error(r, 401, type_="auth")


def test_unknown_persona_is_404(stack: Stack) -> None:
    assert_error(prompt(stack, "nobody", message="hi"), 404, "persona.not_found")


def test_a_failing_upstream_is_502_provider_within_the_timeout(stack_factory: Any) -> None:
    stack = stack_factory(provider_timeout_s=2, provider_retries=1)
    slug = stack.persona("fail")
    # the client gives up after the server's own deadline (with room for one retry): the error must come first
    r = prompt(stack, slug, timeout=2 * stack.settings.provider_timeout_s + 2, message="hi")
    err = assert_error(r, 502, "provider.error", "provider")
    assert err["details"]["conversation_id"].startswith("conv_")
    stored = conversation(stack, err["details"]["conversation_id"])
    assert [(m["role"], m["finish_reason"]) for m in stored["messages"]] == [("visitor", None), ("persona", "error")]


def test_a_stalled_upstream_is_504_provider(stack_factory: Any) -> None:
    stack = stack_factory(provider_timeout_s=2, provider_stall_s=1)
    r = prompt(stack, stack.persona("stall"), timeout=10, message="hi")
    err = assert_error(r, 504, "provider.timeout", "provider")
    stored = conversation(stack, err["details"]["conversation_id"])
    assert stored["messages"][-1]["finish_reason"] == "error"
    assert stored["messages"][-1]["text"] == "one two three"


def test_stream_sends_events_whose_deltas_make_the_stored_text(stack: Stack) -> None:
    slug = stack.persona("words-40")
    r, events = stream(stack, slug, message="go")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/event-stream")
    assert r.headers["x-request-id"].startswith("req_")
    names = [name for name, _ in events]
    assert names[0] == "message.accepted" and names[1] == "reply.start" and names[-1] == "reply.end"
    assert set(names[2:-1]) == {"reply.delta"}
    assert all(data["type"] == name for name, data in events)
    conversation_id = events[0][1]["conversation_id"]
    assert r.headers["x-conversation-id"] == conversation_id
    message_id = events[1][1]["message_id"]
    assert all(data["message_id"] == message_id for _, data in events[1:])
    end = events[-1][1]
    assert end["finish_reason"] == "stop" and end["usage"] == {"input_tokens": 11, "output_tokens": 40}
    assert end["timing"]["total_ms"] >= end["timing"]["ttft_ms"] >= 0
    text = "".join(data["text"] for name, data in events if name == "reply.delta")
    assert text == "".join(f"w{i} " for i in range(1, 41))
    stored = conversation(stack, conversation_id)
    assert stored["messages"][-1]["id"] == message_id and stored["messages"][-1]["text"] == text


def test_stream_echo_continues_a_conversation(stack: Stack) -> None:
    slug = stack.persona("echo")
    first = prompt(stack, slug, message="one").json()
    _, events = stream(stack, slug, message="two words", conversation_id=first["conversation_id"])
    assert events[0][1]["conversation_id"] == first["conversation_id"]
    text = "".join(data["text"] for name, data in events if name == "reply.delta")
    assert text == "two words"
    stored = conversation(stack, first["conversation_id"])
    assert [m["text"] for m in stored["messages"]] == ["one", "one", "two words", "two words"]


def test_stream_reports_a_failing_upstream_as_an_error_event(stack_factory: Any) -> None:
    stack = stack_factory(provider_timeout_s=2)
    r, events = stream(stack, stack.persona("fail"), message="hi")
    assert r.status_code == 200
    names = [name for name, _ in events]
    assert "error" in names and names[-1] == "reply.end"
    error = dict(events)["error"]
    assert error["code"] == "provider.error" and error["retryable"] is True
    assert events[-1][1]["finish_reason"] == "error"


def test_stream_errors_before_the_reply_are_json(stack: Stack) -> None:
    r, _ = stream(stack, "nobody", message="hi")
    assert_error(r, 404, "persona.not_found")
    r, _ = stream(stack, stack.persona("echo"))
    assert_error(r, 400, "request.invalid")


def test_every_guardrail_decision_of_the_turn_is_reported_input_masks_included(stack: Stack) -> None:
    policy = {"version": 1, "pii": {"entities": ["email"], "action": "mask", "applies_to": ["input"]},
              "patterns": [{"id": "ticket", "regex": r"TCK-\d{6}", "action": "mask", "applies_to": ["output"]}]}
    assert httpx.put(f"{stack.url}/v1/safety-policy", json=policy, headers=stack.auth).status_code == 200
    slug = stack.persona("spell:your ticket is TCK-123456")
    expected = [{"action": "mask", "reason": "pii.email", "source": "input", "spans": [{"start": 11, "end": 26}]},
                {"action": "mask", "reason": "pattern.ticket", "source": "output"}]
    body = prompt(stack, slug, message="my mail is ada@example.com").json()
    assert body["text"] == "your ticket is [redacted]" and body["guardrails"] == expected
    _, events = stream(stack, slug, message="my mail is ada@example.com")
    assert events[0][1]["text"] == "my mail is [email]"
    assert events[-1][0] == "reply.end" and events[-1][1]["guardrails"] == expected


def test_a_refused_message_reports_its_masks_too(stack: Stack) -> None:
    policy = {"version": 1, "pii": {"entities": ["email"], "action": "mask"},
              "blocked_terms": [{"id": "rival", "terms": ["rivalco"]}]}
    assert httpx.put(f"{stack.url}/v1/safety-policy", json=policy, headers=stack.auth).status_code == 200
    body = prompt(stack, stack.persona("echo"), message="rivalco wrote to ada@example.com, and a@b.io").json()
    assert body["finish_reason"] == "guardrail"
    assert body["guardrails"] == [
        {"action": "refuse", "reason": "term.rival", "source": "input"},
        {"action": "mask", "reason": "pii.email", "source": "input",
         "spans": [{"start": 17, "end": 32}, {"start": 38, "end": 44}]}]


def test_a_stream_the_client_leaves_is_stored_cancelled_with_one_reply_completed(stack: Stack) -> None:
    slug = stack.persona("pace-100-40")
    with httpx.stream("POST", f"{stack.url}/v1/personas/{slug}/prompt/stream", json={"message": "go"},
                      headers=stack.auth, timeout=30) as r:
        conversation_id = r.headers["x-conversation-id"]
        for line in r.iter_lines():
            if line == "event: reply.delta":
                break  # the visitor goes away mid-reply
    completed = stack.wait_events(lambda got: len(got) >= 1, type="reply.completed", conversation=conversation_id)
    assert [e["attributes"]["finish_reason"] for e in completed] == ["cancelled"]
    messages = conversation(stack, conversation_id)["messages"]
    assert messages[-1]["role"] == "persona" and messages[-1]["finish_reason"] == "cancelled"
    assert messages[-1]["text"].startswith("w1 ") and len(messages[-1]["text"]) < len("w1 ") * 40
    # exactly one: nothing more arrives once everything the server has buffered is written
    assert len(stack.events(type="reply.completed", conversation=conversation_id)) == 1
