"""REST inputs that answered 500 with a traceback: each is a 400 with the error body (issue 10)."""

from __future__ import annotations

import asyncio
import base64

import httpx
import sqlalchemy as sa

from tests.conftest import Stack
from tests.support.errors import assert_error
from widget_server.backends.storage import open_storage
from widget_server.backends.storage.tables import tenants


def test_json_nested_100000_deep_is_a_400_with_cors_on_the_keyless_sessions_endpoint(stack: Stack) -> None:
    body = "[" * 100_000 + "]" * 100_000
    r = httpx.post(f"{stack.url}/v1/widget/sessions", content=body,
                   headers={"Origin": stack.origin, "Content-Type": "application/json"})
    assert_error(r, 400, "request.invalid_json")
    assert r.headers["access-control-allow-origin"] == stack.origin  # the widget can read why


def test_json_nested_deep_is_a_400_on_every_json_body(stack: Stack) -> None:
    body = "{\"a\":" * 50_000 + "1" + "}" * 50_000
    r = httpx.post(f"{stack.url}/v1/personas", content=body, headers={**stack.auth, "Content-Type": "application/json"})
    assert_error(r, 400, "request.invalid_json")


def test_deep_yaml_on_the_policy_is_a_400(stack: Stack) -> None:
    body = "[" * 5_000 + "]" * 5_000
    r = httpx.put(f"{stack.url}/v1/safety-policy", content=body,
                  headers={**stack.auth, "Content-Type": "application/yaml"})
    assert_error(r, 400, "request.invalid_yaml")


def test_an_event_cursor_with_40_digits_is_a_400(stack: Stack) -> None:
    cursor = base64.urlsafe_b64encode(b"e1:" + b"9" * 40).decode().rstrip("=")
    r = httpx.get(f"{stack.url}/v1/analytics/events", params={"cursor": cursor}, headers=stack.auth)
    err = assert_error(r, 400, "query.invalid")
    assert err["details"]["param"] == "cursor"


def test_a_non_ascii_user_hash_is_refused_not_a_500(stack: Stack) -> None:
    async def set_identity_secret() -> None:
        storage = await open_storage(stack.settings.resolved_database_url)
        try:
            async with storage.engine.begin() as conn:
                await conn.execute(sa.update(tenants).where(tenants.c.id == stack.tenant_id)
                                   .values(identity_secret="id-secret"))
        finally:
            await storage.close()

    asyncio.run(set_identity_secret())
    r = stack.session(stack.persona(), user={"id": "u1", "hash": "é" * 64})
    assert_error(r, 401, "auth.identity_invalid")
    assert r.headers["access-control-allow-origin"] == stack.origin


def test_an_unknown_field_named_with_a_lone_surrogate_is_a_400_naming_it(stack: Stack) -> None:
    body = '{"kind": "secret", "\\ud800": 1}'  # valid JSON; the name cannot be encoded as UTF-8
    r = httpx.post(f"{stack.url}/v1/keys", content=body, headers={**stack.auth, "Content-Type": "application/json"})
    assert_error(r, 400)
    assert r.json()["error"]["message"] == "unknown field: \ud800"
