"""Webhooks over real sockets: a receiver on loopback gets signed deliveries of a real conversation's events."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import ORIGIN, Stack, _tenant
from tests.support.errors import assert_error
from tests.support.receiver import Receiver, attempts, create, readme_verify, settled
from tests.support.servers import serve_process
from widget_server.domain.analytics.destinations import UnsafeURL, resolve
from widget_server.domain.analytics.signing import sign

FAST = {"webhook_allow_private": True, "webhook_backoff_s": 0.05}




def test_the_secret_is_shown_once(stack_factory: Callable[..., Stack], db_url: str, receiver: Receiver) -> None:
    stack = stack_factory(database_url=db_url, **FAST)
    r = create(stack, receiver.new()[1], event_types=["reply.completed", "escalation.triggered"])
    assert r.status_code == 201, r.text
    hook = r.json()
    assert hook["secret"].startswith("whsec_") and len(hook["secret"]) > 40
    assert hook["event_types"] == ["escalation.triggered", "reply.completed"]
    assert r.headers["location"] == f"/v1/webhooks/{hook['id']}"
    listed = httpx.get(f"{stack.url}/v1/webhooks", headers=stack.auth).json()["data"]
    assert listed == [{k: v for k, v in hook.items() if k != "secret"}]
    assert hook["secret"] not in httpx.get(f"{stack.url}/v1/webhooks/{hook['id']}/attempts", headers=stack.auth).text
    second = create(stack, receiver.new()[1]).json()
    assert second["event_types"] == ["*"] and second["secret"] != hook["secret"]


def test_a_conversation_reaches_the_receiver_signed(
    stack_factory: Callable[..., Stack], db_url: str, receiver: Receiver
) -> None:
    stack = stack_factory(database_url=db_url, **FAST)
    name, url = receiver.new()
    hook = create(stack, url, event_types=["reply.completed", "message.received"]).json()
    ready, _ = stack.turn(stack.persona(), "hello there")
    got = receiver.wait(name, lambda g: {r.json["type"] for r in g} == {"message.received", "reply.completed"})
    verify = readme_verify()
    stored = {e["id"]: e for e in stack.events(conversation=ready["conversation_id"])}
    for delivery in got:
        headers, body = delivery.headers, delivery.json
        assert verify(hook["secret"], headers["widget-signature"], delivery.body)
        assert headers["content-type"] == "application/json"
        assert headers["user-agent"].startswith("widget_server/")
        assert headers["widget-event-id"] == body["id"] == body["data"]["id"]
        assert headers["widget-delivery-attempt"] == "1"
        assert body["data"] == stored[body["id"]]  # the same shape as the API
        assert body["created"] == body["data"]["ts"] and body["type"] == body["data"]["type"]
        assert body["data"]["conversation_id"] == ready["conversation_id"]
    sample = got[0]
    signature = sample.headers["widget-signature"]
    assert not verify(hook["secret"], signature, sample.body + b" ")  # a changed body
    assert not verify("whsec_other", signature, sample.body)
    t = int(signature.split(",")[0][2:]) - 301
    assert not verify(hook["secret"], sign(hook["secret"], sample.body, t), sample.body)  # too old: a replay
    assert verify(hook["secret"], sign(hook["secret"], sample.body, t + 60), sample.body)
    rows = attempts(stack, hook["id"]).json()["data"]
    assert {(a["event_type"], a["attempt"], a["outcome"], a["status_code"]) for a in rows} == {
        ("message.received", 1, "delivered", 200), ("reply.completed", 1, "delivered", 200)}


def test_an_escalation_is_pushed_to_the_support_team(stack_factory: Callable[..., Stack], receiver: Receiver) -> None:
    stack = stack_factory(**FAST)
    policy = {"version": 1, "escalation": {"on_request": True}}
    assert httpx.put(f"{stack.url}/v1/safety-policy", json=policy, headers=stack.auth).status_code == 200
    name, url = receiver.new()
    hook = create(stack, url, event_types=["escalation.triggered"]).json()
    ready, _ = stack.turn(stack.persona(), "can I talk to a human")
    stack.wait_events(lambda got: len(got) == 1, type="reply.completed")  # the turn's last event is committed
    settled(stack)  # and every delivery of its events made: any wrongly sent would be here
    got = receiver.of(name)
    assert [r.json["type"] for r in got] == ["escalation.triggered"]  # nothing else: it asked for this type only
    assert got[0].json["data"]["conversation_id"] == ready["conversation_id"]
    assert readme_verify()(hook["secret"], got[0].headers["widget-signature"], got[0].body)


def test_two_500s_then_delivered_on_the_third_try(
    stack_factory: Callable[..., Stack], db_url: str, receiver: Receiver
) -> None:
    stack = stack_factory(database_url=db_url, **FAST)
    name, url = receiver.new(500, 500)
    hook = create(stack, url, event_types=["reply.completed"]).json()
    stack.turn(stack.persona(), "hello")
    got = receiver.wait(name, lambda g: len(g) == 3)
    assert [r.headers["widget-delivery-attempt"] for r in got] == ["1", "2", "3"]
    assert len({r.headers["widget-event-id"] for r in got}) == 1 and len({r.body for r in got}) == 1
    verify = readme_verify()
    assert all(verify(hook["secret"], r.headers["widget-signature"], r.body) for r in got)

    def three() -> list[dict[str, Any]]:
        deadline = time.monotonic() + 5
        while len(rows := attempts(stack, hook["id"]).json()["data"]) < 3:
            assert time.monotonic() < deadline, rows
            time.sleep(0.02)
        return rows  # type: ignore[no-any-return]

    rows = three()
    assert [(a["attempt"], a["outcome"], a["status_code"]) for a in rows] == [
        (3, "delivered", 200), (2, "retrying", 500), (1, "retrying", 500)]
    assert rows[2]["error"] == "HTTP 500" and rows[0]["error"] is None
    page = httpx.get(f"{stack.url}/v1/webhooks/{hook['id']}/attempts", params={"limit": 2},
                     headers=stack.auth).json()
    rest = httpx.get(f"{stack.url}/v1/webhooks/{hook['id']}/attempts", params={"cursor": page["next_cursor"]},
                     headers=stack.auth).json()
    assert page["data"] + rest["data"] == rows and page["has_more"] and not rest["has_more"]
    metrics = httpx.get(f"{stack.url}/metrics").text
    assert 'widget_webhook_deliveries_total{outcome="retrying"} 2.0' in metrics
    assert 'widget_webhook_deliveries_total{outcome="delivered"} 1.0' in metrics
    settled(stack)  # nothing left to try: no fourth try can come
    assert len(receiver.of(name)) == 3


def test_a_receiver_that_never_succeeds_gets_every_try_then_failed(
    stack_factory: Callable[..., Stack], receiver: Receiver
) -> None:
    stack = stack_factory(**FAST, webhook_attempts=3)
    name, url = receiver.new(302, 302, 302, 302)  # a redirect is not followed: it is a failed try
    hook = create(stack, url, event_types=["conversation.started"]).json()
    stack.turn(stack.persona(), "hello")
    receiver.wait(name, lambda g: len(g) == 3)
    deadline = time.monotonic() + 5
    while len(rows := attempts(stack, hook["id"]).json()["data"]) < 3:
        assert time.monotonic() < deadline
        time.sleep(0.02)
    assert [(a["outcome"], a["status_code"]) for a in rows] == [("failed", 302), ("retrying", 302), ("retrying", 302)]
    assert not receiver.of(f"{name}-redirected")


def test_tenants_never_see_each_others_webhooks(
    stack_factory: Callable[..., Stack], db_url: str, receiver: Receiver
) -> None:
    stack = stack_factory(database_url=db_url, **FAST)
    other = stack.tenant()
    mine, my_url = receiver.new()
    theirs, their_url = receiver.new()
    hook = create(stack, my_url).json()
    their_hook = create(stack, their_url, sk=other["sk"]).json()
    stack.turn(stack.persona(), "hello")
    receiver.wait(mine, lambda g: "reply.completed" in {r.json["type"] for r in g})
    settled(stack, Stack(stack.url, stack.settings, other["tenant_id"], other["sk"], other["pk"], stack.exits))
    assert receiver.of(theirs) == []
    assert all(r.json["data"]["tenant_id"] == stack.tenant_id for r in receiver.of(mine))
    their_auth = {"Authorization": f"Bearer {other['sk']}"}
    listed = httpx.get(f"{stack.url}/v1/webhooks", headers=their_auth).json()["data"]
    assert [h["id"] for h in listed] == [their_hook["id"]]
    assert_error(httpx.delete(f"{stack.url}/v1/webhooks/{hook['id']}", headers=their_auth), 404, "webhook.not_found")
    assert_error(attempts(stack, hook["id"], sk=other["sk"]), 404, "webhook.not_found")
    assert attempts(stack, their_hook["id"], sk=other["sk"]).json()["data"] == []
    assert [h["id"] for h in httpx.get(f"{stack.url}/v1/webhooks", headers=stack.auth).json()["data"]] == [hook["id"]]


def test_delete_stops_deliveries_and_retries(stack_factory: Callable[..., Stack], receiver: Receiver) -> None:
    stack = stack_factory(webhook_allow_private=True, webhook_backoff_s=0.3)
    failing, failing_url = receiver.new(*[500] * 10)
    control, control_url = receiver.new()
    hook = create(stack, failing_url, event_types=["reply.completed"]).json()
    create(stack, control_url, event_types=["reply.completed"])
    persona = stack.persona()
    stack.turn(persona, "first")
    receiver.wait(failing, lambda g: len(g) >= 1)
    assert httpx.delete(f"{stack.url}/v1/webhooks/{hook['id']}", headers=stack.auth).status_code == 204
    tries = len(receiver.of(failing))
    ready, _ = stack.turn(persona, "second")
    receiver.wait(control, lambda g: any(r.json["data"]["conversation_id"] == ready["conversation_id"] for r in g))
    settled(stack)  # the deleted webhook's retries are gone from the outbox, and nothing is in flight
    assert len(receiver.of(failing)) <= tries + 1  # at most one try already under way when it was deleted
    assert all(r.json["data"]["conversation_id"] != ready["conversation_id"] for r in receiver.of(failing))
    assert_error(httpx.delete(f"{stack.url}/v1/webhooks/{hook['id']}", headers=stack.auth), 404, "webhook.not_found")
    assert_error(attempts(stack, hook["id"]), 404, "webhook.not_found")


@pytest.mark.parametrize("url", [
    "http://127.0.0.1:8080/hook", "http://localhost/hook", "http://10.1.2.3/hook", "http://192.168.0.10/",
    "http://169.254.169.254/latest/meta-data", "http://[::1]/hook", "http://[::ffff:127.0.0.1]/hook",
    "http://0.0.0.0/", "http://100.64.0.1/", "https://does-not-exist.invalid/hook",
    # IPv6 forms that wrap a private IPv4 address, and deprecated ranges (issue 10)
    "http://[::7f00:1]/", "http://[64:ff9b::a9fe:a9fe]/latest/meta-data", "http://[2002:7f00:1::]/",
    "http://[::ffff:0:7f00:1]/", "http://[::ffff:0:0a00:1]/", "http://[fec0::1]/", "http://[64:ff9b:1::1]/",
    "http://[2001:0:4136:e378:8000:63bf:3fff:fdd2]/",
])
def test_a_private_url_is_refused(stack_factory: Callable[..., Stack], url: str) -> None:
    stack = stack_factory()  # webhook_allow_private defaults to False
    err = assert_error(create(stack, url), 422, "webhook.invalid", "invalid_request")
    assert err["details"]["errors"][0]["field"] == "url"
    assert httpx.get(f"{stack.url}/v1/webhooks", headers=stack.auth).json()["data"] == []


@pytest.mark.parametrize("url", ["https://93.184.215.14/hook", "https://[2606:4700::1111]/hook",
                                 "https://[64:ff9b::5db8:d70e]/hook", "https://[2002:5db8:d70e::1]/hook"])
def test_a_public_address_is_accepted(stack: Stack, url: str) -> None:
    assert create(stack, url).status_code == 201, url


def test_the_address_is_checked_again_at_delivery(
    stack_factory: Callable[..., Stack], tmp_path: Path, receiver: Receiver
) -> None:
    """A webhook that points at a private address by the time of delivery gets a refused attempt, no request."""
    db = f"sqlite:///{tmp_path / 'shared.db'}"
    # Any node may make a delivery now: the lenient one only looks every minute, so the strict one makes it.
    lenient = stack_factory(database_url=db, webhook_allow_private=True, webhook_poll_s=60)
    strict = stack_factory(database_url=db, webhook_attempts=1)  # another node, same database
    name, url = receiver.new()
    hook = create(lenient, url, sk=strict.sk).json()
    strict.turn(strict.persona(), "hello")
    deadline = time.monotonic() + 10
    while not (rows := attempts(strict, hook["id"]).json()["data"]):
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert rows[0]["outcome"] == "failed" and rows[0]["status_code"] is None
    assert rows[0]["error"].startswith("refused: host 127.0.0.1")
    assert receiver.of(name) == []


@pytest.mark.parametrize("url", ["http://[::1]:8080/", "http://localhost/", "http://0x7f.1/", "http://[fe80::1]/",
                                 "http://[::ffff:10.0.0.1]/"])
def test_resolve_refuses_what_points_inside(url: str) -> None:
    with pytest.raises(UnsafeURL, match="non-public address"):
        asyncio.run(resolve(httpx.URL(url), allow_private=False))
    assert asyncio.run(resolve(httpx.URL("https://8.8.8.8/x"), allow_private=False)) == "8.8.8.8"


@pytest.mark.parametrize(("body", "status", "code", "field"), [
    (b"{not json", 400, "request.invalid_json", None),
    (b"[]", 400, "request.invalid", None),
    (b'{"event_types": ["*"]}', 400, "request.invalid", "url"),
    (b'{"url": "https://93.184.215.14/", "secret": "mine"}', 400, "request.invalid", "secret"),
    (b'{"url": 12}', 422, "webhook.invalid", "url"),
    (b'{"url": "ftp://93.184.215.14/"}', 422, "webhook.invalid", "url"),
    (b'{"url": "not a url"}', 422, "webhook.invalid", "url"),
    (json.dumps({"url": "https://93.184.215.14/" + "a" * 2000}).encode(), 422, "webhook.invalid", "url"),
    (b'{"url": "https://93.184.215.14/", "event_types": "reply.completed"}', 422, "webhook.invalid",
     "event_types"),
    (b'{"url": "https://93.184.215.14/", "event_types": []}', 422, "webhook.invalid", "event_types"),
    (b'{"url": "https://93.184.215.14/", "event_types": ["reply.done"]}', 422, "webhook.invalid", "event_types"),
])
def test_a_bad_body_gets_the_error_shape(stack: Stack, body: bytes, status: int, code: str, field: str | None) -> None:
    r = httpx.post(f"{stack.url}/v1/webhooks", content=body,
                   headers={**stack.auth, "Content-Type": "application/json"})
    err = assert_error(r, status, code)
    if field:
        assert err["details"]["errors"][0]["field"] == field
    assert httpx.get(f"{stack.url}/v1/webhooks", headers=stack.auth).json()["data"] == []


def test_at_most_twenty_webhooks(stack_factory: Callable[..., Stack], db_url: str) -> None:
    stack = stack_factory(database_url=db_url)
    for i in range(20):
        assert create(stack, f"https://93.184.215.14/{i}").status_code == 201
    assert_error(create(stack, "https://93.184.215.14/21"), 409, "webhook.limit_reached", "conflict")
    assert len(httpx.get(f"{stack.url}/v1/webhooks", headers=stack.auth).json()["data"]) == 20
    assert_error(httpx.get(f"{stack.url}/v1/webhooks", headers={"Authorization": "Bearer sk_nope"}), 401)


def test_a_delivery_logs_neither_the_urls_credentials_nor_its_query_tokens(
    tmp_path: Path, upstream: tuple[Any, str], receiver: Receiver
) -> None:
    """`widget-server serve` logs at INFO; the HTTP client's own request log printed the whole webhook URL."""
    db = f"sqlite:///{tmp_path / 'widget.db'}"
    keys = asyncio.run(_tenant(db, [ORIGIN]))
    env = {"WIDGET_DATA_DIR": str(tmp_path), "WIDGET_DATABASE_URL": db, "WIDGET_PROVIDER": "openai",
           "WIDGET_OPENAI_BASE_URL": upstream[1].replace("http://", "http://operator:up5tream@"),
           "WIDGET_SECRET_KEY": "logs", "WIDGET_EVENTS_FLUSH_MS": "20", "WIDGET_WEBHOOK_ALLOW_PRIVATE": "true"}
    name, url = receiver.new()
    secret_url = url.replace("http://", "http://hookuser:hookpa55@") + "?token=t0kenvalue"
    proc, base = serve_process(env)
    exits = contextlib.ExitStack()
    stack = Stack(base, None, keys["tenant_id"], keys["sk"], keys["pk"], exits)  # type: ignore[arg-type]
    try:
        create(stack, secret_url, event_types=["reply.completed"])
        stack.turn(stack.persona(), "hello")
        got = receiver.wait(name, lambda g: len(g) == 1)
        assert got[0].headers["authorization"].startswith("Basic ")  # the credentials went where they belong
    finally:
        exits.close()
        proc.terminate()
        _, logs = proc.communicate(timeout=30)
    text = logs.decode()
    assert "widget_server ready" in text  # the log was read
    for secret in ("hookpa55", "t0kenvalue", "up5tream"):
        assert secret not in text
