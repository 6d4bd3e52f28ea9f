"""Human takeover through a real server: a visitor asks for a person on the widget's socket, an integration (a
helpdesk, over REST with the secret key) claims the conversation, answers in the visitor's widget and hands it back.
What a visitor notices: nobody but the person answers while they have it (the model is not called at all), the
person's messages and name arrive in order and survive a reconnect, notes never reach them, and after a resolve
the bot answers again knowing what the person said. (In the browser and the console: test_console_inbox.py.)"""

from __future__ import annotations

import asyncio
import secrets
from datetime import timedelta
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from tests.conftest import Stack
from tests.support.upstream import Upstream
from widget_server.backends.storage import open_storage
from widget_server.backends.storage.tables import conversations
from widget_server.clock import now

POLICY = {"version": 1, "escalation": {"on_request": True}}
DANA = {"id": "agent-7", "name": "Dana"}
SAM = {"id": "agent-9", "name": "Sam"}


def _post(stack: Stack, conversation_id: str, action: str, body: dict[str, Any] | None = None,
          sk: str | None = None) -> httpx.Response:
    return httpx.post(f"{stack.url}/v1/conversations/{conversation_id}/{action}", json=body or {},
                      headers={"Authorization": f"Bearer {sk or stack.sk}"})


def _conversation(stack: Stack, conversation_id: str) -> dict[str, Any]:
    r = httpx.get(f"{stack.url}/v1/conversations/{conversation_id}", headers=stack.auth)
    assert r.status_code == 200, r.text
    return r.json()  # type: ignore[no-any-return]


def _escalated(stack: Stack, marker: str) -> tuple[Any, str, str]:
    """A widget conversation waiting for a person: (socket, conversation id, persona)."""
    assert httpx.put(f"{stack.url}/v1/safety-policy", json=POLICY, headers=stack.auth).status_code == 200
    persona = stack.persona("echo", system_prompt=f"You test. {marker}")
    ws = stack.open(persona)
    conversation_id = ws.recv()["conversation_id"]
    ws.send({"type": "message", "client_id": "c1", "text": "can I talk to a human please"})
    assert ws.until("escalation")[-1]["status"] == "requested"
    ws.until("reply.end")
    return ws, conversation_id, persona


def _calls(upstream: tuple[Upstream, str], marker: str) -> list[dict[str, Any]]:
    return [r for r in upstream[0].requests if marker in str(r["messages"][0]["content"])]


