"""Analytics events as a tenant sees them: every step recorded, read back with a stable cursor, erased, expired."""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

from tests.conftest import Stack
from widget_server.backends.storage import open_storage
from widget_server.domain.analytics.retention import sweep
from widget_server.ids import new_id

POLICY: dict[str, Any] = {
    "version": 1,
    "blocked_terms": [{"id": "rival", "terms": ["rivalco"], "match": "word", "action": "refuse"}],
    "escalation": {"on_request": True},
    "refusals": {"default": "I can't talk about that."},
}
ALL_TYPES = {"conversation.started", "message.received", "reply.completed", "guardrail.triggered",
             "escalation.triggered", "escalation.resolved", "feedback.submitted", "widget.opened", "widget.closed",
             "error"}


def test_one_conversation_records_every_event_type_with_its_attributes(stack: Stack) -> None:
    assert httpx.put(f"{stack.url}/v1/safety-policy", json=POLICY, headers=stack.auth).status_code == 200
    persona = stack.persona("echo")
    ws = stack.open(persona)
    ready = ws.recv()
    conv = ready["conversation_id"]
    ws.send({"type": "event", "name": "widget.opened", "props": {"page": "/pricing"}})
    ws.send({"type": "message", "client_id": "c1", "text": "hello there"})
    answered = ws.until("reply.end")[-1]
    ws.send({"type": "feedback", "message_id": answered["message_id"], "rating": "down", "comment": "too short"})
    ws.send({"type": "message", "client_id": "c2", "text": "what about rivalco?"})
    ws.until("reply.end")
    ws.send({"type": "message", "client_id": "c3", "text": "can I talk to a human"})
    ws.until("reply.end")  # (with `escalation` requested, then unavailable: nobody is signed in to the console)
    r = httpx.post(f"{stack.url}/v1/conversations/{conv}/resolve", json={"note": "sorted"}, headers=stack.auth)
    assert r.status_code == 200 and r.json()["status"] == "bot"
    assert ws.until("escalation")[-1]["status"] == "resolved"  # the visitor's widget hears it too
    ws.send({"type": "event", "name": "widget.closed"})
    failing = stack.open(stack.persona("fail"))  # an upstream error is an event as well
    failing.recv()
    failing.send({"type": "message", "client_id": "f1", "text": "hi"})
    failing.until("reply.end")

    events = stack.wait_events(lambda got: ALL_TYPES <= {e["type"] for e in got})
    mine = [e for e in events if e["conversation_id"] == conv]
    by_type = {e["type"]: e for e in reversed(mine)}  # the first of each type
    assert all(e["tenant_id"] == stack.tenant_id and e["channel"] == "widget" and e["schema_version"] == 1
               and e["visitor_id"] == mine[0]["visitor_id"] for e in mine)
    completed = by_type["reply.completed"]["attributes"]
    assert completed["gen_ai.request.model"] == "echo" and completed["gen_ai.usage.output_tokens"] == 2
    assert completed["finish_reason"] == "stop" and completed["ttft_ms"] >= 0 and completed["total_ms"] >= 0
    assert completed["gen_ai.response.time_to_first_chunk"] == completed["ttft_ms"] / 1000
    assert completed["gen_ai.provider.name"] == "openai" and completed["gen_ai.response.finish_reasons"] == ["stop"]
    refusals = [e["attributes"] for e in mine if e["type"] == "guardrail.triggered"]
    assert {"rule": "term.rival", "action": "refuse", "source": "input"}.items() <= refusals[0].items()
    assert by_type["escalation.triggered"]["attributes"]["reason"] == "escalation.requested"
    assert by_type["escalation.resolved"]["attributes"]["note"] == "sorted"
    assert by_type["feedback.submitted"]["attributes"]["rating"] == "down"
    assert by_type["widget.opened"]["attributes"]["props"] == {"page": "/pricing"}
    assert [e["type"] for e in mine].count("message.received") == 3
    error = next(e for e in events if e["type"] == "error")
    assert error["attributes"]["code"].startswith("provider.")
    ids = [e["id"] for e in events]
    assert len(set(ids)) == len(ids)


def test_rest_and_sse_turns_are_recorded_with_their_channel(stack: Stack) -> None:
    persona = stack.persona("echo")
    one = httpx.post(f"{stack.url}/v1/personas/{persona}/prompt", json={"message": "hi"}, headers=stack.auth).json()
    with httpx.stream("POST", f"{stack.url}/v1/personas/{persona}/prompt/stream", json={"message": "hey"},
                      headers=stack.auth) as r:
        r.read()
    events = stack.wait_events(lambda got: sum(e["type"] == "reply.completed" for e in got) == 2)
    channels = [e["channel"] for e in events if e["type"] == "reply.completed"]
    assert channels == ["api", "api"]  # DESIGN.md's channel for REST and SSE alike
    assert any(e["conversation_id"] == one["conversation_id"] for e in events)


