"""`GET /v1/persona` over real sockets: PersonaGen's envelope and error codes, a drawn seed that regenerates the
same persona, version pins, demo mode's hourly limit per client address (X-Forwarded-For only from a trusted
proxy; shared by two nodes through Redis), and a key's monthly quota counted atomically in SQLite and PostgreSQL."""

from __future__ import annotations

import contextlib
import secrets
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest

from tests.conftest import REDIS, Stack
from tests.support.servers import serve_in_thread
from widget_server.app import create_app
from widget_server.domain.people import generate
from widget_server.settings import Settings

DEMO = {"X-Demo": "true"}


def persona(stack: Stack, headers: dict[str, str] | None = None, **params: str) -> httpx.Response:
    sent = {"X-API-Key": stack.sk} if headers is None else headers
    return httpx.get(f"{stack.url}/v1/persona", params=params, headers=sent, timeout=10)


def assert_personagen_error(r: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert r.status_code == status, r.text
    body = r.json()
    assert body["success"] is False and body["error"]["code"] == code, body
    assert isinstance(body["error"]["message"], str) and body["error"]["message"]
    return body  # type: ignore[no-any-return]


def test_the_envelope_and_a_seed_regenerates_the_persona(stack: Stack) -> None:
    r = persona(stack, seed="test-123")
    assert r.status_code == 200, r.text
    body = r.json()
    assert set(body) == {"success", "data", "metadata"} and body["success"] is True
    assert body["data"] == generate("test-123")
    meta = body["metadata"]
    assert set(meta) == {"id", "version", "generator_version", "generated_at", "seed", "usage"}
    assert meta["seed"] == "test-123" and meta["version"] == "1.0" and meta["generator_version"] == "2026.2"
    assert meta["id"].startswith("persona_") and meta["generated_at"].endswith("Z")
    assert set(meta["usage"]) == {"requests_remaining", "reset_date"}
    again = persona(stack, headers={"Authorization": f"Bearer {stack.sk}"}, seed="test-123").json()
    assert again["data"] == body["data"] and again["metadata"]["id"] == meta["id"]  # a bearer works too


def test_without_a_seed_one_is_drawn_and_returned(stack: Stack) -> None:
    first = persona(stack).json()
    seed = first["metadata"]["seed"]
    assert seed and persona(stack).json()["metadata"]["seed"] != seed
    assert persona(stack, seed=seed).json()["data"] == first["data"]


def test_a_version_pin_and_an_unknown_version(stack: Stack) -> None:
    old = persona(stack, seed="pin", version="2025.1").json()
    assert old["metadata"]["generator_version"] == "2025.1" and old["data"] == generate("pin", "2025.1")
    assert old["data"] != persona(stack, seed="pin").json()["data"]
    body = assert_personagen_error(persona(stack, seed="pin", version="9.9"), 400, "INVALID_REQUEST")
    assert body["error"]["param"] == "version"
    assert_personagen_error(persona(stack, seed="x" * 201), 400, "INVALID_REQUEST")
    assert_personagen_error(persona(stack, colour="red"), 400, "INVALID_REQUEST")
    bad_demo = assert_personagen_error(persona(stack, headers={"X-API-Key": stack.sk, "X-Demo": "{}"}), 400,
                                       "INVALID_REQUEST")
    assert bad_demo["error"]["param"] == "X-Demo"
    assert persona(stack, headers={"X-API-Key": stack.sk, "X-Demo": "false"}).status_code == 200


def test_bad_keys_have_personagens_codes(stack: Stack) -> None:
    assert_personagen_error(persona(stack, headers={}), 401, "INVALID_API_KEY")  # no key, no demo
    assert_personagen_error(persona(stack, headers={"X-API-Key": "hello"}), 401, "INVALID_API_KEY")
    assert_personagen_error(persona(stack, headers={"X-API-Key": stack.pk}), 401, "INVALID_API_KEY")
    unknown = "sk_" + secrets.token_urlsafe(24)
    assert_personagen_error(persona(stack, headers={"X-API-Key": unknown}), 401, "API_KEY_NOT_FOUND")
    r = httpx.post(f"{stack.url}/v1/persona", headers={"X-API-Key": stack.sk})
    assert_personagen_error(r, 405, "INVALID_REQUEST")
    assert r.headers["allow"] == "GET, HEAD"
    assert httpx.get(f"{stack.url}/v1/personas", headers={}).json()["error"]["code"] == "auth.invalid_key"  # house


def test_demo_mode_the_eleventh_request_in_an_hour_is_refused(stack: Stack) -> None:
    for left in range(9, -1, -1):
        r = persona(stack, headers=DEMO)
        assert r.status_code == 200, r.text
        assert r.json()["metadata"]["usage"]["requests_remaining"] == left
        assert r.headers["ratelimit-policy"] == '"persona_demo";q=10;w=3600'
        assert r.headers["ratelimit"].startswith(f'"persona_demo";r={left};t=')
    r = persona(stack, headers=DEMO)
    assert_personagen_error(r, 429, "RATE_LIMIT_EXCEEDED")
    assert r.headers["ratelimit"].startswith('"persona_demo";r=0;t=')
    assert 3500 < int(r.headers["retry-after"]) <= 3600
    assert persona(stack, seed="still").status_code == 200  # a key is not in demo mode


@contextlib.contextmanager
def node(settings: Settings) -> Any:
    with serve_in_thread(create_app(settings), proxy_headers=False) as url:  # the app reads X-Forwarded-For itself
        yield url


def demo_from(url: str, address: str) -> int:
    return httpx.get(f"{url}/v1/persona", headers={**DEMO, "X-Forwarded-For": f"6.6.6.6, {address}"}).status_code


def test_x_forwarded_for_counts_only_from_a_trusted_proxy(settings_factory: Callable[..., Settings]) -> None:
    with node(settings_factory(trusted_proxies="")) as url:  # nobody's header is believed
        codes = [demo_from(url, f"10.0.0.{i}") for i in range(11)]
        assert codes == [200] * 10 + [429]  # every request is the peer's, whatever the header says
    with node(settings_factory(trusted_proxies="127.0.0.0/8")) as url:
        assert [demo_from(url, f"10.0.1.{i}") for i in range(11)] == [200] * 11  # eleven clients
        assert [demo_from(url, "10.0.2.1") for _ in range(11)] == [200] * 10 + [429]
        assert demo_from(url, "10.0.2.2") == 200  # the next client has its own budget


def test_two_nodes_share_the_demo_limit_through_redis(settings_factory: Callable[..., Settings]) -> None:
    address = f"10.{secrets.randbelow(250)}.{secrets.randbelow(250)}.{secrets.randbelow(250)}"  # fresh in Redis
    made = [settings_factory(trusted_proxies="127.0.0.1", redis_url=REDIS) for _ in range(2)]
    with node(made[0]) as a, node(made[1]) as b:
        codes = [demo_from(url, address) for url in (a, b) * 5]
        assert codes == [200] * 10
        assert demo_from(a, address) == 429 and demo_from(b, address) == 429


def key_with_quota(stack: Stack, quota: int) -> str:
    r = httpx.post(f"{stack.url}/v1/keys", json={"kind": "secret", "persona_quota": quota}, headers=stack.auth)
    assert r.status_code == 201, r.text
    assert r.json()["persona_quota"] == quota
    return str(r.json()["key"])


def test_a_key_over_its_quota(stack_factory: Callable[..., Stack], db_url: str) -> None:
    stack = stack_factory(database_url=db_url)
    key = key_with_quota(stack, 3)
    seen = []
    for _ in range(3):
        r = persona(stack, headers={"X-API-Key": key})
        assert r.status_code == 200, r.text
        seen.append((r.json()["metadata"]["usage"]["requests_remaining"], r.headers["ratelimit"].split(";")[1]))
        assert r.headers["ratelimit-policy"].startswith('"persona_quota";q=3;w=')  # w: this month's length in s
    assert seen == [(2, "r=2"), (1, "r=1"), (0, "r=0")]
    r = persona(stack, headers={"X-API-Key": key})
    body = assert_personagen_error(r, 429, "API_KEY_LIMIT_EXCEEDED")
    assert r.headers["ratelimit"].startswith('"persona_quota";r=0;t=') and int(r.headers["retry-after"]) > 86400
    assert body["error"]["usage"]["requests_remaining"] == 0
    assert persona(stack).json()["metadata"]["usage"]["requests_remaining"] == 999  # the default quota, own count


def test_the_quota_holds_under_concurrent_requests(stack_factory: Callable[..., Stack], db_url: str) -> None:
    stack = stack_factory(database_url=db_url)
    key = key_with_quota(stack, 5)
    with ThreadPoolExecutor(8) as pool:
        codes = list(pool.map(lambda _: persona(stack, headers={"X-API-Key": key}).status_code, range(20)))
    assert sorted(codes) == [200] * 5 + [429] * 15


def test_a_bad_quota_is_refused(stack: Stack) -> None:
    made = httpx.post(f"{stack.url}/v1/keys", json={"kind": "secret", "persona_quota": 7.0}, headers=stack.auth)
    assert made.status_code == 201 and made.json()["persona_quota"] == 7  # JSON's 7.0 is 7
    for bad in (-1, 1.5, "10", True, 10**10):
        r = httpx.post(f"{stack.url}/v1/keys", json={"kind": "secret", "persona_quota": bad}, headers=stack.auth)
        assert r.status_code == 400 and r.json()["error"]["details"]["field"] == "persona_quota", (bad, r.text)


@pytest.mark.parametrize("seed", ["", " ", "é", "\U0001f600" * 50, "a&b=c", "%00"])
def test_odd_seeds(stack: Stack, seed: str) -> None:
    r = persona(stack, seed=seed)
    if seed == "%00":
        assert r.status_code == 200 and r.json()["metadata"]["seed"] == "%00"
    else:
        assert r.status_code == 200, r.text
        assert r.json()["metadata"]["seed"] == (seed or r.json()["metadata"]["seed"])
