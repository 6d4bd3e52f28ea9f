"""Several nodes as a deployment runs them: `widget-server serve` processes on one PostgreSQL database and one
Redis, behind HAProxy with no sticky sessions (tests/support/nodes.py). What a visitor notices: wherever a socket
lands, the conversation goes on with nothing lost or doubled; a cancel or a deletion reaches the process that holds
the reply or the socket; a node killed mid-reply, a deploy, or Redis restarting ends the reply clearly instead of
leaving the visitor waiting; and the stored message and its `reply.completed` event say what happened."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import ORIGIN, WS, Stack, _tenant, fresh_pg_database
from tests.support.nodes import Cluster, missing_tools, running_cluster, served_by
from tests.support.upstream import Upstream
from widget_server.settings import Settings

pytestmark = [pytest.mark.nodes,
              pytest.mark.skipif(bool(missing_tools()), reason=f"needs {missing_tools()} (scripts/test.sh installs)")]
EXPECTED = "".join(f"w{i} " for i in range(1, 61))
LEASE_S = 1.0


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory, upstream: tuple[Upstream, str]) -> Iterator[Cluster]:
    workdir = tmp_path_factory.mktemp("nodes")
    with fresh_pg_database() as db:
        env = {"WIDGET_DATABASE_URL": db, "WIDGET_PROVIDER": "openai", "WIDGET_OPENAI_BASE_URL": upstream[1],
               "WIDGET_OPENAI_MODEL": "echo", "WIDGET_PROVIDER_TIMEOUT_S": "5", "WIDGET_PROVIDER_STALL_S": "2",
               "WIDGET_SECRET_KEY": "test-secret", "WIDGET_COALESCE_MS": "20", "WIDGET_EVENTS_FLUSH_MS": "20",
               "WIDGET_BUS_LEASE_S": str(LEASE_S), "WIDGET_RATE_LIMIT_SESSIONS": "10000",
               "WIDGET_RATE_LIMIT_HELLOS": "10000", "WIDGET_RATE_LIMIT_MESSAGES": "10000",
               # a node trusts its compiled policy for an hour: only the bus tells it of a save on another node
               "WIDGET_POLICY_CACHE_S": "3600"}
        with running_cluster(workdir, env) as running:
            yield running


@pytest.fixture(scope="module")
def keys(cluster: Cluster) -> dict[str, str]:
    return asyncio.run(_tenant(cluster.env["WIDGET_DATABASE_URL"], [ORIGIN]))


@pytest.fixture
def stack(cluster: Cluster, keys: dict[str, str]) -> Iterator[Stack]:
    """The tenant, spoken to through the balancer; every node running again after the test."""
    settings = Settings(database_url=cluster.env["WIDGET_DATABASE_URL"], secret_key="test-secret")
    with contextlib.ExitStack() as exits:
        yield Stack(cluster.url, settings, keys["tenant_id"], keys["sk"], keys["pk"], exits)
    cluster.heal()


def _socket_on(stack: Stack, want: str | None = None, avoid: str | None = None) -> tuple[WS, str]:
    """A socket through the balancer, on the node `want` (or any but `avoid`): round robin, so a few tries."""
    for _ in range(12):
        ws = stack.connect(ORIGIN)
        node = served_by(ws.conn.response.headers)  # type: ignore[union-attr]
        if (want is None or node == want) and node != avoid:
            return ws, node
        ws.close()
    raise AssertionError(f"the balancer never chose {want or 'another node than ' + str(avoid)}")


def _hello(ws: WS, token: str, resume: dict[str, Any] | None = None) -> dict[str, Any]:
    ws.send({"type": "hello", "token": token, **({"resume": resume} if resume else {})})
    return ws.recv()


def _open(stack: Stack, persona: str, visitor: str | None = None, resume: dict[str, Any] | None = None,
          want: str | None = None, avoid: str | None = None) -> tuple[WS, str, dict[str, Any], str]:
    """A socket through the balancer after `ready`, as the widget opens one: it tries again while the node says
    its bus is reconnecting to Redis (an error frame `bus.unavailable`, then 1013)."""
    for _ in range(50):
        token, visitor = stack.token(persona, **({"visitor_id": visitor} if visitor else {}))
        ws, node = _socket_on(stack, want=want, avoid=avoid)
        ready = _hello(ws, token, resume)
        if ready["type"] == "ready":
            return ws, node, ready, visitor
        assert ready["code"] == "bus.unavailable" and ws.close_code() == 1013, ready
    raise AssertionError("the bus never came back")


def _mid_reply(stack: Stack, persona: str, want: str | None = None) -> tuple[WS, str, str, str, str]:
    """A socket whose reply has streamed a few deltas: (socket, node, conversation, visitor, reply id)."""
    ws, node, ready, visitor = _open(stack, persona, want=want)
    ws.send({"type": "message", "client_id": "c1", "text": "tell me a long story"})
    message_id = ws.until("reply.start")[-1]["message_id"]
    for _ in range(3):
        ws.until("reply.delta")
    return ws, node, ready["conversation_id"], visitor, message_id


def _resume_on(stack: Stack, persona: str, visitor: str, conversation_id: str, last: WS,
               avoid: str) -> tuple[WS, dict[str, Any]]:
    resume = {"conversation_id": conversation_id, "last_seq": last.frames[-1]["seq"], "epoch": last.frames[0]["epoch"]}
    ws, _, ready, _ = _open(stack, persona, visitor, resume, avoid=avoid)
    return ws, ready


def _text(frames: list[dict[str, Any]], message_id: str) -> str:
    return "".join(f["text"] for f in frames if f["type"] == "reply.delta" and f["message_id"] == message_id)


def _stored(stack: Stack, conversation_id: str) -> list[dict[str, Any]]:
    r = httpx.get(f"{stack.url}/v1/conversations/{conversation_id}", headers=stack.auth)
    assert r.status_code == 200, r.text
    return r.json()["messages"]  # type: ignore[no-any-return]


def _completed(stack: Stack, message_id: str) -> dict[str, Any]:
    found = stack.wait_events(lambda es: any(e["attributes"].get("message_id") == message_id for e in es),
                              type="reply.completed")
    return next(e for e in found if e["attributes"]["message_id"] == message_id)


def test_requests_spread_over_the_nodes_and_a_reply_resumes_on_another(cluster: Cluster, stack: Stack) -> None:
    assert {served_by(httpx.get(cluster.url + "/health").headers) for _ in range(4)} == {"n0", "n1"}
    persona = stack.persona("pace-20-60")
    ws, node, conversation_id, visitor, message_id = _mid_reply(stack, persona)
    ws.close()
    other, ready = _resume_on(stack, persona, visitor, conversation_id, ws, avoid=node)
    assert ready["resumed"] is True
    after = other.until("reply.end")
    assert after[0]["seq"] == ws.frames[-1]["seq"] + 1 and after[-1]["finish_reason"] == "stop"
    assert _text(ws.frames, message_id) + _text(after, message_id) == EXPECTED
    assert _stored(stack, conversation_id)[-1]["text"] == EXPECTED
    assert _completed(stack, message_id)["attributes"]["finish_reason"] == "stop"


def test_a_newer_socket_on_another_process_takes_over_and_cancels(cluster: Cluster, stack: Stack) -> None:
    persona = stack.persona("pace-50-60")
    ws, node, conversation_id, visitor, message_id = _mid_reply(stack, persona)
    other, ready = _resume_on(stack, persona, visitor, conversation_id, ws, avoid=node)
    assert ready["resumed"] is True
    assert ws.close_code() == 4409
    other.send({"type": "cancel", "message_id": message_id})
    end = other.until("reply.end")[-1]
    assert end["message_id"] == message_id and end["finish_reason"] == "cancelled"
    seen = {f["seq"]: f for f in ws.frames + other.frames if f["type"] == "reply.delta"}  # each delta once
    stored = _stored(stack, conversation_id)[-1]
    assert stored["finish_reason"] == "cancelled" and stored["text"] == _text(list(seen.values()), message_id)
    assert len(stored["text"]) < len(EXPECTED)


def test_a_persona_deleted_through_one_node_closes_its_sockets_on_the_other(cluster: Cluster, stack: Stack) -> None:
    persona = stack.persona("words-3")
    ws = _open(stack, persona, want="n0")[0]
    r = httpx.delete(f"{cluster.node('n1').url}/v1/personas/{persona}", headers=stack.auth)
    assert r.status_code == 204
    assert ws.close_code() == 4404
    assert ws.frames[-1]["type"] == "error" and ws.frames[-1]["code"] == "persona.not_found"


def test_a_node_killed_mid_reply_ends_it_as_interrupted_for_the_visitor_and_in_the_records(
        cluster: Cluster, stack: Stack) -> None:
    persona = stack.persona("pace-20-60")
    ws, node, conversation_id, visitor, message_id = _mid_reply(stack, persona)
    cluster.kill(node)
    ws.close_code()  # the socket ends with the process (no close frame: nothing was left to send one)
    cluster.wait_down(node)  # the balancer sends the reconnect elsewhere, as a visitor's retry would land
    other, ready = _resume_on(stack, persona, visitor, conversation_id, ws, avoid=node)
    assert ready["resumed"] is True  # the log in Redis outlives the node
    after = other.until("reply.end")
    assert after[-1]["message_id"] == message_id and after[-1]["finish_reason"] == "interrupted"
    assert [f["seq"] for f in after] == list(range(ws.frames[-1]["seq"] + 1, after[-1]["seq"] + 1))
    text = _text(ws.frames, message_id) + _text(after, message_id)
    assert EXPECTED.startswith(text) and len(text) < len(EXPECTED)
    stored = _stored(stack, conversation_id)[-1]
    assert (stored["id"], stored["finish_reason"], stored["text"]) == (message_id, "interrupted", text)
    assert _completed(stack, message_id)["attributes"]["finish_reason"] == "interrupted"
    other.send({"type": "message", "client_id": "c2", "text": "are you there?"})  # the conversation goes on
    assert other.until("reply.end")[-1]["finish_reason"] == "stop"


def test_a_deploy_stopping_a_node_mid_reply_lets_the_visitor_finish_it_on_another(
        cluster: Cluster, stack: Stack) -> None:
    """SIGTERM, as a rolling deploy sends: the socket is told to reconnect (1012), and the reply the stopping node
    runs goes on streaming, through Redis, to the visitor's new socket on the other node, to its end."""
    persona = stack.persona("pace-20-60")
    ws, node, conversation_id, visitor, message_id = _mid_reply(stack, persona)
    cluster.lb.command(f"disable server nodes/{node}")  # the deploy drains the node from the balancer first
    cluster.lb.wait_status(node, "MAINT")
    cluster.terminate(node)
    assert ws.close_code() == 1012
    other, ready = _resume_on(stack, persona, visitor, conversation_id, ws, avoid=node)
    assert ready["resumed"] is True
    after = other.until("reply.end")
    assert after[-1]["finish_reason"] == "stop"
    text = _text(ws.frames, message_id) + _text(after, message_id)
    assert text == EXPECTED == _stored(stack, conversation_id)[-1]["text"]
    assert cluster.wait_exit(node) in (0, -signal.SIGTERM)  # uvicorn re-raises the signal it caught