def test_a_person_takes_over_answers_in_the_widget_and_hands_back(
        stack: Stack, upstream: tuple[Upstream, str]) -> None:
    marker = secrets.token_hex(6)
    ws, conversation_id, persona = _escalated(stack, marker)
    queue = httpx.get(f"{stack.url}/v1/conversations", params={"status": "escalated"}, headers=stack.auth).json()
    assert [c["id"] for c in queue["data"]] == [conversation_id]
    assert queue["data"][0]["escalation_reason"] == "escalation.requested" and queue["data"][0]["agent"] is None

    # The visitor writes while waiting: stored and accepted, and nothing answers.
    ws.send({"type": "message", "client_id": "c2", "text": "hello? my order 1234 is late"})
    assert ws.until("message.accepted")[-1]["text"] == "hello? my order 1234 is late"

    claimed = _post(stack, conversation_id, "claim", {"agent": DANA})
    assert claimed.status_code == 200, claimed.text
    assert claimed.json()["status"] == "agent" and claimed.json()["agent"] == DANA
    joined = ws.recv()  # the next frame after the visitor's message: no reply came in between
    assert joined["type"] == "escalation" and joined["status"] == "agent_joined"
    assert joined["agent"] == {"name": "Dana", "avatar_url": None}
    other = _post(stack, conversation_id, "claim", {"agent": SAM})
    assert other.status_code == 409 and other.json()["error"]["code"] == "conversation.claimed"
    assert other.json()["error"]["details"]["agent"] == DANA  # the other agent sees who has it

    note = _post(stack, conversation_id, "messages", {"text": "VIP customer", "agent": DANA, "internal": True})
    assert note.status_code == 201 and note.json()["internal"] is True and note.json()["role"] == "agent"
    said = _post(stack, conversation_id, "messages", {"text": "Hi, I'm Dana. Let me check order 1234.",
                                                      "agent": DANA})
    assert said.status_code == 201, said.text
    message = ws.recv()  # the note never reached the visitor: the agent's message is the next frame
    assert message == {"type": "agent.message", "seq": message["seq"], "message_id": said.json()["id"],
                       "agent": {"name": "Dana", "avatar_url": None}, "text": "Hi, I'm Dana. Let me check order 1234."}
    ws.send({"type": "message", "client_id": "c3", "text": "thanks Dana"})
    ws.until("message.accepted")
    assert _calls(upstream, marker) == []  # the model was never called: escalated by a rule, then a person's

    # A reconnect mid-takeover, from a log the server no longer counts (another epoch): the stored transcript
    # holds the person's message with their name, and never the note.
    token, _ = stack.token(persona, visitor_id=_conversation(stack, conversation_id)["visitor_id"])
    again = stack.open(persona, token=token, resume={"conversation_id": conversation_id, "last_seq": 3,
                                                      "epoch": "gone"})
    ready = again.recv()
    assert ready["resumed"] is False and ready["status"] == "agent"
    shown = [(m["role"], m["text"], m.get("agent")) for m in ready["messages"]]
    assert ("agent", "Hi, I'm Dana. Let me check order 1234.", {"name": "Dana", "avatar_url": None}) in shown
    assert all("VIP" not in text for _, text, _ in shown)

    resolved = _post(stack, conversation_id, "resolve", {"agent": DANA, "note": "sorted"})
    assert resolved.status_code == 200 and resolved.json()["status"] == "bot" and resolved.json()["agent"] is None
    assert again.recv()["status"] == "resolved"
    again.send({"type": "message", "client_id": "c4", "text": "one more question"})
    end = again.until("reply.end")[-1]
    assert end["finish_reason"] == "stop"
    (call,) = _calls(upstream, marker)  # the bot's next reply knows a person helped
    history = [(m["role"], m["content"]) for m in call["messages"][1:]]
    assert ("assistant", "[Dana of the support team wrote:] Hi, I'm Dana. Let me check order 1234.") in history
    assert all("VIP" not in content for _, content in history)

    stored = _conversation(stack, conversation_id)["messages"]
    assert [m["role"] for m in stored] == ["visitor", "persona", "visitor", "agent", "agent", "visitor", "visitor",
                                           "persona"]
    events = stack.wait_events(lambda got: {"escalation.claimed", "agent.message", "escalation.resolved"}
                               <= {e["type"] for e in got}, conversation=conversation_id)
    by_type = {e["type"]: e["attributes"] for e in events}
    assert by_type["escalation.claimed"]["agent_id"] == "agent-7" and by_type["escalation.claimed"]["waited_ms"] >= 0
    assert by_type["escalation.resolved"]["agent_id"] == "agent-7"
    assert sorted(e["attributes"]["internal"] for e in events if e["type"] == "agent.message") == [False, True]
    summary = httpx.get(f"{stack.url}/v1/analytics/summary", headers=stack.auth).json()["takeover"]
    assert summary["escalations"] == 1 and summary["handoff_rate"] == 1.0 and summary["unclaimed"] == 0
    assert summary["time_to_claim_ms"]["count"] == 1 and summary["time_to_resolve_ms"]["count"] == 1
    assert summary["time_to_claim_ms"]["p50"] <= summary["time_to_resolve_ms"]["p50"]


def test_the_takeover_figures_count_unclaimed_and_reopened_escalations() -> None:
    from datetime import UTC, datetime, timedelta

    from widget_server.backends.storage.aggregates import takeover_figures

    t0 = datetime(2026, 12, 1, tzinfo=UTC)
    rows = [
        ("a", "escalation.triggered", t0, None, None, None),
        ("a", "escalation.claimed", t0 + timedelta(seconds=30), 30_000.0, None, None),
        ("a", "escalation.claimed", t0 + timedelta(seconds=40), 40_000.0, None, "agent-1"),  # a transfer
        ("a", "escalation.resolved", t0 + timedelta(minutes=5), None, 300_000.0, None),
        ("a", "escalation.triggered", t0 + timedelta(hours=2), None, None, None),  # reopened within 24 h
        ("b", "escalation.triggered", t0, None, None, None),
        ("b", "escalation.resolved", t0 + timedelta(minutes=1), None, 60_000.0, None),  # nobody claimed it
        ("b", "escalation.triggered", t0 + timedelta(days=2), None, None, None),  # a day later: not reopened
        ("c", "escalation.triggered", t0, None, None, None),  # still waiting
    ]
    got = takeover_figures(rows, conversations=10)
    assert got["escalations"] == 5 and got["conversations_escalated"] == 3 and got["handoff_rate"] == 0.3
    assert got["unclaimed"] == 4 and got["unclaimed_share"] == 0.8  # b's first, a's second, b's second, c
    assert got["time_to_claim_ms"] == {"p50": 30_000.0, "p95": 30_000.0, "count": 1}
    assert got["time_to_resolve_ms"]["count"] == 2 and got["reopened"] == 1 and got["reopen_rate"] == 0.5


