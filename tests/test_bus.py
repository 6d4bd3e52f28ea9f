"""The conversation bus across nodes, in one process: two apps (two uvicorn servers) on one database and one Redis,
as two nodes behind a balancer would be. What a visitor notices: a conversation continues on whichever node the
socket lands, a cancel or a deletion reaches the node that holds the reply or the socket, and a lost log gives the
stored transcript instead of doubled or missing text. (Real processes behind HAProxy: test_nodes.py.)"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Callable
from typing import Any

import httpx
import pytest
import redis

from tests.conftest import Stack
from tests.support.servers import serve_in_thread
from widget_server.app import create_app

REDIS = "redis://127.0.0.1:6379/0"
EXPECTED = "".join(f"w{i} " for i in range(1, 61))
LIMITS = {"rate_limit_sessions": 10_000, "rate_limit_hellos": 10_000}  # Redis's limits are shared by the suite


@pytest.fixture
def nodes(stack_factory: Callable[..., Stack]) -> tuple[Stack, Stack]:
    first = stack_factory(redis_url=REDIS, **LIMITS)
    url = first.exits.enter_context(serve_in_thread(create_app(first.settings)))
    return first, Stack(url, first.settings, first.tenant_id, first.sk, first.pk, first.exits)


def _text(frames: list[dict[str, Any]], message_id: str) -> str:
    return "".join(f["text"] for f in frames if f["type"] == "reply.delta" and f["message_id"] == message_id)


def _stored(stack: Stack, conversation_id: str) -> list[dict[str, Any]]:
    r = httpx.get(f"{stack.url}/v1/conversations/{conversation_id}", headers=stack.auth)
    return r.json()["messages"]  # type: ignore[no-any-return]


def _mid_reply(node: Stack, persona: str) -> tuple[Any, str, str, str]:
    """A socket on `node` whose reply has streamed a few deltas: (socket, conversation, visitor, reply id)."""
    token, visitor = node.token(persona)
    ws = node.open(persona, token=token)
    conversation_id = ws.recv()["conversation_id"]
    ws.send({"type": "message", "client_id": "c1", "text": "tell me a long story"})
    message_id = ws.until("reply.start")[-1]["message_id"]
    for _ in range(3):
        ws.until("reply.delta")
    return ws, conversation_id, visitor, message_id


def _resume(node: Stack, persona: str, visitor: str, conversation_id: str, last: dict[str, Any], epoch: str) -> Any:
    token, _ = node.token(persona, visitor_id=visitor)
    return node.open(persona, token=token,
                     resume={"conversation_id": conversation_id, "last_seq": last["seq"], "epoch": epoch})


def test_a_reply_resumes_on_the_other_node_with_nothing_lost_or_doubled(nodes: tuple[Stack, Stack]) -> None:
    a, b = nodes
    persona = a.persona("pace-20-60")
    ws, conversation_id, visitor, message_id = _mid_reply(a, persona)
    epoch = ws.frames[0]["epoch"]
    ws.close()
    other = _resume(b, persona, visitor, conversation_id, ws.frames[-1], epoch)
    ready = other.recv()
    assert ready["resumed"] is True and ready["epoch"] == epoch
    after = other.until("reply.end")
    assert after[0]["seq"] == ws.frames[-1]["seq"] + 1
    text = _text(ws.frames, message_id) + _text(after, message_id)
    assert text == EXPECTED == _stored(b, conversation_id)[-1]["text"]
    # The conversation goes on on this node, the next reply knowing the first (the same conversation).
    other.send({"type": "message", "client_id": "c2", "text": "and then?"})
    assert other.until("reply.end")[-1]["finish_reason"] == "stop"
    assert [m["role"] for m in _stored(b, conversation_id)] == ["visitor", "persona", "visitor", "persona"]


def test_a_newer_socket_on_another_node_takes_over_and_can_cancel_the_reply(nodes: tuple[Stack, Stack]) -> None:
    a, b = nodes
    persona = a.persona("pace-50-60")
    ws, conversation_id, visitor, message_id = _mid_reply(a, persona)
    other = _resume(b, persona, visitor, conversation_id, ws.frames[-1], ws.frames[0]["epoch"])
    assert other.recv()["resumed"] is True
    assert ws.close_code() == 4409  # the older socket yields, wherever it is
    other.send({"type": "cancel", "message_id": message_id})
    end = other.until("reply.end")[-1]
    assert end["message_id"] == message_id and end["finish_reason"] == "cancelled"
    stored = _stored(a, conversation_id)[-1]
    seen = {f["seq"]: f for f in ws.frames + other.frames if f["type"] == "reply.delta"}  # each once
    assert stored["finish_reason"] == "cancelled" and stored["text"] == _text(list(seen.values()), message_id)


def test_deleting_a_persona_on_one_node_closes_its_sockets_on_the_other(nodes: tuple[Stack, Stack]) -> None:
    a, b = nodes
    persona = a.persona("words-3")
    ws = a.open(persona)
    assert ws.recv()["type"] == "ready"
    assert httpx.delete(f"{b.url}/v1/personas/{persona}", headers=b.auth).status_code == 204
    assert ws.close_code() == 4404
    assert ws.frames[-1]["type"] == "error" and ws.frames[-1]["code"] == "persona.not_found"


def test_a_lost_log_gives_the_transcript_not_a_partial_replay(nodes: tuple[Stack, Stack]) -> None:
    """The log's keys vanish mid-reply (as when Redis restarts or they expire): the node notices at its next
    frame, ends the reply as interrupted, then closes the socket for it to resume; the resuming client, holding the
    old epoch, gets the stored transcript with that reply in it exactly once."""
    a, b = nodes
    persona = a.persona("pace-20-60")
    ws, conversation_id, visitor, message_id = _mid_reply(a, persona)
    epoch = ws.frames[0]["epoch"]
    client = redis.Redis.from_url(REDIS)
    client.delete(f"widget:bus:c:{conversation_id}:m", f"widget:bus:c:{conversation_id}:log")
    assert ws.close_code() == 1012  # once the reply it ran is stored, so that any node's transcript holds it
    stored = _stored(a, conversation_id)
    assert stored[-1]["finish_reason"] == "interrupted" and stored[-1]["text"].startswith("w1 w2 ")
    other = _resume(b, persona, visitor, conversation_id, ws.frames[-1], epoch)
    ready = other.recv()
    assert ready["resumed"] is False and ready["epoch"] != epoch
    assert [(m["id"], m["text"]) for m in ready["messages"]] == [(m["id"], m["text"]) for m in stored]
    other.send({"type": "ping"})
    assert [f["type"] for f in other.until("pong")] == ["pong"]  # nothing of the old reply replayed
    # A reload (last_seq 0, no epoch) replays the new log, which holds nothing of the reply cut short either.
    token, _ = b.token(persona, visitor_id=visitor)
    reload = b.open(persona, token=token, resume={"conversation_id": conversation_id, "last_seq": 0})
    assert reload.recv()["type"] == "ready"
    reload.send({"type": "ping"})
    assert [f["type"] for f in reload.until("pong")] == ["pong"]


def _published(pubsub: Any, conversation_id: str) -> list[str]:
    """The frames Redis published to any node's channel for the conversation (`f<conversation>|epoch|frame`)."""
    out = []
    while (message := pubsub.get_message(timeout=0.2)) is not None:
        if message["type"] == "pmessage" and message["data"].startswith(f"f{conversation_id}|".encode()):
            out.append(message["data"].decode())
    return out