def test_redis_restarting_mid_reply_gives_the_transcript_once_and_the_nodes_recover(
        cluster: Cluster, stack: Stack) -> None:
    persona = stack.persona("pace-20-60")
    ws, node, conversation_id, visitor, message_id = _mid_reply(stack, persona)
    cluster.redis.restart(kill=True)  # every key gone, a new run id
    assert ws.close_code() == 1012  # the node notices the lost log and tells the socket to reconnect
    other, ready = _resume_on(stack, persona, visitor, conversation_id, ws, avoid=node)
    assert ready["resumed"] is False and ready["epoch"] != ws.frames[0]["epoch"]
    transcript = [(m["id"], m["role"]) for m in ready["messages"]]
    assert transcript.count((message_id, "persona")) == 1
    reply = next(m for m in ready["messages"] if m["id"] == message_id)
    assert reply["finish_reason"] == "interrupted" and EXPECTED.startswith(reply["text"])
    assert _completed(stack, message_id)["attributes"]["finish_reason"] == "interrupted"
    other.send({"type": "ping"})
    assert [f["type"] for f in other.until("pong")] == ["pong"]  # nothing of the old reply replayed
    for name in ("n0", "n1"):  # both nodes serve whole turns again, resumable through the new Redis
        ws2 = _open(stack, persona, want=name)[0]
        ws2.send({"type": "message", "client_id": "c1", "text": "again"})
        assert _text(ws2.until("reply.end"), ws2.frames[-1]["message_id"]) == EXPECTED


