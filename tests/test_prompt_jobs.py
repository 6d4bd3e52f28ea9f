"""Async prompt jobs over the API: 202 then the result `POST …/prompt` gives, failures, cancels, tenants, callbacks
signed as webhooks are, and hostile bodies."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from jsonschema import Draft202012Validator

from tests.conftest import Stack
from tests.support.receiver import Receiver, readme_verify
from tests.support.upstream import Upstream

TERMINAL = {"succeeded", "failed", "cancelled"}


def submit(stack: Stack, persona: str, sk: str | None = None, **body: Any) -> httpx.Response:
    return httpx.post(f"{stack.url}/v1/personas/{persona}/prompt/jobs", json={"message": "hello there", **body},
                      headers={"Authorization": f"Bearer {sk or stack.sk}"})


def job(stack: Stack, job_id: str, sk: str | None = None) -> httpx.Response:
    return httpx.get(f"{stack.url}/v1/prompt/jobs/{job_id}", headers={"Authorization": f"Bearer {sk or stack.sk}"})


def cancel(stack: Stack, job_id: str, sk: str | None = None) -> httpx.Response:
    return httpx.post(f"{stack.url}/v1/prompt/jobs/{job_id}/cancel",
                      headers={"Authorization": f"Bearer {sk or stack.sk}"})


def wait_job(stack: Stack, job_id: str, done: Callable[[dict[str, Any]], bool] = lambda j: j["status"] in TERMINAL,
             timeout: float = 20) -> dict[str, Any]:
    """Poll the job until `done(job)`, failing at the deadline with the job as last seen."""
    deadline = time.monotonic() + timeout
    while True:
        r = job(stack, job_id)
        assert r.status_code == 200, r.text
        if done(r.json()):
            return r.json()  # type: ignore[no-any-return]
        assert time.monotonic() < deadline, f"the job never got there: {r.json()}"
        time.sleep(0.02)


def test_a_job_answers_202_then_succeeds_with_what_prompt_answers(stack_factory: Callable[..., Stack],
                                                                   db_url: str) -> None:
    stack = stack_factory(database_url=db_url)
    persona = stack.persona()
    r = submit(stack, persona, visitor_id="v-1")
    assert r.status_code == 202, r.text
    created = r.json()
    assert r.headers["location"] == f"/v1/prompt/jobs/{created['id']}"
    assert created["status"] in ("queued", "running") and created["result"] is None
    assert "callback_secret" not in created
    done = wait_job(stack, created["id"])
    assert done["status"] == "succeeded" and done["attempts"] == 1 and done["error"] is None
    sync = httpx.post(f"{stack.url}/v1/personas/{persona}/prompt", json={"message": "hello there"},
                      headers=stack.auth).json()
    result = done["result"]
    assert set(result) == set(sync)
    assert result["text"] == sync["text"] == "hello there"
    assert result["finish_reason"] == "stop" and result["conversation_id"] == done["conversation_id"]
    conv = httpx.get(f"{stack.url}/v1/conversations/{done['conversation_id']}", headers=stack.auth).json()
    assert conv["channel"] == "api" and conv["visitor_id"] == "v-1"
    assert [m["text"] for m in conv["messages"]] == ["hello there", "hello there"]


def test_a_job_goes_on_in_the_conversation_it_names(stack: Stack) -> None:
    persona = stack.persona()
    first = httpx.post(f"{stack.url}/v1/personas/{persona}/prompt", json={"message": "one"}, headers=stack.auth)
    conv_id = first.json()["conversation_id"]
    r = submit(stack, persona, conversation_id=conv_id)
    assert r.status_code == 202 and r.json()["conversation_id"] == conv_id
    assert wait_job(stack, r.json()["id"])["result"]["conversation_id"] == conv_id
    assert submit(stack, persona, conversation_id="conv_nope").status_code == 404


def test_an_upstream_failure_fails_the_job_with_the_error_prompt_gives(stack: Stack) -> None:
    persona = stack.persona("fail-job")
    sync = httpx.post(f"{stack.url}/v1/personas/{persona}/prompt", json={"message": "hi"}, headers=stack.auth)
    created = submit(stack, persona).json()
    done = wait_job(stack, created["id"])
    assert done["status"] == "failed" and done["result"] is None
    error = done["error"]["error"]
    assert error["code"] == sync.json()["error"]["code"] == "provider.error"
    assert error["type"] == "provider" and error["request_id"].startswith("req_")
    assert error["details"]["conversation_id"] == done["conversation_id"]


def test_a_queued_job_is_cancelled_at_once_and_a_finished_one_is_a_409(stack_factory: Callable[..., Stack]) -> None:
    stack = stack_factory(prompt_jobs_concurrency=0)  # this node runs no job: it stays queued
    created = submit(stack, stack.persona()).json()
    assert job(stack, created["id"]).json()["status"] == "queued"
    r = cancel(stack, created["id"])
    assert r.status_code == 200 and r.json()["status"] == "cancelled" and r.json()["finished_at"]
    again = cancel(stack, created["id"])
    assert again.status_code == 409 and again.json()["error"]["code"] == "prompt_job.ended"
    assert again.json()["error"]["details"] == {"status": "cancelled"}


def test_a_running_job_is_cancelled_as_a_reply_is(stack_factory: Callable[..., Stack],
                                                   upstream: tuple[Upstream, str]) -> None:
    stack = stack_factory(provider_stall_s=60)
    fake, _ = upstream
    before, closed = fake.hits.get("stall", 0), fake.closed_early
    created = submit(stack, stack.persona("stall")).json()
    deadline = time.monotonic() + 10
    while fake.hits.get("stall", 0) == before:  # the reply streams: the model was called
        assert time.monotonic() < deadline
        time.sleep(0.02)
    r = cancel(stack, created["id"])
    assert r.status_code == 200, r.text
    done = r.json()
    assert done["status"] == "cancelled" and done["result"]["finish_reason"] == "cancelled"
    assert done["result"]["text"].startswith("one")  # what had streamed is kept
    conv = httpx.get(f"{stack.url}/v1/conversations/{done['conversation_id']}", headers=stack.auth).json()
    assert conv["messages"][-1]["finish_reason"] == "cancelled"
    deadline = time.monotonic() + 10
    while fake.closed_early == closed:  # the upstream stream was closed: no more tokens paid for
        assert time.monotonic() < deadline
        time.sleep(0.02)
    assert cancel(stack, created["id"]).status_code == 409


def test_another_tenants_job_is_not_found(stack_factory: Callable[..., Stack]) -> None:
    stack = stack_factory(prompt_jobs_concurrency=0)
    created = submit(stack, stack.persona()).json()
    other = stack.tenant()["sk"]
    for r in (job(stack, created["id"], other), cancel(stack, created["id"], other)):
        assert r.status_code == 404 and r.json()["error"]["code"] == "prompt_job.not_found"
    listed = httpx.get(f"{stack.url}/v1/prompt/jobs", headers={"Authorization": f"Bearer {other}"}).json()
    assert listed == {"data": [], "next_cursor": None}
    assert submit(stack, stack.persona(), other).status_code == 404  # nor may it use this tenant's persona
    assert job(stack, created["id"]).json()["status"] == "queued"  # untouched by the other tenant's cancel


def test_jobs_are_listed_newest_first_in_pages(stack_factory: Callable[..., Stack]) -> None:
    stack = stack_factory(prompt_jobs_concurrency=0)
    persona = stack.persona()
    ids = [submit(stack, persona).json()["id"] for _ in range(5)]
    seen: list[str] = []
    cursor = None
    while True:
        params = {"limit": 2, **({"cursor": cursor} if cursor else {})}
        page = httpx.get(f"{stack.url}/v1/prompt/jobs", params=params, headers=stack.auth).json()
        seen += [j["id"] for j in page["data"]]
        if (cursor := page["next_cursor"]) is None:
            break
    assert seen == ids[::-1]
    r = httpx.get(f"{stack.url}/v1/prompt/jobs", params={"cursor": "nope"}, headers=stack.auth)
    assert r.status_code == 400 and r.json()["error"]["code"] == "query.invalid"


def _signed(secret: str, header: str, body: bytes) -> bool:
    return readme_verify()(secret, header, body)


def test_the_callback_gets_the_job_signed_as_webhooks_are(stack_factory: Callable[..., Stack],
                                                          receiver: Receiver) -> None:
    stack = stack_factory(webhook_allow_private=True, webhook_backoff_s=0.05)
    name, url = receiver.new(500)  # the first try fails: the second is made
    created = submit(stack, stack.persona(), callback_url=url).json()
    secret = created["callback_secret"]
    assert secret.startswith("whsec_") and created["callback"] == {"url": url, "state": None, "attempts": 0}
    got = receiver.wait(name, lambda g: len(g) >= 2)
    last = got[-1]
    assert _signed(secret, last.headers["widget-signature"], last.body)
    assert not _signed(secret, last.headers["widget-signature"], last.body + b" ")
    assert last.headers["widget-event-id"] == created["id"] and last.headers["widget-delivery-attempt"] == "2"
    envelope = last.json
    assert envelope["type"] == "prompt_job.succeeded" and envelope["data"]["result"]["text"] == "hello there"
    done = wait_job(stack, created["id"], lambda j: j["callback"]["state"] == "delivered")
    assert done["callback"]["attempts"] == 2 and "callback_secret" not in done
    assert envelope["data"]["result"] == done["result"]


def test_a_cancelled_queued_job_still_calls_back(stack_factory: Callable[..., Stack], receiver: Receiver) -> None:
    stack = stack_factory(webhook_allow_private=True, prompt_jobs_concurrency=0)
    name, url = receiver.new()
    created = submit(stack, stack.persona(), callback_url=url).json()
    assert cancel(stack, created["id"]).json()["status"] == "cancelled"
    # (concurrency 0 runs no job, but a callback is no job: it is sent)
    got = receiver.wait(name, lambda g: len(g) >= 1)
    assert got[0].json["type"] == "prompt_job.cancelled"
    assert _signed(created["callback_secret"], got[0].headers["widget-signature"], got[0].body)


@pytest.mark.parametrize(("url", "status"), [
    ("ftp://example.com/x", 400), ("not a url", 400), (42, 400), ("https://example.com/#frag", 400),
    ("http://127.0.0.1:9/hook", 422), ("http://10.0.0.1/hook", 422),
])
def test_a_callback_url_is_checked_as_a_webhooks_is(stack: Stack, url: Any, status: int) -> None:
    r = submit(stack, stack.persona(), callback_url=url)
    assert r.status_code == status, r.text
    assert r.json()["error"]["details"]["errors"][0]["field"] == "callback_url"
    listed = httpx.get(f"{stack.url}/v1/prompt/jobs", headers=stack.auth).json()
    assert listed["data"] == []  # nothing half-written


@pytest.mark.parametrize("body", [
    {}, {"message": ""}, {"message": "   "}, {"message": 5}, {"message": "hi", "extra": 1},
    {"message": "x" * 5000}, {"message": "hi", "visitor_id": "\x00"}, {"message": "hi\u202e"},
])
def test_bad_bodies_are_400s(stack: Stack, body: dict[str, Any]) -> None:
    r = httpx.post(f"{stack.url}/v1/personas/{stack.persona()}/prompt/jobs", json=body, headers=stack.auth)
    assert r.status_code == 400, r.text
    assert r.json()["error"]["type"] == "invalid_request"


JSON = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
                    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner,
                                                                                 max_size=3), max_leaves=8)
BODIES = st.one_of(JSON, st.fixed_dictionaries({"message": JSON}, optional={
    "conversation_id": JSON, "visitor_id": JSON, "callback_url": JSON}))


def test_hostile_bodies_get_a_clear_error_never_a_5xx(stack_factory: Callable[..., Stack]) -> None:
    stack = stack_factory(prompt_jobs_concurrency=0)
    persona = stack.persona()

    @settings(max_examples=60, suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(body=BODIES)
    def check(body: Any) -> None:
        r = httpx.post(f"{stack.url}/v1/personas/{persona}/prompt/jobs", content=json.dumps(body),
                       headers={**stack.auth, "Content-Type": "application/json"})
        assert r.status_code in (202, 400, 404, 422), r.text
        if r.status_code != 202:
            assert set(r.json()["error"]) == {"code", "message", "type", "request_id", "details"}

    check()


def test_jobs_and_sessions_as_answered_match_the_documented_schemas(stack: Stack, receiver: Receiver) -> None:
    spec = httpx.get(f"{stack.url}/openapi.json").json()

    def check(value: Any, name: str) -> None:
        Draft202012Validator({"$ref": f"#/components/schemas/{name}", "components": spec["components"]}).validate(value)

    ok, failing = stack.persona(), stack.persona("fail-doc")
    created = submit(stack, ok)
    check(created.json(), "PromptJobCreated")
    check(wait_job(stack, created.json()["id"]), "PromptJob")
    check(wait_job(stack, submit(stack, failing).json()["id"]), "PromptJob")
    check(httpx.get(f"{stack.url}/v1/prompt/jobs", headers=stack.auth).json(), "PromptJobPage")
    check(httpx.get(f"{stack.url}/v1/prompt/sessions", headers=stack.auth).json(), "PromptSessionPage")
