"""Prompt jobs are stored: a restart, a graceful stop mid-reply or a `kill -9` loses none, a job out of attempts
fails with a reason, and two nodes on one PostgreSQL database run each job once."""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import signal
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from tests.conftest import ORIGIN, REDIS, Stack, _tenant, fresh_pg_database
from tests.support.receiver import Receiver, readme_verify
from tests.support.servers import serve_in_thread, serve_process
from tests.support.upstream import Upstream
from tests.test_prompt_jobs import cancel, submit, wait_job
from widget_server.app import create_app
from widget_server.backends.storage import open_storage
from widget_server.clock import now
from widget_server.settings import Settings


@contextlib.contextmanager
def serving(settings: Settings, keys: dict[str, str]) -> Iterator[Stack]:
    """One server on the settings' database, as the tenant of `keys`, stopped (its lifespan ended) on exit."""
    with serve_in_thread(create_app(settings)) as url, contextlib.ExitStack() as exits:
        yield Stack(url, settings, keys["tenant_id"], keys["sk"], keys["pk"], exits)


def stored(db_url: str, tenant_id: str, job_id: str) -> dict[str, Any]:
    async def read() -> dict[str, Any]:
        storage = await open_storage(db_url)
        try:
            row = await storage.prompt_jobs.get(tenant_id, job_id)
        finally:
            await storage.close()
        assert row is not None
        return row
    return asyncio.run(read())


def called(fake: Upstream, model: str, before: int, timeout: float = 10) -> None:
    """Until the upstream was asked once more for `model`: the job's reply streams."""
    deadline = time.monotonic() + timeout
    while fake.hits.get(model, 0) <= before:
        assert time.monotonic() < deadline, "the model was never called"
        time.sleep(0.02)


def test_a_queued_job_runs_after_a_restart(settings_factory: Callable[..., Settings], db_url: str) -> None:
    keys = asyncio.run(_tenant(db_url, [ORIGIN]))
    with serving(settings_factory(database_url=db_url, prompt_jobs_concurrency=0), keys) as stack:
        created = submit(stack, stack.persona()).json()
    assert stored(db_url, keys["tenant_id"], created["id"])["status"] == "queued"  # the server has stopped
    with serving(settings_factory(database_url=db_url), keys) as stack:
        done = wait_job(stack, created["id"])
        assert done["status"] == "succeeded" and done["attempts"] == 1
        assert done["result"]["text"] == "hello there" and done["persona_id"] == created["persona_id"]


def test_a_job_running_when_the_server_stops_is_queued_again_and_runs_on_the_next(
    settings_factory: Callable[..., Settings], db_url: str, upstream: tuple[Upstream, str]
) -> None:
    keys = asyncio.run(_tenant(db_url, [ORIGIN]))
    fake, model = upstream[0], "pace-100-30"  # three seconds of reply
    with serving(settings_factory(database_url=db_url), keys) as stack:
        before = fake.hits.get(model, 0)
        created = submit(stack, stack.persona(model)).json()
        called(fake, model, before)
    row = stored(db_url, keys["tenant_id"], created["id"])
    assert (row["status"], row["attempts"], row["claimed_by"]) == ("queued", 0, None)  # this attempt not counted
    with serving(settings_factory(database_url=db_url, prompt_jobs_poll_s=0.05), keys) as stack:
        done = wait_job(stack, created["id"], timeout=30)
        assert done["status"] == "succeeded" and done["attempts"] == 1
        assert done["result"]["text"].split() == [f"w{i}" for i in range(1, 31)]
        conv = httpx.get(f"{stack.url}/v1/conversations/{done['conversation_id']}", headers=stack.auth).json()
        finishes = [m["finish_reason"] for m in conv["messages"] if m["role"] == "persona"]
        assert finishes == ["interrupted", "stop"]  # one conversation: the cut reply is kept, the retry follows


def test_a_kill_9_mid_job_is_retried_by_another_process(settings_factory: Callable[..., Settings], db_url: str,
                                                         upstream: tuple[Upstream, str], tmp_path: Any) -> None:
    keys = asyncio.run(_tenant(db_url, [ORIGIN]))
    fake, model = upstream[0], "pace-100-20"
    env = {"WIDGET_DATA_DIR": str(tmp_path / "killed"), "WIDGET_DATABASE_URL": db_url, "WIDGET_PROVIDER": "openai",
           "WIDGET_OPENAI_BASE_URL": upstream[1], "WIDGET_SECRET_KEY": "test-secret",
           "WIDGET_PROMPT_JOBS_LEASE_S": "1", "WIDGET_PROMPT_JOBS_POLL_S": "0.1"}
    proc, url = serve_process(env)
    try:
        stack = Stack(url, settings_factory(), keys["tenant_id"], keys["sk"], keys["pk"], contextlib.ExitStack())
        before = fake.hits.get(model, 0)
        created = submit(stack, stack.persona(model)).json()
        called(fake, model, before)
        proc.kill()
        assert proc.wait(timeout=10) == -signal.SIGKILL
    finally:
        if proc.poll() is None:
            proc.kill()
    row = stored(db_url, keys["tenant_id"], created["id"])
    assert (row["status"], row["attempts"]) == ("running", 1)  # as the dead node left it
    settings = settings_factory(database_url=db_url, prompt_jobs_lease_s=1, prompt_jobs_poll_s=0.05)
    with serving(settings, keys) as stack:
        done = wait_job(stack, created["id"], timeout=30)
    assert done["status"] == "succeeded" and done["attempts"] == 2, done
    assert done["result"]["finish_reason"] == "stop"