def test_two_workers_of_one_serve_share_conversations(tmp_path: Path, upstream: tuple[Upstream, str]) -> None:
    """`serve --workers 2` on one port (the kernel spreads the sockets): resumes work whichever worker they land on."""
    with fresh_pg_database() as db:
        env = {"WIDGET_DATABASE_URL": db, "WIDGET_PROVIDER": "openai", "WIDGET_OPENAI_BASE_URL": upstream[1],
               "WIDGET_SECRET_KEY": "test-secret", "WIDGET_COALESCE_MS": "20", "WIDGET_BUS_LEASE_S": str(LEASE_S),
               "WIDGET_RATE_LIMIT_SESSIONS": "10000", "WIDGET_RATE_LIMIT_HELLOS": "10000"}
        with running_cluster(tmp_path, env, n=1, workers=2) as one:
            keys = asyncio.run(_tenant(db, [ORIGIN]))
            with contextlib.ExitStack() as exits:
                node = one.nodes[0].url  # straight to the node: its two workers behind one port
                stack = Stack(node, Settings(database_url=db, secret_key="test-secret"), keys["tenant_id"],
                              keys["sk"], keys["pk"], exits)
                persona = stack.persona("pace-40-60")
                for i in range(6):
                    token, visitor = stack.token(persona)
                    ws = stack.connect(ORIGIN)
                    conversation_id = _hello(ws, token)["conversation_id"]
                    ws.send({"type": "message", "client_id": f"c{i}", "text": "go"})
                    message_id = ws.until("reply.delta")[-1]["message_id"]
                    ws.close()
                    again = stack.connect(ORIGIN)
                    resume = {"conversation_id": conversation_id, "last_seq": ws.frames[-1]["seq"],
                              "epoch": ws.frames[0]["epoch"]}
                    assert _hello(again, stack.token(persona, visitor_id=visitor)[0], resume)["resumed"] is True
                    assert _text(ws.frames, message_id) + _text(again.until("reply.end"), message_id) == EXPECTED
            logs = one.nodes[0].log.read_text()
            assert logs.count("widget_server ready") == 2, logs[-3000:]


