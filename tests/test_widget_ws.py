"""The widget protocol over a real socket: handshake, streaming, cancel, and every refusal."""

from __future__ import annotations

import time
from collections.abc import Callable

import httpx
import pytest

from tests.conftest import Stack
from widget_server.domain.tenants import SessionSigner


def test_message_streams_in_deltas_and_ends_with_usage_and_timing(stack: Stack) -> None:
    ws = stack.open(stack.persona("pace-30-6"))
    ready = ws.recv()
    assert ready["type"] == "ready" and ready["persona"]["greeting"] == "Hi!" and ready["status"] == "bot"
    ws.send({"type": "message", "client_id": "c1", "text": "hello there"})
    frames = ws.until("reply.end")
    accepted = frames[0]
    assert accepted["type"] == "message.accepted" and accepted["client_id"] == "c1"
    deltas = [f for f in frames if f["type"] == "reply.delta"]
    assert len(deltas) >= 2
    assert "".join(d["text"] for d in deltas) == "w1 w2 w3 w4 w5 w6 "
    end = frames[-1]
    assert end["finish_reason"] == "stop"
    assert end["usage"] == {"input_tokens": 11, "output_tokens": 6}
    assert end["timing"]["ttft_ms"] >= 0 and end["timing"]["total_ms"] >= end["timing"]["ttft_ms"]
    seqs = [f["seq"] for f in frames]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)


def test_deltas_are_coalesced(stack: Stack) -> None:
    ws = stack.open(stack.persona("words-300"))
    ws.recv()
    ws.send({"type": "message", "client_id": "c1", "text": "go"})
    frames = ws.until("reply.end")
    deltas = [f for f in frames if f["type"] == "reply.delta"]
    assert "".join(d["text"] for d in deltas) == "".join(f"w{i} " for i in range(1, 301))
    assert len(deltas) < 300  # 300 tokens as fast as the upstream can: far fewer frames


def test_cancel_stops_the_reply_and_stores_what_was_sent(stack: Stack) -> None:
    ws = stack.open(stack.persona("pace-50-100"))
    ready = ws.recv()
    ws.send({"type": "message", "client_id": "c1", "text": "long please"})
    start = ws.until("reply.start")[-1]
    ws.until("reply.delta")
    ws.send({"type": "cancel", "message_id": start["message_id"]})
    frames = ws.until("reply.end")
    assert frames[-1]["finish_reason"] == "cancelled"
    conv = httpx.get(f"{stack.url}/v1/conversations/{ready['conversation_id']}", headers=stack.auth).json()
    stored = conv["messages"][-1]
    assert stored["finish_reason"] == "cancelled"
    shown = "".join(f["text"] for f in ws.frames if f["type"] == "reply.delta")
    assert stored["text"] == shown and 0 < len(shown) < len("".join(f"w{i} " for i in range(1, 101)))


def test_bad_token_closes_4401(stack: Stack) -> None:
    ws = stack.connect(stack.origin)
    ws.send({"type": "hello", "token": "not-a-token"})
    err = ws.recv()
    assert err["type"] == "error" and err["code"] == "auth.invalid_token"
    assert ws.close_code() == 4401


def test_expired_token_closes_4401(stack: Stack) -> None:
    fresh, _ = stack.token(stack.persona())
    claims = SessionSigner(stack.settings.secret_key.get_secret_value(), 900).verify(fresh)  # type: ignore[union-attr]
    issued_long_ago = SessionSigner(stack.settings.secret_key.get_secret_value(), 900,  # type: ignore[union-attr]
                                    clock=lambda: time.time() - 901)
    token = issued_long_ago.sign(claims)  # the same session, signed 901 s ago: past its 15 minutes
    ws = stack.connect(stack.origin)
    ws.send({"type": "hello", "token": token})
    assert ws.recv()["code"] == "auth.token_expired"
    assert ws.close_code() == 4401


def test_session_refuses_missing_or_unlisted_origin(stack: Stack) -> None:
    persona = stack.persona()
    for headers in ({}, {"Origin": "https://evil.example"}, {"Origin": "null"}):
        r = httpx.post(f"{stack.url}/v1/widget/sessions", json={"key": stack.pk, "persona": persona}, headers=headers)
        assert r.status_code == 403, headers
        assert r.json()["error"]["code"] == "auth.origin_not_allowed"
    assert "set-cookie" not in r.headers


def test_socket_from_another_origin_closes_4403(stack: Stack) -> None:
    token, _ = stack.token(stack.persona())
    for origin in ("https://evil.example", None):
        ws = stack.connect(origin)
        ws.send({"type": "hello", "token": token})
        assert ws.recv()["code"] == "auth.origin_not_allowed"
        assert ws.close_code() == 4403


def test_no_hello_closes_4408(stack_factory: Callable[..., Stack]) -> None:
    stack = stack_factory(hello_timeout_s=1)
    ws = stack.connect(stack.origin)
    assert ws.recv(timeout=30)["code"] == "hello.timeout"
    assert ws.close_code() == 4408


