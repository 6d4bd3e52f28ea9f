"""`Idempotency-Key` on the API's POSTs (edges/idempotency.py, domain/idempotency.py) over a real server, on
SQLite and PostgreSQL: a retry gets the first answer and runs nothing again; another request under the same key
is a 422; a key in flight is a 409; keys expire after 24 h (an injected clock) and belong to one tenant."""

from __future__ import annotations

import asyncio
import secrets
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from starlette.testclient import TestClient

from tests.conftest import Stack, _tenant
from tests.support.errors import assert_error
from tests.support.servers import serve_in_thread
from tests.support.upstream import Upstream
from widget_server.app import create_app
from widget_server.backends.storage import open_storage
from widget_server.backends.storage.tables import idempotency_keys
from widget_server.settings import Settings


@pytest.fixture
def db_stack(stack_factory: Callable[..., Stack], db_url: str) -> Stack:
    return stack_factory(database_url=db_url)


def post(stack: Stack, path: str, body: Any, key: str | None, sk: str | None = None,
         **headers: str) -> httpx.Response:
    extra = {"Idempotency-Key": key} if key is not None else {}
    return httpx.post(f"{stack.url}{path}", json=body, timeout=30,
                      headers={"Authorization": f"Bearer {sk or stack.sk}", **extra, **headers})


def slugs(stack: Stack, sk: str | None = None) -> list[str]:
    r = httpx.get(f"{stack.url}/v1/personas", headers={"Authorization": f"Bearer {sk or stack.sk}"})
    return [p["slug"] for p in r.json()["data"]]


def stored_rows(stack: Stack) -> list[dict[str, Any]]:
    """The stack's tenant's stored keys (PostgreSQL's database is shared by the session's tests)."""
    async def read() -> list[dict[str, Any]]:
        storage = await open_storage(stack.settings.resolved_database_url)
        try:
            async with storage.engine.connect() as conn:
                query = sa.select(idempotency_keys).where(idempotency_keys.c.tenant_id == stack.tenant_id)
                return [dict(r) for r in (await conn.execute(query)).mappings().all()]
        finally:
            await storage.close()
    return asyncio.run(read())


def test_a_retry_gets_the_first_answer_and_makes_one_persona(db_stack: Stack) -> None:
    key = secrets.token_hex(8)
    body = {"name": "Once Only"}  # no slug: run twice, the second would be a 409 slug_taken
    first = post(db_stack, "/v1/personas", body, key)
    again = post(db_stack, "/v1/personas", body, key)
    assert first.status_code == again.status_code == 201, again.text
    assert again.json() == first.json() and again.headers["location"] == first.headers["location"]
    assert again.headers["idempotent-replayed"] == "true" and "idempotent-replayed" not in first.headers
    assert again.headers["x-request-id"] != first.headers["x-request-id"]  # a new request, the old answer
    assert slugs(db_stack).count("once-only") == 1
    assert post(db_stack, "/v1/personas", body, None).status_code == 409  # without the key it does run again


def test_the_same_key_for_another_request_is_a_422(db_stack: Stack) -> None:
    key = secrets.token_hex(8)
    assert post(db_stack, "/v1/personas", {"name": "Ann"}, key).status_code == 201
    err = assert_error(post(db_stack, "/v1/personas", {"name": "Bob"}, key), 422, "idempotency.key_reused")
    assert "another request" in err["message"] and err["details"] == {"header": "Idempotency-Key"}
    other_path = post(db_stack, "/v1/webhooks", {"url": "https://hooks.example/x"}, key)
    assert_error(other_path, 422, "idempotency.key_reused")
    assert "bob" not in slugs(db_stack)