def test_a_tenant_id_never_crosses_nodes(cluster: Cluster, stack: Stack) -> None:
    """Another tenant's key gets a 404 for this tenant's conversation on every node (isolation holds per node)."""
    persona = stack.persona("words-3")
    ready, _ = stack.turn(persona, "hello")
    other = stack.tenant()
    for node in cluster.nodes:
        r = httpx.get(f"{node.url}/v1/conversations/{ready['conversation_id']}",
                      headers={"Authorization": f"Bearer {other['sk']}"})
        assert r.status_code == 404, (node.name, r.text)


def test_three_nodes_end_a_dead_nodes_reply_once(tmp_path: Path, upstream: tuple[Upstream, str]) -> None:
    """Three nodes: when the one running a reply is killed, both others' sweepers look for its lapsed lease; one
    ends the reply, once (one stored message, one `reply.completed`, one `reply.end` in the log)."""
    with fresh_pg_database() as db:
        env = {"WIDGET_DATABASE_URL": db, "WIDGET_PROVIDER": "openai", "WIDGET_OPENAI_BASE_URL": upstream[1],
               "WIDGET_SECRET_KEY": "test-secret", "WIDGET_COALESCE_MS": "20", "WIDGET_EVENTS_FLUSH_MS": "20",
               "WIDGET_BUS_LEASE_S": str(LEASE_S), "WIDGET_RATE_LIMIT_SESSIONS": "10000",
               "WIDGET_RATE_LIMIT_HELLOS": "10000"}
        with running_cluster(tmp_path, env, n=3) as three, contextlib.ExitStack() as exits:
            keys = asyncio.run(_tenant(db, [ORIGIN]))
            stack = Stack(three.url, Settings(database_url=db, secret_key="test-secret"), keys["tenant_id"],
                          keys["sk"], keys["pk"], exits)
            persona = stack.persona("pace-20-60")
            ws, node, conversation_id, visitor, message_id = _mid_reply(stack, persona)
            three.kill(node)
            ws.close_code()
            three.wait_down(node)
            other, ready = _resume_on(stack, persona, visitor, conversation_id, ws, avoid=node)
            ends = [f for f in other.until("reply.end") if f["type"] == "reply.end"]
            assert [(f["message_id"], f["finish_reason"]) for f in ends] == [(message_id, "interrupted")]
            other.send({"type": "message", "client_id": "c2", "text": "still there?"})
            assert other.until("reply.end")[-1]["finish_reason"] == "stop"
            stored = [m for m in _stored(stack, conversation_id) if m["role"] == "persona"]
            assert [m["finish_reason"] for m in stored] == ["interrupted", "stop"]
            completed = stack.wait_events(lambda es: len(es) >= 2, type="reply.completed")
            assert sorted(e["attributes"]["finish_reason"] for e in completed) == ["interrupted", "stop"]
            assert sum(n.log.read_text().count("ended a reply whose node stopped") for n in three.nodes) == 1