def test_filters_narrow_the_query_and_bad_ones_are_400(stack: Stack) -> None:
    a, b = stack.persona("echo"), stack.persona("echo")
    ready_a, _ = stack.turn(a, "one")
    stack.turn(b, "two")
    stack.wait_events(lambda got: sum(e["type"] == "reply.completed" for e in got) == 2)
    only_a = stack.events(persona=a)
    assert only_a and {e["conversation_id"] for e in only_a} == {ready_a["conversation_id"]}
    replies = stack.events(type="reply.completed,message.received")
    assert {e["type"] for e in replies} == {"reply.completed", "message.received"} and len(replies) == 4
    assert stack.events(conversation=ready_a["conversation_id"]) == only_a
    assert stack.events(**{"from": (datetime.now(UTC) + timedelta(days=1)).isoformat()}) == []
    assert len(stack.events(**{"from": datetime.now(UTC).date().isoformat()})) == len(stack.events())
    for params, param in [({"type": "nope"}, "type"), ({"from": "yesterday"}, "from"), ({"cursor": "xyz"}, "cursor"),
                          ({"limit": "0"}, "limit"), ({"from": "2026-01-02", "to": "2026-01-01"}, "to")]:
        r = httpx.get(f"{stack.url}/v1/analytics/events", params=params, headers=stack.auth)
        assert r.status_code == 400 and r.json()["error"]["code"] == "query.invalid"
        assert r.json()["error"]["details"]["param"] == param
    assert httpx.get(f"{stack.url}/v1/analytics/events").status_code == 401


def test_another_tenant_never_sees_these_events(stack: Stack) -> None:
    ready, _ = stack.turn(stack.persona("echo"), "mine")
    stack.wait_events(lambda got: any(e["type"] == "reply.completed" for e in got))
    other = stack.tenant()
    assert stack.events(sk=other["sk"]) == []
    assert stack.events(sk=other["sk"], conversation=ready["conversation_id"]) == []
    r = httpx.delete(f"{stack.url}/v1/analytics/visitors/{stack.events()[0]['visitor_id']}",
                     headers={"Authorization": f"Bearer {other['sk']}"})
    assert r.json()["deleted"] == {"events": 0, "feedback": 0, "messages": 0, "conversations": 0}
    assert stack.events()  # untouched


def _event(tenant_id: str, visitor: str = "v", ts: datetime | None = None, **extra: Any) -> dict[str, Any]:
    return {"id": new_id("evt"), "ts": ts or datetime.now(UTC), "tenant_id": tenant_id, "persona_id": None,
            "conversation_id": None, "visitor_id": visitor, "channel": "widget", "type": "widget.opened",
            "schema_version": 1, "attributes": {}, **extra}


def test_the_cursor_skips_and_repeats_nothing_while_events_arrive(db_url: str) -> None:
    """Writers commit batches whose ids were minted before others' (as several nodes do); a reader pages
    through meanwhile with a small page size and polls to the end: it sees each event exactly once."""

    async def run() -> tuple[list[str], list[str]]:
        writers = [await open_storage(db_url) for _ in range(3)]
        reader = await open_storage(db_url)
        tenant = "ten_" + new_id("x")[-12:]
        written: list[str] = []

        async def write(storage: Any) -> None:
            for _ in range(15):
                batch = [_event(tenant) for _ in range(random.randint(1, 9))]
                await asyncio.sleep(random.random() / 50)  # older ids, committed later
                await storage.events.insert(batch)
                written.extend(e["id"] for e in batch)

        seen: list[str] = []
        after = 0

        async def read_page() -> int:
            nonlocal after
            rows = await reader.events.page(tenant, _all(), after=after, limit=7)
            seen.extend(r["id"] for r in rows)
            after = rows[-1]["seq"] if rows else after
            return len(rows)

        writing = asyncio.gather(*(write(s) for s in writers))
        while not writing.done():
            await read_page()
            await asyncio.sleep(0.002)
        await writing
        while await read_page():
            pass
        for s in (*writers, reader):
            await s.close()
        return written, seen

    written, seen = asyncio.run(run())
    assert len(seen) == len(set(seen)), "an event came twice"
    assert set(seen) == set(written), "an event was skipped"


def _all() -> Any:
    from widget_server.backends.storage.analytics import EventFilter

    return EventFilter()