def test_two_tenants_may_use_the_same_key(db_stack: Stack) -> None:
    other = db_stack.tenant()
    key, body = "order-1", {"name": "Shared Key"}
    mine, theirs = post(db_stack, "/v1/personas", body, key), post(db_stack, "/v1/personas", body, key, other["sk"])
    assert mine.status_code == theirs.status_code == 201
    assert mine.json()["id"] != theirs.json()["id"] and "idempotent-replayed" not in theirs.headers
    assert_error(post(db_stack, "/v1/personas", {"name": "Else"}, key, other["sk"]), 422)  # theirs is theirs


def test_a_stored_answer_keeps_no_secret_in_the_clear(db_stack: Stack) -> None:
    key = secrets.token_hex(8)
    made = post(db_stack, "/v1/keys", {"kind": "secret"}, key)
    assert made.status_code == 201, made.text
    again = post(db_stack, "/v1/keys", {"kind": "secret"}, key)
    assert again.json()["key"] == made.json()["key"]  # the client that lost the answer gets its key
    [row] = [r for r in stored_rows(db_stack) if r["state"] == "done"]
    assert made.json()["key"] not in (row["response"] or "") and key not in str(row)  # sealed, and hashed


@pytest.mark.parametrize("value", ["", '""', "k" * 256])
def test_an_empty_or_long_key_is_a_400(stack: Stack, value: str) -> None:
    err = assert_error(post(stack, "/v1/personas", {"name": "Nope"}, value), 400, "idempotency.invalid_key")
    assert err["details"]["header"] == "Idempotency-Key"
    assert slugs(stack) == []


def test_a_quoted_key_is_the_same_key(stack: Stack) -> None:
    assert post(stack, "/v1/personas", {"name": "Quoted"}, "k" * 255).status_code == 201  # 255 is allowed
    assert post(stack, "/v1/personas", {"name": "Sf"}, '"abc"').status_code == 201
    assert post(stack, "/v1/personas", {"name": "Sf"}, "abc").headers.get("idempotent-replayed") == "true"


def test_a_key_in_flight_is_a_409(stack_factory: Callable[..., Stack], upstream: tuple[Upstream, str]) -> None:
    fake, _ = upstream
    stack = stack_factory(provider_stall_s=60, provider_timeout_s=60)
    name = secrets.token_hex(4)
    persona = stack.persona(f"hold-{name}")
    key, body, path = secrets.token_hex(8), {"message": "hello"}, f"/v1/personas/{persona}/prompt"
    answers: list[httpx.Response] = []
    first = threading.Thread(target=lambda: answers.append(post(stack, path, body, key)))
    first.start()
    deadline = time.monotonic() + 30
    while fake.hits.get(f"hold-{name}", 0) == 0:  # the first request has reached the model: it is in flight
        assert time.monotonic() < deadline, "the first request never reached the upstream"
        time.sleep(0.01)
    err = assert_error(post(stack, path, body, key), 409, "idempotency.in_flight")
    assert "still running" in err["message"]
    fake.hold(name).set()
    first.join(30)
    assert answers[0].status_code == 200, answers[0].text
    replay = post(stack, path, body, key)
    assert replay.json() == answers[0].json() and replay.headers["idempotent-replayed"] == "true"
    assert fake.hits[f"hold-{name}"] == 1  # the model was asked once


def test_a_server_error_is_not_kept_and_a_stream_is_not_stored(stack: Stack) -> None:
    persona = stack.persona("fail-idem")
    key, path = secrets.token_hex(8), f"/v1/personas/{persona}/prompt"
    assert post(stack, path, {"message": "hi"}, key).status_code == 502
    assert post(stack, path, {"message": "hi"}, key).status_code == 502  # ran again: a retry may succeed
    echo = stack.persona("echo")
    key = secrets.token_hex(8)
    streams = [post(stack, f"/v1/personas/{echo}/prompt/stream", {"message": "hi"}, key) for _ in range(2)]
    assert all(r.status_code == 200 and "reply.end" in r.text for r in streams)
    assert streams[0].headers["x-conversation-id"] != streams[1].headers["x-conversation-id"]  # each one ran
    assert stored_rows(stack) == []


