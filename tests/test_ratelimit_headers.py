"""`RateLimit-Policy` and `RateLimit` (draft-ietf-httpapi-ratelimit-headers) on the API's answers, from the memory
and the Redis limiter alike: every limit the request was counted against, counting down, and a 429 that names the
limit and says when it resets (`Retry-After`, `details`)."""

from __future__ import annotations

import asyncio
import re
import secrets
from collections.abc import Callable

import httpx
import pytest

from tests.conftest import REDIS, Stack
from tests.support.errors import assert_error
from widget_server.backends.ratelimit import MemoryRateLimiter, RedisRateLimiter

ITEM = re.compile(r'"([a-z_]+)";(\w)=(\d+);(\w)=(\d+)')


def parse(header: str) -> dict[str, tuple[int, int]]:
    """`"api";r=5;t=60, "openai";r=1;t=3` as {"api": (5, 60), "openai": (1, 3)}."""
    return {m[1]: (int(m[3]), int(m[5])) for m in ITEM.finditer(header)}


@pytest.fixture(params=["memory", "redis"])
def limited(request: pytest.FixtureRequest, stack_factory: Callable[..., Stack]) -> Stack:
    redis = {"redis_url": REDIS} if request.param == "redis" else {}
    return stack_factory(rate_limit_api=3, rate_limit_openai=2, rate_limit_window_s=60, **redis)


def get(stack: Stack, path: str) -> httpx.Response:
    return httpx.get(f"{stack.url}{path}", headers=stack.auth)


def test_every_answer_counts_down_the_tenants_limit_then_a_429_names_it(limited: Stack) -> None:
    answers = [get(limited, "/v1/personas") for _ in range(4)]
    assert [r.status_code for r in answers] == [200, 200, 200, 429]
    assert all(r.headers["ratelimit-policy"] == '"api";q=3;w=60' for r in answers)
    left = [parse(r.headers["ratelimit"])["api"] for r in answers]
    assert [r for r, _ in left] == [2, 1, 0, 0]
    assert all(0 < t <= 60 for _, t in left)
    err = assert_error(answers[3], 429, "rate_limited", "rate_limit")
    assert err["details"]["limit"] == "api" and err["details"]["quota"] == 3 and err["details"]["window_s"] == 60
    assert 0 < err["details"]["reset_s"] <= 60
    assert answers[3].headers["retry-after"] == str(err["details"]["reset_s"]) == str(left[3][1])
    assert "try again in" in err["message"]


def test_the_openai_path_reports_both_of_its_limits(limited: Stack) -> None:
    answers = [get(limited, "/v1/openai/models") for _ in range(3)]
    assert [r.status_code for r in answers] == [200, 200, 429]
    assert answers[0].headers["ratelimit-policy"] == '"api";q=3;w=60, "openai";q=2;w=60'
    assert [parse(r.headers["ratelimit"])["openai"][0] for r in answers] == [1, 0, 0]
    assert [parse(r.headers["ratelimit"])["api"][0] for r in answers] == [2, 1, 0]
    refused = answers[2].json()["error"]  # OpenAI's shape on this path, Retry-After kept
    assert refused["code"] == "rate_limit_exceeded" and int(answers[2].headers["retry-after"]) > 0


def test_a_widget_session_reports_the_limits_it_was_counted_against(stack_factory: Callable[..., Stack]) -> None:
    stack = stack_factory(rate_limit_sessions=2)
    persona = stack.persona()
    got = [stack.session(persona) for _ in range(3)]
    assert [r.status_code for r in got] == [201, 201, 429]
    assert parse(got[0].headers["ratelimit"]).keys() == {"session_address", "session_key"}
    assert parse(got[1].headers["ratelimit"])["session_address"][0] == 0
    assert assert_error(got[2], 429)["details"]["limit"] == "session_address"
    assert "ratelimit" not in httpx.get(f"{stack.url}/v1/personas").headers  # no key: counted against nothing


def test_a_replayed_answer_carries_the_current_state_not_the_stored_one(limited: Stack) -> None:
    key = {"Idempotency-Key": secrets.token_hex(6), **limited.auth}
    first = httpx.post(f"{limited.url}/v1/personas", json={"name": "Counted"}, headers=key)
    again = httpx.post(f"{limited.url}/v1/personas", json={"name": "Counted"}, headers=key)
    assert again.headers["idempotent-replayed"] == "true"
    assert parse(first.headers["ratelimit"])["api"][0] == 2 and parse(again.headers["ratelimit"])["api"][0] == 1


@pytest.mark.parametrize("backend", ["memory", "redis"])
def test_both_limiters_report_what_is_left_and_when_it_comes_back(backend: str, redis_prefix: str) -> None:
    now = [1000.0]
    limiter = (MemoryRateLimiter(2, 10, clock=lambda: now[0]) if backend == "memory"
               else RedisRateLimiter(REDIS, 2, 10, prefix=redis_prefix, clock=lambda: now[0]))

    async def run() -> list[tuple[bool, int, float]]:
        seen = []
        for step in (0, 4, 1, 6):  # hits at t=1000, 1004, 1005 (refused), 1011 (the first has left)
            now[0] += step
            v = await limiter.check("k", "rule")
            seen.append((v.allowed, v.remaining, v.reset_s))
        await limiter.aclose()
        return seen
    assert asyncio.run(run()) == [(True, 1, 10.0), (True, 0, 6.0), (False, 0, 5.0), (True, 0, 3.0)]
