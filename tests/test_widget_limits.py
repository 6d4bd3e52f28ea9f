"""A visitor cannot slip past the limits or become another visitor (issue 10): every frame type is limited, on
what a client cannot rotate for free; a verified user's conversation is that user's; a session lives no longer
than its token and its key."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import time
from collections.abc import Callable

import httpx
import pytest

from tests.conftest import Stack
from tests.support.errors import assert_error
from widget_server.backends.storage import open_storage
from widget_server.domain import identity, keys
from widget_server.domain.tenants import SessionSigner


def test_event_frames_are_limited_like_every_frame(stack_factory: Callable[..., Stack]) -> None:
    """300 `event` frames went through in 0.05 s and made 301 stored events (and deliveries per webhook)."""
    stack = stack_factory(rate_limit_frames=30)
    ws = stack.open(stack.persona())
    conversation = ws.recv()["conversation_id"]
    for _ in range(60):
        ws.send({"type": "event", "name": "widget.opened"})
    ws.send({"type": "ping"})
    got = ws.until("error")  # the first frame past the limit is answered at once
    assert got[-1]["code"] == "rate_limited" and got[-1]["details"]["retry_after_s"] > 0
    assert ws.close_code() == 4429  # it kept sending past the limit: closed
    stored = stack.wait_events(lambda e: len(e) >= 29, type="widget.opened", conversation=conversation)
    assert len(stored) <= 30


def test_one_token_opens_a_bounded_number_of_conversations(stack_factory: Callable[..., Stack]) -> None:
    """30 sockets on one token made 31 conversations (and their webhook deliveries)."""
    stack = stack_factory(rate_limit_hellos=5)
    persona = stack.persona()
    token, _ = stack.token(persona)
    opened, refused = [], []
    for _ in range(8):
        ws = stack.open(persona, token=token)
        first = ws.recv()
        if first["type"] == "ready":
            opened.append(first["conversation_id"])
        else:
            assert first["code"] == "rate_limited"
            refused.append(ws.close_code())
    assert len(opened) == 5 and refused == [4429] * 3
    started = stack.wait_events(lambda e: len(e) >= 5, type="conversation.started")
    assert len(started) == 5


def test_sessions_are_limited_per_address_and_per_key(stack_factory: Callable[..., Stack]) -> None:
    """200 session creations (each a fresh token, each rotating the visitor id) got no 429."""
    stack = stack_factory(rate_limit_sessions=5)
    persona = stack.persona()
    answers = [stack.session(persona, visitor_id=f"v{i}") for i in range(7)]
    assert [r.status_code for r in answers] == [201] * 5 + [429] * 2
    err = assert_error(answers[-1], 429, "rate_limited")
    assert int(answers[-1].headers["retry-after"]) >= 1 and "address" in err["message"]
    assert answers[-1].headers["access-control-allow-origin"] == stack.origin
    per_key = stack_factory(rate_limit_sessions=1000, rate_limit_sessions_per_key=3)
    persona = per_key.persona()
    assert [per_key.session(persona).status_code for _ in range(4)] == [201, 201, 201, 429]


def test_a_visitor_using_anothers_id_does_not_use_up_the_victims_messages(stack_factory: Callable[..., Stack]) -> None:
    stack = stack_factory(rate_limit_messages=2)
    persona = stack.persona("words-1")
    victim_token, victim = stack.token(persona)
    attacker_token, _ = stack.token(persona, visitor_id=victim)  # the victim's id, which the client chooses
    attacker = stack.open(persona, token=attacker_token)
    attacker.recv()
    for i in range(3):
        attacker.send({"type": "message", "client_id": f"a{i}", "text": "spam"})
    assert attacker.until("error")[-1]["code"] == "rate_limited"
    ws = stack.open(persona, token=victim_token)
    ws.recv()
    for i in range(2):
        ws.send({"type": "message", "client_id": f"v{i}", "text": "hello"})
        assert ws.until("reply.end")[-1]["finish_reason"] == "stop"


def _verified(stack: Stack) -> str:
    async def run() -> str:
        storage = await open_storage(stack.settings.resolved_database_url)
        try:
            return str((await identity.rotate(storage, stack.settings.signing_secret(), stack.tenant_id))["secret"])
        finally:
            await storage.close()
    return asyncio.run(run())


def _user(secret: str, user_id: str) -> dict[str, str]:
    return {"id": user_id, "hash": hmac.new(secret.encode(), user_id.encode(), hashlib.sha256).hexdigest()}


def test_a_verified_users_conversation_is_resumed_by_that_user_only(stack: Stack) -> None:
    """A visitor verified as one user claimed another's visitor id and resumed that user's conversation."""
    secret = _verified(stack)
    persona = stack.persona("echo")
    token, visitor = stack.token(persona, user=_user(secret, "alice"))
    ws = stack.open(persona, token=token)
    conversation = ws.recv()["conversation_id"]
    ws.send({"type": "message", "client_id": "c1", "text": "my address is 1 Main St"})
    ws.until("reply.end")
    ws.close()
    resume = {"conversation_id": conversation, "last_seq": 0}
    for other in ({"user": _user(secret, "mallory")}, {}):  # another verified user, or nobody verified
        token, _ = stack.token(persona, visitor_id=visitor, **other)  # on another allowed origin it is the same
        ready = stack.open(persona, token=token, resume=resume).recv()
        assert ready["conversation_id"] != conversation and "messages" not in ready
    token, _ = stack.token(persona, visitor_id=visitor, user=_user(secret, "alice"))
    ready = stack.open(persona, token=token, resume=resume).recv()
    assert ready["conversation_id"] == conversation


def test_a_token_of_a_revoked_key_opens_no_socket(stack: Stack) -> None:
    persona = stack.persona()
    token, _ = stack.token(persona)

    async def revoke() -> None:
        storage = await open_storage(stack.settings.resolved_database_url)
        try:
            [pk] = await storage.list_keys(stack.tenant_id, "publishable")
            await keys.revoke(storage, stack.tenant_id, pk["id"])
        finally:
            await storage.close()

    asyncio.run(revoke())
    ws = stack.open(persona, token=token)
    assert ws.recv()["code"] == "auth.key_revoked"
    assert ws.close_code() == 4401


@pytest.mark.parametrize("left_s", [1.5])
def test_a_socket_lives_no_longer_than_its_token(stack: Stack, left_s: float) -> None:
    """An open socket kept working after its token expired; it is closed then, and the widget starts a new
    session and resumes (its close handler does this for 4401)."""
    secret = stack.settings.secret_key.get_secret_value()  # type: ignore[union-attr]
    fresh, _ = stack.token(stack.persona())
    claims = SessionSigner(secret, 900).verify(fresh)
    almost_expired = SessionSigner(secret, 900, clock=lambda: time.time() - 900 + left_s).sign(claims)
    ws = stack.open(stack.persona(), token=almost_expired)
    assert ws.recv()["type"] == "ready"
    ws.send({"type": "ping"})
    assert ws.recv()["type"] == "pong"  # usable until then
    got = ws.until("error", timeout=10)
    assert got[-1]["code"] == "auth.token_expired"
    assert ws.close_code() == 4401


def test_rest_sessions_and_prompts_are_not_limited_by_the_widgets_limits(stack_factory: Callable[..., Stack]) -> None:
    stack = stack_factory(rate_limit_sessions=1, rate_limit_messages=1)
    persona = stack.persona("echo")
    for _ in range(3):
        r = httpx.post(f"{stack.url}/v1/personas/{persona}/prompt", json={"message": "hi"}, headers=stack.auth)
        assert r.status_code == 200  # a tenant's own server, with its secret key