class Clock:
    def __init__(self) -> None:
        self.at = datetime(2026, 1, 1, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.at


@pytest.fixture
def clocked(settings_factory: Callable[..., Settings], db_url: str) -> Iterator[tuple[str, str, Clock]]:
    settings = settings_factory(database_url=db_url)
    keys = asyncio.run(_tenant(settings.resolved_database_url, ["https://shop.example"]))
    clock = Clock()
    with serve_in_thread(create_app(settings, clock=clock)) as url:
        yield url, keys["sk"], clock


def test_a_key_expires_after_24_hours(clocked: tuple[str, str, Clock]) -> None:
    url, sk, clock = clocked
    auth = {"Authorization": f"Bearer {sk}", "Idempotency-Key": "daily"}
    assert httpx.post(f"{url}/v1/personas", json={"name": "Day One"}, headers=auth).status_code == 201
    clock.at += timedelta(hours=23, minutes=59)
    assert httpx.post(f"{url}/v1/personas", json={"name": "Day Two"}, headers=auth).status_code == 422
    clock.at += timedelta(minutes=2)
    later = httpx.post(f"{url}/v1/personas", json={"name": "Day Two"}, headers=auth)
    assert later.status_code == 201 and "idempotent-replayed" not in later.headers
    again = httpx.post(f"{url}/v1/personas", json={"name": "Day Two"}, headers=auth)
    assert again.headers["idempotent-replayed"] == "true" and again.json()["id"] == later.json()["id"]


def test_any_key_value_is_a_400_or_honoured(settings_factory: Callable[..., Settings]) -> None:
    settings = settings_factory(allowed_hosts="testserver")
    keys = asyncio.run(_tenant(settings.resolved_database_url, ["https://shop.example"]))
    seen: dict[str, str] = {}
    with TestClient(create_app(settings), base_url="http://testserver") as client:
        @settings_(max_examples=60, suppress_health_check=[HealthCheck.too_slow])
        @given(st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=300))
        def check(value: str) -> None:
            key = value.strip()
            if len(key) >= 2 and key[0] == key[-1] == '"':
                key = key[1:-1].replace('\\"', '"').replace("\\\\", "\\")
            body = {"name": "H", "slug": f"h-{abs(hash(key)) % 10**12}"}  # one body per key
            r = client.post("/v1/personas", json=body, headers={"Authorization": f"Bearer {keys['sk']}",
                                                                "Idempotency-Key": value})
            if not key or len(key) > 255:
                assert r.status_code == 400 and r.json()["error"]["code"] == "idempotency.invalid_key", r.text
                return
            assert r.status_code == 201, r.text
            assert (r.headers.get("idempotent-replayed") == "true") == (key in seen)
            assert seen.setdefault(key, r.json()["id"]) == r.json()["id"]
        check()


settings_ = settings  # (hypothesis's settings, beside the fixtures' Settings)


def test_the_openai_path_replays_and_refuses_in_openais_shape(stack: Stack) -> None:
    persona, key, path = stack.persona("echo"), secrets.token_hex(8), "/v1/openai/chat/completions"
    body = {"model": persona, "messages": [{"role": "user", "content": "once"}]}
    first, again = post(stack, path, body, key), post(stack, path, body, key)
    assert first.status_code == again.status_code == 200 and again.json() == first.json()
    assert again.headers["x-persona-conversation-id"] == first.headers["x-persona-conversation-id"]
    refused = post(stack, path, {**body, "messages": [{"role": "user", "content": "twice"}]}, key)
    assert refused.status_code == 422 and refused.json()["error"]["code"] == "idempotency.key_reused"
    assert set(refused.json()["error"]) == {"message", "type", "param", "code"}
    streamed = [post(stack, path, {**body, "stream": True}, "stream-key") for _ in range(2)]
    assert [r.status_code for r in streamed] == [200, 200] and all("[DONE]" in r.text for r in streamed)
    assert len({r.headers["x-persona-conversation-id"] for r in streamed}) == 2  # streams run each time