def test_redis_away_tells_new_sockets_to_come_back_and_health_says_why(cluster: Cluster, stack: Stack) -> None:
    """Redis stopped for a while (not restarted at once): every node stays up for REST and says on /health that
    its bus is reconnecting; a new socket gets `bus.unavailable` and 1013 (the widget tries again later); when
    Redis is back, health is ok again and sockets open, without restarting a node."""
    persona = stack.persona("words-3")
    cluster.redis.stop(kill=True)
    try:
        for node in cluster.nodes:
            _wait_health(node.url, lambda body: body["bus"] == {"status": "reconnecting", "kind": "redis"})
        assert httpx.get(f"{cluster.url}/v1/personas/{persona}", headers=stack.auth).status_code == 200
        token, _ = stack.token(persona)
        ws = stack.connect(ORIGIN)
        frame = _hello(ws, token)
        assert (frame["type"], frame["code"]) == ("error", "bus.unavailable") and ws.close_code() == 1013
    finally:
        cluster.redis.start()
    for node in cluster.nodes:
        body = _wait_health(node.url, lambda body: body["bus"]["status"] == "ok")
        assert body["status"] == "ok"
    ready, frames = stack.turn(persona, "hello again")
    assert frames[-1]["finish_reason"] == "stop"


def _wait_health(url: str, done: Callable[[dict[str, Any]], bool], timeout: float = 20) -> dict[str, Any]:
    """Poll a node's /health until `done(body)`: the bus notices Redis going and coming on its own schedule."""
    deadline = time.monotonic() + timeout
    while not done(body := httpx.get(url + "/health").json()):
        assert time.monotonic() < deadline, body
        time.sleep(0.05)
    return body  # type: ignore[no-any-return]