def test_release_close_and_what_is_refused(stack: Stack) -> None:
    ws, conversation_id, persona = _escalated(stack, secrets.token_hex(6))
    unknown = _post(stack, "conv_nope", "claim", {"agent": DANA})
    assert unknown.status_code == 404 and unknown.json()["error"]["code"] == "conversation.not_found"
    not_held = _post(stack, conversation_id, "messages", {"text": "hi", "agent": DANA})
    assert not_held.status_code == 409 and not_held.json()["error"]["code"] == "conversation.not_claimed"
    assert _post(stack, conversation_id, "claim", {"agent": DANA}).status_code == 200
    assert _post(stack, conversation_id, "claim", {"agent": DANA}).status_code == 200  # again: no change
    assert ws.recv()["status"] == "agent_joined"
    for action, body in (("messages", {"text": "hi", "agent": SAM}), ("release", {"agent": SAM}),
                         ("resolve", {"agent": SAM})):
        r = _post(stack, conversation_id, action, body)
        assert r.status_code == 409 and r.json()["error"]["code"] == "conversation.claimed", (action, r.text)
    # A REST caller cannot talk past the person either.
    prompt = httpx.post(f"{stack.url}/v1/personas/{persona}/prompt", headers=stack.auth, json={
        "message": "hi", "conversation_id": conversation_id})
    assert prompt.status_code == 409 and prompt.json()["error"]["code"] == "conversation.taken_over"
    # Another tenant sees nothing of it.
    other = stack.tenant()
    assert _post(stack, conversation_id, "claim", {"agent": SAM}, sk=other["sk"]).status_code == 404

    released = _post(stack, conversation_id, "release", {"agent": DANA})
    assert released.status_code == 200 and released.json()["status"] == "escalated"
    assert ws.recv()["status"] == "agent_left"
    closed = _post(stack, conversation_id, "close", {})
    assert closed.status_code == 200 and closed.json()["status"] == "closed"
    assert ws.recv()["status"] == "closed"
    assert _post(stack, conversation_id, "close", {}).status_code == 409
    refused = _post(stack, conversation_id, "claim", {"agent": DANA})
    assert refused.status_code == 409 and refused.json()["error"]["code"] == "conversation.not_escalated"
    ws.send({"type": "message", "client_id": "c9", "text": "hello?"})
    error = ws.until("error")[-1]
    assert error["code"] == "conversation.closed" and error["client_id"] == "c9"


def test_the_agents_avatar_reaches_the_widget_and_its_rebuilt_transcript(stack: Stack) -> None:
    ws, conversation_id, persona = _escalated(stack, secrets.token_hex(6))
    assert _conversation(stack, conversation_id)["visitor_online"] is True
    kim = {"id": "agent-3", "name": "Kim", "avatar_url": "https://cdn.example/kim.png"}
    assert _post(stack, conversation_id, "claim", {"agent": kim}).status_code == 200
    assert ws.recv()["agent"] == {"name": "Kim", "avatar_url": "https://cdn.example/kim.png"}
    said = _post(stack, conversation_id, "messages", {"text": "Kim here.", "agent": kim})
    assert said.status_code == 201 and said.json()["agent"] == kim
    assert ws.recv()["agent"] == {"name": "Kim", "avatar_url": "https://cdn.example/kim.png"}
    token, _ = stack.token(persona, visitor_id=_conversation(stack, conversation_id)["visitor_id"])
    again = stack.open(persona, token=token, resume={"conversation_id": conversation_id, "last_seq": 1,
                                                      "epoch": "gone"})
    (row,) = [m for m in again.recv()["messages"] if m["role"] == "agent"]
    assert row["agent"] == {"name": "Kim", "avatar_url": "https://cdn.example/kim.png"}  # never the agent's id


