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