def test_a_policy_saved_on_one_node_applies_on_the_other(cluster: Cluster, stack: Stack) -> None:
    """n0 caches its compiled policy for an hour (WIDGET_POLICY_CACHE_S): a save on n1 reaches it over the bus, so
    its visitor's next message is judged by the new policy, and a delete lets it through again."""
    n1 = cluster.node("n1").url
    httpx.delete(f"{n1}/v1/safety-policy", headers=stack.auth)
    ws, node, _, _ = _open(stack, stack.persona("echo"), want="n0")
    turns = iter(range(1000))

    def finish(text: str) -> str:
        ws.send({"type": "message", "client_id": f"c{next(turns)}", "text": text})
        return str(ws.until("reply.end")[-1]["finish_reason"])

    assert finish("is rivalco cheaper?") == "stop"  # no policy: n0 caches that
    rival = {"version": 1, "blocked_terms": [{"id": "rival", "terms": ["rivalco"], "action": "refuse"}]}
    assert httpx.put(f"{n1}/v1/safety-policy", json=rival, headers=stack.auth).status_code == 200
    # The bus message and this socket's next frame race by a few milliseconds: wait for the refusal (an hour
    # without the bus).
    deadline = time.monotonic() + 10
    while (done := finish("is rivalco cheaper?")) != "guardrail" and time.monotonic() < deadline:
        pass
    assert done == "guardrail"
    assert httpx.delete(f"{n1}/v1/safety-policy", headers=stack.auth).status_code == 204
    deadline = time.monotonic() + 10
    while (done := finish("is rivalco cheaper?")) != "stop" and time.monotonic() < deadline:
        pass
    assert done == "stop" and node == "n0"
    ws.close()


def test_an_agent_on_one_node_takes_over_a_visitor_on_the_other(cluster: Cluster, stack: Stack) -> None:
    """The agent's console connection and the visitor's socket on different nodes: the escalation reaches the agent's
    inbox stream, and claiming, typing, messages both ways and the resolve cross the bus."""
    from tests.support.console import PASSWORD, _add_user, sign_in, token_for
    from tests.support.sse import Events

    # Saved on n0, where the visitor will be: its guard has the policy from the save on (another node's copy is
    # the subject of test_a_policy_saved_on_one_node_applies_on_the_other).
    policy = {"version": 1, "escalation": {"on_request": True}}
    assert httpx.put(f"{cluster.node('n0').url}/v1/safety-policy", json=policy, headers=stack.auth).status_code == 200
    persona = stack.persona("echo")
    user = asyncio.run(_add_user(cluster.env["WIDGET_DATABASE_URL"], stack.tenant_id, "agent",
                                 f"agent-{time.monotonic_ns()}@example.com"))
    with httpx.Client(base_url=cluster.node("n1").url, headers={"Accept": "text/html"}, timeout=30) as agent:
        assert sign_in(agent, user["email"], PASSWORD).status_code == 303
        token = token_for(agent, "/console/inbox")
        headers = {"X-CSRF-Token": token, "Accept": "application/json"}
        inbox = Events(agent, "/console/inbox/events")
        try:
            inbox.wait(lambda n, d: n == "ready")
            ws, node, ready, _ = _open(stack, persona, want="n0")
            conversation_id = ready["conversation_id"]
            ws.send({"type": "message", "client_id": "c1", "text": "I want to talk to a human"})
            assert ws.until("escalation")[-1]["status"] == "requested"
            inbox.wait(lambda n, d: n == "inbox" and d["conversation_id"] == conversation_id
                       and d["what"] == "escalated")
        finally:
            inbox.close()
        ws.until("reply.end")
        live = Events(agent, f"/console/inbox/{conversation_id}/events")
        try:
            live.wait(lambda n, d: n == "ready")
            assert agent.post(f"/console/inbox/{conversation_id}/claim", headers=headers).status_code == 200
            assert ws.recv()["status"] == "agent_joined"
            ws.send({"type": "typing", "active": True})
            live.wait(lambda n, d: n == "agents" and d.get("who") == "visitor" and d.get("active") is True)
            ws.send({"type": "message", "client_id": "c2", "text": "my parcel is lost"})
            ws.until("message.accepted")
            live.wait(lambda n, d: n == "conversation" and d.get("text") == "my parcel is lost")
            said = agent.post(f"/console/inbox/{conversation_id}/messages", headers=headers,
                              json={"text": "I am on it."})
            assert said.status_code == 201
            shown = ws.recv()
            assert shown["type"] == "agent.message" and shown["text"] == "I am on it."
            assert agent.post(f"/console/inbox/{conversation_id}/resolve", headers=headers).status_code == 200
            assert ws.recv()["status"] == "resolved"
        finally:
            live.close()
    ws.send({"type": "message", "client_id": "c3", "text": "back to you bot"})
    assert ws.until("reply.end")[-1]["finish_reason"] == "stop"
    assert node == "n0"