def test_erasing_a_visitor_removes_everything_of_theirs_and_nothing_else(
    stack_factory: Callable[..., Stack], db_url: str
) -> None:
    stack = stack_factory(database_url=db_url)
    persona = stack.persona("echo")
    gone_token, gone = stack.token(persona)
    kept_token, kept = stack.token(persona)
    conversations = {}
    for token, visitor in ((gone_token, gone), (kept_token, kept)):
        ws = stack.open(persona, token=token)
        conversations[visitor] = ws.recv()["conversation_id"]
        for i in range(2):
            ws.send({"type": "message", "client_id": f"c{i}", "text": f"message {i}"})
            end = ws.until("reply.end")[-1]
        ws.send({"type": "feedback", "message_id": end["message_id"], "rating": "up"})
        ws.send({"type": "ping"})
        ws.until("pong")
    # no waiting for the writer: erasure takes the events that are not written yet too
    r = httpx.delete(f"{stack.url}/v1/analytics/visitors/{gone}", headers=stack.auth)
    assert r.status_code == 200
    deleted = r.json()["deleted"]
    assert deleted["conversations"] == 1 and deleted["messages"] == 4 and deleted["feedback"] == 1
    assert deleted["events"] == 1 + 2 * 2 + 1  # started, 2 × (received, completed), feedback
    assert stack.events(visitor=gone) == []
    conv = httpx.get(f"{stack.url}/v1/conversations/{conversations[gone]}", headers=stack.auth)
    assert conv.status_code == 404
    listed = httpx.get(f"{stack.url}/v1/conversations", headers=stack.auth).json()["data"]
    assert [c["visitor_id"] for c in listed] == [kept]
    stack.wait_events(lambda got: len(got) == 6, visitor=kept)
    kept_conv = httpx.get(f"{stack.url}/v1/conversations/{conversations[kept]}", headers=stack.auth).json()
    assert len(kept_conv["messages"]) == 4 and kept_conv["messages"][-1]["feedback"]["rating"] == "up"
    again = httpx.delete(f"{stack.url}/v1/analytics/visitors/{gone}", headers=stack.auth).json()["deleted"]
    assert set(again.values()) == {0}


def test_retention_purges_what_is_older_than_the_tenants_period(
    stack_factory: Callable[..., Stack], db_url: str
) -> None:
    stack = stack_factory(database_url=db_url)
    url = f"{stack.url}/v1/analytics/retention"
    assert httpx.get(url, headers=stack.auth).json() == {"retention_days": None, "effective_days": None}
    bad = httpx.put(url, json={"retention_days": 0}, headers=stack.auth)
    assert bad.status_code == 400 and bad.json()["error"]["details"]["errors"][0]["field"] == "retention_days"
    assert httpx.put(url, json={"retention_days": 30}, headers=stack.auth).json()["effective_days"] == 30
    other = stack.tenant()  # keeps everything: no retention of its own, none by default
    old = datetime.now(UTC) - timedelta(days=40)

    async def run() -> dict[str, dict[str, int]]:
        storage = await open_storage(db_url)
        try:
            await storage.events.insert([_event(stack.tenant_id, ts=old), _event(stack.tenant_id),
                                         _event(other["tenant_id"], ts=old)])
            return await sweep(storage, None)
        finally:
            await storage.close()

    removed = asyncio.run(run())
    assert removed == {stack.tenant_id: {"events": 1, "feedback": 0, "messages": 0, "conversations": 0}}
    assert len(stack.events()) == 1 and len(stack.events(sk=other["sk"])) == 1


def test_metrics_count_replies_connections_and_events(stack_factory: Callable[..., Stack]) -> None:
    stack = stack_factory(metrics_token="scrape-me")
    assert httpx.get(f"{stack.url}/metrics").status_code == 401
    ws = stack.open(stack.persona("echo"))
    ws.recv()
    ws.send({"type": "message", "client_id": "c1", "text": "hello metrics"})
    ws.until("reply.end")
    stack.wait_events(lambda got: any(e["type"] == "reply.completed" for e in got))

    def scrape() -> dict[str, float]:
        r = httpx.get(f"{stack.url}/metrics", headers={"Authorization": "Bearer scrape-me"})
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
        return {line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1]) for line in r.text.splitlines()
                if line and not line.startswith("#")}

    m = scrape()
    assert m["widget_ws_connections"] == 1
    assert m['widget_replies_total{finish_reason="stop"}'] == 1
    assert m["widget_time_to_first_token_seconds_count"] == 1
    assert m["widget_events_queued_total"] == m["widget_events_written_total"] == 3
    assert m["widget_events_buffered"] == 0
    ws.close()
    deadline = time.monotonic() + 5
    while scrape()["widget_ws_connections"] != 0:
        assert time.monotonic() < deadline, "the closed socket is still counted"
        time.sleep(0.05)
