"""Resume: a dropped socket loses nothing. The text the client assembles equals the stored message exactly."""

from __future__ import annotations

from collections.abc import Callable

import httpx
import pytest

from tests.conftest import Stack

REDIS = "redis://127.0.0.1:6379/0"


@pytest.fixture(params=["memory bus", "redis bus"])
def stack(request: pytest.FixtureRequest, stack_factory: Callable[..., Stack]) -> Stack:
    """Every resume test on both versions of the conversation bus (one node; several: test_nodes.py)."""
    if request.param == "memory bus":
        return stack_factory()
    # Limits in Redis are shared by the whole suite's sessions from 127.0.0.1: not what these tests are about.
    return stack_factory(redis_url=REDIS, rate_limit_sessions=10_000, rate_limit_hellos=10_000)

EXPECTED = "".join(f"w{i} " for i in range(1, 61))


def _text(frames: list[dict], message_id: str) -> str:  # type: ignore[type-arg]
    return "".join(f["text"] for f in frames if f["type"] == "reply.delta" and f["message_id"] == message_id)


def _stored(stack: Stack, conversation_id: str) -> list[dict]:  # type: ignore[type-arg]
    r = httpx.get(f"{stack.url}/v1/conversations/{conversation_id}", headers=stack.auth)
    return r.json()["messages"]  # type: ignore[no-any-return]


def _drop_mid_reply(stack: Stack, persona: str) -> tuple[str, str, list[dict], str]:  # type: ignore[type-arg]
    token, visitor = stack.token(persona)
    ws = stack.open(persona, token=token)
    conversation_id = ws.recv()["conversation_id"]
    ws.send({"type": "message", "client_id": "c1", "text": "tell me a long story"})
    start = ws.until("reply.start")[-1]
    for _ in range(3):
        ws.until("reply.delta")
    ws.close()  # the connection drops in the middle of the reply
    return conversation_id, visitor, ws.frames, start["message_id"]


def test_reconnect_with_last_seq_gets_exactly_the_rest(stack: Stack) -> None:
    persona = stack.persona("pace-20-60")
    conversation_id, visitor, before, message_id = _drop_mid_reply(stack, persona)
    assert 0 < len(_text(before, message_id)) < len(EXPECTED)
    token, _ = stack.token(persona, visitor_id=visitor)
    ws = stack.open(persona, token=token, resume={"conversation_id": conversation_id, "last_seq": before[-1]["seq"]})
    ready = ws.recv()
    assert ready["type"] == "ready" and ready["resumed"] is True and ready["conversation_id"] == conversation_id
    after = ws.until("reply.end")
    assert after[0]["seq"] == before[-1]["seq"] + 1  # no frame skipped, none repeated
    text = _text(before, message_id) + _text(after, message_id)
    assert text == EXPECTED
    assert _stored(stack, conversation_id)[-1]["text"] == text


def test_a_reload_replays_the_whole_conversation_from_seq_zero(stack: Stack) -> None:
    persona = stack.persona("pace-20-60")
    conversation_id, visitor, _, message_id = _drop_mid_reply(stack, persona)
    token, _ = stack.token(persona, visitor_id=visitor)
    ws = stack.open(persona, token=token, resume={"conversation_id": conversation_id, "last_seq": 0})
    assert ws.recv()["resumed"] is True
    frames = ws.until("reply.end")
    assert frames[0]["type"] == "message.accepted" and frames[0]["text"] == "tell me a long story"
    assert _text(frames, message_id) == EXPECTED == _stored(stack, conversation_id)[-1]["text"]


def test_a_seq_the_log_does_not_hold_gets_the_stored_history(stack: Stack) -> None:
    persona = stack.persona("words-5")
    token, visitor = stack.token(persona)
    ws = stack.open(persona, token=token)
    conversation_id = ws.recv()["conversation_id"]
    ws.send({"type": "message", "client_id": "c1", "text": "hi"})
    ws.until("reply.end")
    token, _ = stack.token(persona, visitor_id=visitor)
    ws2 = stack.open(persona, token=token, resume={"conversation_id": conversation_id, "last_seq": 10_000})
    ready = ws2.recv()
    assert ready["resumed"] is False and ready["conversation_id"] == conversation_id
    assert [(m["role"], m["text"]) for m in ready["messages"]] == [("visitor", "hi"), ("persona", "w1 w2 w3 w4 w5 ")]


def test_another_visitor_cannot_resume_someone_elses_conversation(stack: Stack) -> None:
    persona = stack.persona("words-3")
    ws = stack.open(persona)
    conversation_id = ws.recv()["conversation_id"]
    ws.send({"type": "message", "client_id": "c1", "text": "my secret"})
    ws.until("reply.end")
    intruder = stack.open(persona, resume={"conversation_id": conversation_id, "last_seq": 0})
    ready = intruder.recv()
    assert ready["conversation_id"] != conversation_id and "messages" not in ready
    intruder.send({"type": "ping"})
    assert intruder.recv()["type"] == "pong"  # nothing of the other conversation was replayed


def test_a_newer_socket_takes_the_conversation_over(stack: Stack) -> None:
    persona = stack.persona("words-3")
    token, visitor = stack.token(persona)
    first = stack.open(persona, token=token)
    conversation_id = first.recv()["conversation_id"]
    token, _ = stack.token(persona, visitor_id=visitor)
    second = stack.open(persona, token=token, resume={"conversation_id": conversation_id, "last_seq": 0})
    assert second.recv()["resumed"] is True
    assert first.close_code() == 4409
    second.send({"type": "message", "client_id": "c", "text": "still works"})
    assert second.until("reply.end")[-1]["finish_reason"] == "stop"


def test_a_node_that_forgot_the_conversation_sends_the_stored_transcript(stack_factory) -> None:  # type: ignore[no-untyped-def]
    first = stack_factory()
    persona = first.persona("words-2")
    token, visitor = first.token(persona)
    ws = first.open(persona, token=token)
    conversation_id = ws.recv()["conversation_id"]
    ws.send({"type": "message", "client_id": "c1", "text": "hello"})
    ws.until("reply.end")
    ws.close()
    # The same database and keys, a new server process: its channels are empty.
    from tests.support.servers import serve_in_thread
    from widget_server.app import create_app

    url = first.exits.enter_context(serve_in_thread(create_app(first.settings)))
    second = Stack(url, first.settings, first.tenant_id, first.sk, first.pk, first.exits)
    token, _ = second.token(persona, visitor_id=visitor)
    ws = second.open(persona, token=token, resume={"conversation_id": conversation_id, "last_seq": 0})
    ready = ws.recv()
    assert ready["resumed"] is False and ready["conversation_id"] == conversation_id
    assert [(m["role"], m["text"]) for m in ready["messages"]] == [("visitor", "hello"), ("persona", "w1 w2 ")]


def test_a_resent_client_id_is_not_answered_twice(stack: Stack) -> None:
    ws = stack.open(stack.persona("words-2"))
    ws.recv()
    ws.send({"type": "message", "client_id": "same", "text": "once"})
    ws.send({"type": "message", "client_id": "same", "text": "once"})
    ws.until("reply.end")
    ws.send({"type": "ping"})
    assert ws.until("pong")[-1]["type"] == "pong"
    assert sum(f["type"] == "message.accepted" for f in ws.frames) == 1
