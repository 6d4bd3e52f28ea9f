"""Every step of a turn reaches the event sink (the analytics writer plugs in there), with GenAI attribute names."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from starlette.testclient import TestClient

from tests.conftest import ORIGIN, _tenant
from widget_server.app import create_app
from widget_server.domain.events import MemorySink
from widget_server.settings import Settings


def test_a_turn_emits_its_events(settings_factory: Callable[..., Settings]) -> None:
    settings = settings_factory()
    keys = asyncio.run(_tenant(settings.resolved_database_url, [ORIGIN]))
    sink = MemorySink()
    with TestClient(create_app(settings, events=sink), base_url="http://localhost") as client:
        auth = {"Authorization": f"Bearer {keys['sk']}"}
        client.post("/v1/personas", headers=auth, json={"name": "E", "slug": "e", "provider": {"model": "echo"}})
        session = client.post("/v1/widget/sessions", json={"key": keys["pk"], "persona": "e"},
                              headers={"Origin": ORIGIN}).json()
        with client.websocket_connect("ws://localhost/v1/widget/ws", headers={"Origin": ORIGIN}) as ws:
            ws.send_json({"type": "hello", "token": session["token"]})
            ready = ws.receive_json()
            ws.send_json({"type": "event", "name": "widget.opened", "props": {"page": "/pricing"}})
            ws.send_json({"type": "message", "client_id": "c1", "text": "count my tokens"})
            while (frame := ws.receive_json())["type"] != "reply.end":
                pass
            ws.send_json({"type": "feedback", "message_id": frame["message_id"], "rating": "up"})
            ws.send_json({"type": "ping"})
            assert ws.receive_json()["type"] == "pong"
    types = [e.type for e in sink.events]
    assert types == ["conversation.started", "widget.opened", "message.received", "reply.completed",
                     "feedback.submitted"]
    assert all(e.conversation_id == ready["conversation_id"] and e.tenant_id == keys["tenant_id"]
               and e.visitor_id == session["visitor_id"] and e.channel == "widget" for e in sink.events)
    done = sink.events[3].attributes
    assert done["gen_ai.request.model"] == "echo" and done["gen_ai.usage.output_tokens"] == 3
    assert done["finish_reason"] == "stop" and done["ttft_ms"] is not None
