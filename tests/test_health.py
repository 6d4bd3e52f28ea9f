"""`GET /health`: what an operator or a load balancer sees."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import pytest

from tests.conftest import Stack
from tests.support.errors import assert_error


@pytest.fixture
def db_stack(stack_factory: Callable[..., Stack], db_url: str) -> Stack:
    return stack_factory(database_url=db_url)


def test_health_reports_storage_and_provider(db_stack: Stack) -> None:
    r = httpx.get(f"{db_stack.url}/health")  # no key: load balancers call it
    assert r.status_code == 200, r.text
    assert r.headers["x-request-id"].startswith("req_")
    body = r.json()
    assert body["status"] == "ok" and body["version"]
    expected_dialect = "postgresql" if db_stack.settings.resolved_database_url.startswith("postgresql") else "sqlite"
    assert body["storage"] == {"status": "ok", "dialect": expected_dialect}
    assert body["provider"] == {"status": "ok", "kind": "openai"}  # what a monitor needs, and nothing to exploit
    assert body["events"] == {"status": "ok", "pending": 0}
    assert body["bus"] == {"status": "ok", "kind": "memory"}  # one node: conversations live in this process


def test_health_never_shows_the_provider_api_key(stack_factory: Callable[..., Stack]) -> None:
    stack = stack_factory(openai_api_key="sk-upstream-very-secret")
    r = httpx.get(f"{stack.url}/health")
    assert r.status_code == 200
    assert "very-secret" not in r.text


def test_health_shows_no_upstream_url_or_its_credentials(
    stack_factory: Callable[..., Stack], upstream: tuple[object, str]
) -> None:
    with_credentials = upstream[1].replace("http://", "http://operator:pa55word@")
    stack = stack_factory(openai_base_url=with_credentials)
    text = httpx.get(f"{stack.url}/health").text
    assert "pa55word" not in text and "operator" not in text and "127.0.0.1" not in text


def test_each_health_call_has_its_own_request_id(stack: Stack) -> None:
    first, second = httpx.get(f"{stack.url}/health"), httpx.get(f"{stack.url}/health")
    assert first.headers["x-request-id"] != second.headers["x-request-id"]


def test_health_reports_an_unreachable_provider(stack_factory) -> None:  # type: ignore[no-untyped-def]
    from tests.support.servers import free_port

    stack = stack_factory(openai_base_url=f"http://127.0.0.1:{free_port()}/v1")
    body = httpx.get(f"{stack.url}/health").json()
    assert body["status"] == "degraded" and body["storage"]["status"] == "ok"
    assert body["provider"]["status"] == "error" and body["provider"]["error"] == "APIConnectionError"


def test_metrics_without_a_token_answer_only_this_machine(settings_factory: Callable[..., Any]) -> None:
    from starlette.testclient import TestClient

    from widget_server.app import create_app

    # TestClient's requests come from the client address "testclient": another machine, as far as /metrics knows.
    with TestClient(create_app(settings_factory()), base_url="http://localhost") as remote:
        assert_error(remote.get("/metrics"), 403, "metrics.forbidden")  # type: ignore[arg-type]
    with TestClient(create_app(settings_factory(metrics_token="scrape")), base_url="http://localhost") as remote:
        assert remote.get("/metrics", headers={"Authorization": "Bearer scrape"}).status_code == 200


def test_metrics_without_a_token_answer_a_loopback_client(stack: Stack) -> None:
    assert httpx.get(f"{stack.url}/metrics").status_code == 200


def test_stopping_waits_for_a_sweep_to_leave_storage_before_closing_it(
    settings_factory: Callable[..., Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A sweep cancelled in the middle of a query hands its connection back before the engine goes: closing storage
    under it once left the event loop's teardown waiting forever on a connection thread that was gone."""
    import asyncio

    from starlette.testclient import TestClient

    import widget_server.app as app_module
    from widget_server.backends.storage.store import Storage

    order: list[str] = []
    in_query = asyncio.Event()

    async def sweep_in_a_query(storage: Any, days: Any, every_s: float) -> None:
        try:
            in_query.set()
            await asyncio.Event().wait()  # a query that has not answered yet
        except asyncio.CancelledError:
            await asyncio.sleep(0.3)  # handing the connection back takes a round trip to its thread
            await storage.ping()
            order.append("sweep left storage")
            raise

    close = Storage.close

    async def recorded_close(self: Storage) -> None:
        order.append("storage closed")
        await close(self)

    monkeypatch.setattr(app_module, "sweep_forever", sweep_in_a_query)
    monkeypatch.setattr(Storage, "close", recorded_close)
    with TestClient(app_module.create_app(settings_factory()), base_url="http://localhost") as client:
        assert client.get("/health").status_code == 200
        assert in_query.is_set()
    assert order == ["sweep left storage", "storage closed"]