def test_a_job_whose_node_died_on_its_last_attempt_fails_with_a_reason_and_calls_back(
    settings_factory: Callable[..., Settings], db_url: str, receiver: Receiver
) -> None:
    keys = asyncio.run(_tenant(db_url, [ORIGIN]))
    name, url = receiver.new()
    front = settings_factory(database_url=db_url, prompt_jobs_concurrency=0, webhook_allow_private=True)
    with serving(front, keys) as stack:
        created = submit(stack, stack.persona(), callback_url=url).json()

    async def died_twice() -> None:
        storage = await open_storage(db_url)
        try:
            assert await storage.prompt_jobs.update(created["id"], {
                "status": "running", "attempts": 2, "claimed_by": "node_dead", "lease_until": now()})
        finally:
            await storage.close()
    asyncio.run(died_twice())
    node = settings_factory(database_url=db_url, prompt_jobs_poll_s=0.05, webhook_allow_private=True)
    with serving(node, keys) as stack:
        done = wait_job(stack, created["id"], lambda j: j["callback"]["state"] == "delivered")
    assert done["status"] == "failed" and done["attempts"] == 2 and done["result"] is None
    assert done["error"]["error"]["code"] == "job.interrupted"
    assert done["error"]["error"]["request_id"].startswith("req_")  # the request that made the job
    [got] = receiver.of(name)
    assert got.json["type"] == "prompt_job.failed" and got.json["data"]["error"] == done["error"]
    assert readme_verify()(created["callback_secret"], got.headers["widget-signature"], got.body)


def test_a_job_running_on_another_node_is_cancelled_at_its_next_renewal(
    settings_factory: Callable[..., Settings], db_url: str, upstream: tuple[Upstream, str]
) -> None:
    keys = asyncio.run(_tenant(db_url, [ORIGIN]))
    fake = upstream[0]
    runner = settings_factory(database_url=db_url, prompt_jobs_lease_s=0.6, prompt_jobs_poll_s=0.05,
                              provider_stall_s=60)
    with serving(settings_factory(database_url=db_url, prompt_jobs_concurrency=0), keys) as front, \
            serving(runner, keys):
        before = fake.hits.get("stall", 0)
        created = submit(front, front.persona("stall")).json()
        called(fake, "stall", before)
        r = cancel(front, created["id"])
        assert r.status_code == 202 and r.json()["status"] == "running" and r.json()["cancel_requested"], r.text
        done = wait_job(front, created["id"])
    assert done["status"] == "cancelled" and done["result"]["finish_reason"] == "cancelled"


@pytest.fixture
def pg_alone() -> Iterator[str]:
    with fresh_pg_database() as url:  # no other test's jobs: every job there is this test's
        yield url


def test_two_nodes_on_one_postgresql_database_run_each_job_once(
    settings_factory: Callable[..., Settings], pg_alone: str, upstream: tuple[Upstream, str]
) -> None:
    keys = asyncio.run(_tenant(pg_alone, [ORIGIN]))
    fake, token = upstream[0], secrets.token_hex(4)
    node = settings_factory(database_url=pg_alone, prompt_jobs_poll_s=0.02, prompt_jobs_concurrency=3)
    with serving(settings_factory(database_url=pg_alone, prompt_jobs_concurrency=0), keys) as front, \
            serving(node, keys) as one, serving(node, keys) as two:
        # jobs are queued on a node that runs none: the two others find them only by polling, at once
        persona = front.persona()
        ids = [submit(front, persona, message=f"job {i} {token}").json()["id"] for i in range(24)]
        done = [wait_job(one if i % 2 else two, job_id, timeout=60) for i, job_id in enumerate(ids)]
    assert {d["status"] for d in done} == {"succeeded"} and {d["attempts"] for d in done} == {1}
    asked = [r["messages"][-1]["content"] for r in fake.requests if token in str(r["messages"][-1]["content"])]
    assert sorted(asked) == sorted(f"job {i} {token}" for i in range(24))  # each once, none twice
    assert [d["result"]["text"] for d in done] == [f"job {i} {token}" for i in range(24)]


def test_with_redis_a_job_on_another_node_is_cancelled_at_once(
    settings_factory: Callable[..., Settings], db_url: str, upstream: tuple[Upstream, str]
) -> None:
    """Two nodes on one Redis bus: a cancel made on the front node reaches the one running the job over the bus,
    long before its next renewal (every 20 s here, past `wait_job`'s 10 s)."""
    keys = asyncio.run(_tenant(db_url, [ORIGIN]))
    fake = upstream[0]
    shared = {"database_url": db_url, "redis_url": REDIS, "prompt_jobs_lease_s": 60, "provider_stall_s": 60}
    runner = settings_factory(**shared, prompt_jobs_poll_s=0.05)
    with serving(settings_factory(**shared, prompt_jobs_concurrency=0), keys) as front, serving(runner, keys):
        before = fake.hits.get("stall", 0)
        created = submit(front, front.persona("stall")).json()
        called(fake, "stall", before)
        r = cancel(front, created["id"])
        assert r.status_code == 202 and r.json()["cancel_requested"], r.text
        done = wait_job(front, created["id"], timeout=10)
    assert done["status"] == "cancelled" and done["result"]["finish_reason"] == "cancelled"