def test_frame_over_16_kib_closes_1009(stack: Stack) -> None:
    ws = stack.open(stack.persona())
    ws.recv()
    ws.send({"type": "message", "client_id": "big", "text": "x" * 17000})
    assert ws.recv()["code"] == "frame.too_large"
    assert ws.close_code() == 1009


def test_malformed_json_gets_an_error_frame_and_the_socket_keeps_serving(stack: Stack) -> None:
    ws = stack.open(stack.persona())
    ws.recv()
    ws.send("{not json")
    err = ws.recv()
    assert err["type"] == "error" and err["code"] == "frame.invalid_json" and err["retryable"] is False
    ws.send({"type": "what"})
    assert ws.recv()["code"] == "frame.unknown_type"
    ws.send({"type": "ping"})
    assert ws.recv()["type"] == "pong"
    ws.send({"type": "message", "client_id": "c", "text": "still here"})
    assert ws.until("reply.end")[-1]["finish_reason"] == "stop"


@pytest.mark.parametrize("redis_url", [None, "redis://127.0.0.1:6379/0"], ids=["memory", "redis"])
def test_rate_limit_per_visitor(stack_factory, redis_url: str | None) -> None:  # type: ignore[no-untyped-def]
    stack = stack_factory(rate_limit_messages=2, rate_limit_window_s=60, redis_url=redis_url)
    ws = stack.open(stack.persona("words-1"))
    ws.recv()
    for i in range(2):
        ws.send({"type": "message", "client_id": f"c{i}", "text": "hi"})
        ws.until("reply.end")
    ws.send({"type": "message", "client_id": "c3", "text": "hi"})
    err = ws.until("error")[-1]
    assert err["code"] == "rate_limited" and err["retryable"] is True and err["details"]["retry_after_s"] > 0
    for _ in range(3):
        ws.send({"type": "message", "client_id": "again", "text": "hi"})
    assert ws.close_code() == 4429


def test_feedback_is_stored(stack: Stack) -> None:
    ws = stack.open(stack.persona())
    ready = ws.recv()
    ws.send({"type": "message", "client_id": "c1", "text": "rate me"})
    end = ws.until("reply.end")[-1]
    ws.send({"type": "feedback", "message_id": end["message_id"], "rating": "down", "comment": "meh"})
    ws.send({"type": "feedback", "message_id": "msg_nope", "rating": "up"})
    assert ws.recv()["code"] == "message.not_found"
    conv = httpx.get(f"{stack.url}/v1/conversations/{ready['conversation_id']}", headers=stack.auth).json()
    assert conv["messages"][-1]["feedback"] == {"rating": "down", "comment": "meh"}


def test_session_sets_no_cookie_and_answers_cors(stack: Stack) -> None:
    persona = stack.persona()
    pre = httpx.options(f"{stack.url}/v1/widget/sessions", headers={
        "Origin": stack.origin, "Access-Control-Request-Method": "POST"})
    assert pre.status_code == 204 and pre.headers["access-control-allow-origin"] == stack.origin
    r = stack.session(persona)
    assert r.status_code == 201 and "set-cookie" not in r.headers
    body = r.json()
    assert body["ws_url"].startswith("ws://") and body["persona"]["name"] == "Tester"
    assert "system_prompt" not in body["persona"]


def test_a_conversation_is_stored_on_each_database(stack_factory, db_url: str) -> None:  # type: ignore[no-untyped-def]
    stack = stack_factory(database_url=db_url)
    ws = stack.open(stack.persona("echo"))
    conversation_id = ws.recv()["conversation_id"]
    for text in ("first message", "second message"):
        ws.send({"type": "message", "client_id": text, "text": text})
        assert ws.until("reply.end")[-1]["finish_reason"] == "stop"
    conv = httpx.get(f"{stack.url}/v1/conversations/{conversation_id}", headers=stack.auth).json()
    assert conv["channel"] == "widget" and conv["status"] == "bot"
    assert [(m["role"], m["text"]) for m in conv["messages"]] == [
        ("visitor", "first message"), ("persona", "first message"),
        ("visitor", "second message"), ("persona", "second message")]


def test_earlier_turns_reach_the_model_as_context(stack: Stack, upstream) -> None:  # type: ignore[no-untyped-def]
    fake, _ = upstream
    persona = stack.persona("echo")
    ws = stack.open(persona)
    ws.recv()
    for text in ("my name is Ann", "what is my name"):
        ws.send({"type": "message", "client_id": text, "text": text})
        ws.until("reply.end")
    sent = fake.requests[-1]["messages"]
    assert [(m["role"], m["content"]) for m in sent] == [
        ("system", "You test."), ("user", "my name is Ann"), ("assistant", "my name is Ann"),
        ("user", "what is my name")]