def test_a_nodes_own_frames_do_not_come_back_through_pub_sub(nodes: tuple[Stack, Stack]) -> None:
    """A reply whose socket is on the node that runs it costs Redis no pub/sub message per frame (the node delivers
    its frames from what the append returns); one whose socket moved to another node reaches that node."""
    a, b = nodes
    persona = a.persona("pace-50-60")
    client = redis.Redis.from_url(REDIS)
    pubsub = client.pubsub()
    pubsub.psubscribe("widget:bus:n:*")
    assert pubsub.get_message(timeout=2)["type"] == "psubscribe"
    ws, conversation_id, visitor, message_id = _mid_reply(a, persona)
    ws.until("reply.end")
    assert _published(pubsub, conversation_id) == []
    ws.send({"type": "message", "client_id": "c2", "text": "more please"})
    second = ws.until("reply.start")[-1]["message_id"]
    ws.until("reply.delta")
    other = _resume(b, persona, visitor, conversation_id, ws.frames[-1], ws.frames[0]["epoch"])
    assert other.recv()["resumed"] is True
    after = other.until("reply.end")
    assert after[-1]["message_id"] == second and after[-1]["finish_reason"] == "stop"
    published = _published(pubsub, conversation_id)
    assert published and all(f'"message_id":"{second}"' in p for p in published)
    pubsub.close()


def test_frames_reach_listeners_in_seq_order_and_a_lasting_gap_is_a_loss(monkeypatch: pytest.MonkeyPatch) -> None:
    """A node's own frames (from the append) and other nodes' (from pub/sub) come on different connections, so a
    frame can arrive before the one it follows: it waits for it. One that never comes makes the line lost, so the
    socket resumes from what is stored rather than skipping a frame."""
    from widget_server.backends.bus import redis as redis_bus

    class Heard:
        def __init__(self) -> None:
            self.frames: list[int] = []
            self.first = asyncio.Event()
            self.gone = asyncio.Event()

        def frame(self, seq: int, text: str) -> None:
            self.frames.append(seq)
            self.first.set()

        def control(self, message: dict[str, Any]) -> None:
            return None

        def lost(self) -> None:
            self.gone.set()

    def frame(seq: int) -> str:
        return f'{{"seq":{seq},"type":"reply.delta","text":"x"}}'

    async def run() -> tuple[list[int], list[int]]:
        monkeypatch.setattr(redis_bus, "GAP_S", 0.05)
        bus = redis_bus.RedisBus(REDIS, "order", max_frames=100, ttl_s=60, lease_s=3)
        await bus.start()
        try:
            line = bus.line(f"conv_order_{secrets.token_hex(4)}")
            heard = Heard()
            await line.join(heard)
            line.emit({"type": "reply.start", "message_id": "m1"})
            async with asyncio.timeout(5):  # the first frame makes the log (seq 1) and comes back from the append
                await heard.first.wait()
            epoch = line.epoch
            assert epoch is not None
            line.deliver(epoch, frame(3))
            line.deliver(epoch, frame(4))
            before = list(heard.frames)
            line.deliver(epoch, frame(2))
            line.deliver(epoch, frame(3))  # twice: kept once
            in_order = list(heard.frames)
            line.deliver(epoch, frame(6))  # 5 never comes
            async with asyncio.timeout(5):
                await heard.gone.wait()
            return before, in_order
        finally:
            await bus.aclose()

    before, in_order = asyncio.run(run())
    assert before == [1] and in_order == [1, 2, 3, 4]