def test_a_rest_conversation_taken_over_refuses_prompts_until_resolved(stack: Stack) -> None:
    assert httpx.put(f"{stack.url}/v1/safety-policy", json=POLICY, headers=stack.auth).status_code == 200
    persona = stack.persona("echo")
    url = f"{stack.url}/v1/personas/{persona}/prompt"
    first = httpx.post(url, headers=stack.auth, json={"message": "I want to speak to a person"}).json()
    conversation_id = first["conversation_id"]
    shown = _conversation(stack, conversation_id)
    assert shown["status"] == "escalated" and shown["visitor_online"] is None  # no widget to be connected
    for path in (url, url + "/stream"):
        r = httpx.post(path, headers=stack.auth, json={"message": "hi", "conversation_id": conversation_id})
        assert r.status_code == 409 and r.json()["error"]["code"] == "conversation.taken_over", r.text
    assert _post(stack, conversation_id, "resolve").status_code == 200
    r = httpx.post(url, headers=stack.auth, json={"message": "hi", "conversation_id": conversation_id})
    assert r.status_code == 200 and r.json()["finish_reason"] == "stop"


@pytest.mark.parametrize("agent", [None, "x", {}, {"id": "a"}, {"id": "", "name": "D"}, {"id": "a", "name": " "},
                                   {"id": "a" * 81, "name": "D"}, {"id": "a", "name": "D\x00"},
                                   {"id": "a", "name": "D", "avatar_url": "http://x"},
                                   {"id": "a", "name": "D", "role": "admin"}])
def test_a_bad_agent_is_a_clear_400(stack: Stack, agent: Any) -> None:
    ws, conversation_id, _ = _escalated(stack, secrets.token_hex(6))
    r = _post(stack, conversation_id, "claim", {"agent": agent})
    assert r.status_code == 400 and r.json()["error"]["code"] == "request.invalid", r.text
    assert _conversation(stack, conversation_id)["status"] == "escalated"  # nothing half done


def test_a_visitor_is_told_when_nobody_is_online_and_again_after_a_long_wait(stack_factory: Any) -> None:
    stack = stack_factory(takeover_sweep_s=0.1)
    policy = {"version": 1, "escalation": {"on_request": True, "nobody_message": "Nobody is in today.",
                                           "wait_notice_s": 30, "wait_message": "Still looking for someone."}}
    assert httpx.put(f"{stack.url}/v1/safety-policy", json=policy, headers=stack.auth).status_code == 200
    ws = stack.open(stack.persona("echo"))
    conversation_id = ws.recv()["conversation_id"]
    ws.send({"type": "message", "client_id": "c1", "text": "can I talk to a human please"})
    told = [f for f in ws.until("reply.end") if f["type"] == "escalation"]
    assert [(f["status"], f.get("text")) for f in told] == [("requested", None), ("unavailable", "Nobody is in today.")]

    async def waited_a_minute() -> None:  # the sweeper compares the stored escalation time with the clock
        storage = await open_storage(stack.settings.resolved_database_url)
        try:
            async with storage.engine.begin() as conn:
                await conn.execute(sa.update(conversations).where(conversations.c.id == conversation_id)
                                   .values(escalated_at=now() - timedelta(seconds=60)))
        finally:
            await storage.close()
    asyncio.run(waited_a_minute())
    waiting = ws.until("escalation")[-1]
    assert waiting["status"] == "waiting" and waiting["text"] == "Still looking for someone."
    events = stack.wait_events(lambda got: len(got) == 2, type="escalation.unanswered", conversation=conversation_id)
    assert sorted(e["attributes"]["why"] for e in events) == ["nobody_online", "waited"]
    assert _conversation(stack, conversation_id)["status"] == "escalated"  # still waiting for a person


def test_nobody_message_is_not_sent_while_an_agent_is_signed_in(console: Any) -> None:
    stack = console.stack
    console.signed_in("agent")
    ws, conversation_id, _ = _escalated(stack, secrets.token_hex(6))
    statuses = [f["status"] for f in ws.frames if f["type"] == "escalation"]
    assert statuses == ["requested"]
