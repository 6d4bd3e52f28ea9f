"""Keys are revoked or rotated with a grace period; identity secrets are derived, never stored (issue 10)."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import httpx
import pytest

from tests.conftest import Stack
from tests.support.errors import assert_error
from widget_server.backends.storage import Storage, open_storage
from widget_server.domain import identity, keys
from widget_server.errors import Conflict

T = TypeVar("T")


def with_storage(stack: Stack, fn: Callable[[Storage], Awaitable[T]]) -> T:
    async def run() -> T:
        storage = await open_storage(stack.settings.resolved_database_url)
        try:
            return await fn(storage)
        finally:
            await storage.close()
    return asyncio.run(run())


def key_id_of(stack: Stack, kind: str) -> str:
    rows = with_storage(stack, lambda s: s.list_keys(stack.tenant_id, kind))
    return str(rows[0]["id"])


def personas(stack: Stack, sk: str) -> int:
    return httpx.get(f"{stack.url}/v1/personas", headers={"Authorization": f"Bearer {sk}"}).status_code


def test_a_rotated_secret_key_works_for_its_grace_period_then_stops(stack: Stack) -> None:
    old_id = key_id_of(stack, "secret")
    new, made = with_storage(stack, lambda s: keys.rotate(s, stack.tenant_id, old_id, 3600))
    assert new.startswith("sk_") and made["kind"] == "secret" and made["id"] != old_id
    assert personas(stack, stack.sk) == 200 and personas(stack, new) == 200  # both, during the grace period
    with_storage(stack, lambda s: keys.rotate(s, stack.tenant_id, made["id"], 0))  # no grace: ends now
    assert personas(stack, new) == 401
    assert personas(stack, stack.sk) == 200  # its own grace period is still running


def test_a_revoked_publishable_key_opens_no_session(stack: Stack) -> None:
    persona = stack.persona()
    assert stack.session(persona).status_code == 201
    pk_id = key_id_of(stack, "publishable")
    with_storage(stack, lambda s: keys.revoke(s, stack.tenant_id, pk_id))
    assert_error(stack.session(persona), 401, "auth.invalid_key")


def test_the_last_secret_key_cannot_be_revoked(stack: Stack) -> None:
    sk_id = key_id_of(stack, "secret")
    with pytest.raises(Conflict) as caught:
        with_storage(stack, lambda s: keys.revoke(s, stack.tenant_id, sk_id))
    assert caught.value.code == "key.last_secret"
    assert personas(stack, stack.sk) == 200


def _sign(secret: str, user_id: str) -> str:
    return hmac.new(secret.encode(), user_id.encode(), hashlib.sha256).hexdigest()


def test_an_identity_secret_is_shown_once_verifies_and_is_not_in_the_database(stack: Stack) -> None:
    server_secret = stack.settings.signing_secret()
    shown: dict[str, Any] = with_storage(stack, lambda s: identity.rotate(s, server_secret, stack.tenant_id))
    secret = shown["secret"]
    assert shown == {"require_identity": False, "secret_set": True, "secret": secret}
    with_storage(stack, lambda s: identity.require(s, stack.tenant_id, True))
    persona = stack.persona()
    assert_error(stack.session(persona), 401, "auth.identity_required")
    assert_error(stack.session(persona, user={"id": "u1", "hash": _sign("wrong", "u1")}), 401, "auth.identity_invalid")
    assert stack.session(persona, user={"id": "u1", "hash": _sign(secret, "u1")}).status_code == 201
    database = stack.settings.resolved_database_url.removeprefix("sqlite:///")
    stored = b"".join(open(database + suffix, "rb").read() for suffix in ("", "-wal"))
    assert secret.encode() not in stored  # a copy of the database reveals no identity secret
    again = with_storage(stack, lambda s: identity.rotate(s, server_secret, stack.tenant_id))["secret"]
    assert again != secret
    assert_error(stack.session(persona, user={"id": "u1", "hash": _sign(secret, "u1")}), 401, "auth.identity_invalid")


def test_identity_cannot_be_required_without_a_secret(stack: Stack) -> None:
    with pytest.raises(Conflict) as caught:
        with_storage(stack, lambda s: identity.require(s, stack.tenant_id, True))
    assert caught.value.code == "identity.no_secret"


def test_keys_and_identity_over_rest(stack: Stack) -> None:
    api = f"{stack.url}/v1"
    made = httpx.post(f"{api}/keys", json={"kind": "publishable", "origins": ["https://shop.example"]},
                      headers=stack.auth)
    assert made.status_code == 201 and made.json()["key"].startswith("pk_")
    assert made.headers["location"] == f"/v1/keys/{made.json()['id']}"
    listed = httpx.get(f"{api}/keys", headers=stack.auth).json()["data"]
    assert {k["kind"] for k in listed} == {"secret", "publishable"} and all("key" not in k for k in listed)
    assert all(not k["hint"].endswith(made.json()["key"][7:]) for k in listed)  # the key is never shown again
    rotated = httpx.post(f"{api}/keys/{made.json()['id']}/rotate", json={"grace_s": 0}, headers=stack.auth)
    assert rotated.status_code == 201 and rotated.json()["origins"] == ["https://shop.example"]
    assert_error(httpx.delete(f"{api}/keys/{made.json()['id']}", headers=stack.auth), 409, "key.ended")
    assert httpx.delete(f"{api}/keys/{rotated.json()['id']}", headers=stack.auth).status_code == 204
    [own] = [k for k in listed if k["kind"] == "secret"]
    assert_error(httpx.delete(f"{api}/keys/{own['id']}", headers=stack.auth), 409, "key.last_secret")
    other = stack.tenant()
    assert_error(httpx.delete(f"{api}/keys/{own['id']}", headers={"Authorization": f"Bearer {other['sk']}"}),
                 404, "key.not_found")  # another tenant's key is not there
    assert httpx.get(f"{api}/identity", headers=stack.auth).json() == {"require_identity": False,
                                                                       "secret_set": False}
    assert_error(httpx.put(f"{api}/identity", json={"require_identity": True}, headers=stack.auth), 409,
                 "identity.no_secret")
    secret = httpx.post(f"{api}/identity/rotate", headers=stack.auth).json()["secret"]
    assert secret.startswith("idsec_")
    assert httpx.put(f"{api}/identity", json={"require_identity": True}, headers=stack.auth).json() == {
        "require_identity": True, "secret_set": True}


def _prompt(stack: Stack, sk: str, persona: str, body: Any = None) -> httpx.Response:
    return httpx.post(f"{stack.url}/v1/personas/{persona}/prompt", json={"message": "hi"} if body is None else body,
                      headers={"Authorization": f"Bearer {sk}"}, timeout=30)


def _completion(stack: Stack, sk: str, model: str, stream: bool = False) -> httpx.Response:
    body = {"model": model, "stream": stream, "messages": [{"role": "user", "content": "hi"}]}
    return httpx.post(f"{stack.url}/v1/openai/chat/completions", json=body, headers={"Authorization": f"Bearer {sk}"},
                      timeout=30)


def test_a_key_the_server_has_seen_stops_at_once_on_the_prompt_paths(stack: Stack) -> None:
    """The prompt and OpenAI paths check a key they have seen work with their persona read: a key ended outside
    the server's API (the CLI, another node) is refused by the very next request, on each path."""
    persona = stack.persona()
    old_id = key_id_of(stack, "secret")
    new, made = with_storage(stack, lambda s: keys.rotate(s, stack.tenant_id, old_id, 3600))
    assert _prompt(stack, new, persona).status_code == 200  # seen: its tenant is known on this node now
    assert _completion(stack, new, persona).status_code == 200
    assert _completion(stack, new, persona, stream=True).status_code == 200
    with_storage(stack, lambda s: keys.rotate(s, stack.tenant_id, made["id"], 0))  # ends now, in storage only
    assert_error(_prompt(stack, new, persona), 401, "auth.invalid_key")
    assert _completion(stack, new, persona).status_code == 401
    assert _completion(stack, new, persona, stream=True).status_code == 401
    assert_error(_prompt(stack, new, "no-such-persona"), 401, "auth.invalid_key")  # not a 404: the key is told first
    assert_error(_prompt(stack, new, persona, {"nope": 1}), 401, "auth.invalid_key")  # nor a 400
    assert _prompt(stack, stack.sk, persona).status_code == 200  # its grace period is still running


def test_a_seen_key_reads_its_persona_and_its_errors_as_any_key(stack: Stack) -> None:
    persona = stack.persona()
    assert _prompt(stack, stack.sk, persona).status_code == 200
    assert_error(_prompt(stack, stack.sk, "no-such-persona"), 404, "persona.not_found")
    assert_error(_prompt(stack, stack.sk, "no-such-persona", {"nope": 1}), 400, "request.invalid")  # body first
    assert _completion(stack, stack.sk, "no-such-persona").status_code == 404
    other = stack.tenant()
    assert _prompt(stack, other["sk"], persona).status_code == 404  # another tenant's key never reads it
    assert _prompt(stack, other["sk"], persona).status_code == 404  # nor once this node has seen that key
