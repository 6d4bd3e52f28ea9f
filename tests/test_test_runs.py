"""`/v1/test-runs`: a suite run on the server, in the background, with the secret key; followed over SSE, its
results stored per tenant; and the console's Tests page running a persona's saved cases or a pasted suite, with
each case's transcript and what changed since the previous run. On SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
import yaml

from tests.conftest import Stack
from tests.support.console import Console, token_for
from tests.support.sse import Events
from widget_server.backends.storage import open_storage
from widget_server.backends.storage.tables import test_runs
from widget_server.clock import now

POLICY = {"version": 1, "blocked_terms": [{"id": "rival", "terms": ["rivalcycles"], "action": "refuse"}]}


def suite(persona: str) -> dict[str, Any]:
    return {"suite": "shop before launch", "persona": persona, "policy": "tenant", "cases": [
        {"name": "helmets are on topic", "turns": [
            {"visitor": "Do you sell helmets?", "expect": {"refused": False, "contains": ["helmets"]}}]},
        {"name": "the rival's name is refused", "turns": [
            {"visitor": "Is RivalCycles cheaper?",
             "expect": {"refused": True, "guardrail": {"reason": "term.rival", "source": "input"}}}]},
        {"name": "a wrong expectation", "turns": [
            {"visitor": "Hello there", "expect": {"contains": ["goodbye"]}}]},
    ]}


@pytest.fixture
def shop(stack_factory: Callable[..., Stack], db_url: str) -> Iterator[tuple[Stack, str]]:
    stack = stack_factory(database_url=db_url)
    assert httpx.put(f"{stack.url}/v1/safety-policy", json=POLICY, headers=stack.auth).status_code == 200
    yield stack, stack.persona("echo")


def _post(stack: Stack, body: Any, sk: str | None = None) -> httpx.Response:
    return httpx.post(f"{stack.url}/v1/test-runs", json=body, headers={"Authorization": f"Bearer {sk or stack.sk}"},
                      timeout=30)


def _followed(stack: Stack, run_id: str) -> list[tuple[str, dict[str, Any]]]:
    """Every event of the run's stream, to its end."""
    events = Events(httpx.Client(base_url=stack.url), f"/v1/test-runs/{run_id}/events",
                    headers={"Authorization": f"Bearer {stack.sk}"})
    try:
        events.wait(lambda n, d: n == "done", timeout=60)
        return list(events.got)
    finally:
        events.close()


def test_a_suite_runs_in_the_background_and_its_results_are_stored(shop: tuple[Stack, str]) -> None:
    stack, persona = shop
    r = _post(stack, {"suite": suite(persona)})
    assert r.status_code == 202, r.text
    run = r.json()
    assert r.headers["location"] == f"/v1/test-runs/{run['id']}" and run["status"] in ("queued", "running")
    got = _followed(stack, run["id"])
    names = [n for n, _ in got]
    assert names[0] == "run" and names[-1] == "done" and names.count("progress") >= 3
    done = got[-1][1]
    assert done["status"] == "failed" and done["summary"]["cases"] == 3
    assert done["summary"]["passed"] == 2 and done["summary"]["failed"] == 1

    stored = httpx.get(f"{stack.url}/v1/test-runs/{run['id']}", headers=stack.auth).json()
    assert stored["status"] == "failed" and stored["finished_at"] and stored["summary"] == done["summary"]
    cases = {c["name"]: c for c in stored["result"]["cases"]}
    assert cases["helmets are on topic"]["status"] == "passed"
    refused = cases["the rival's name is refused"]
    assert refused["status"] == "passed"
    assert any(d["reason"] == "term.rival" for d in refused["turns"][0]["decisions"])
    (failure,) = cases["a wrong expectation"]["failures"]
    assert failure["assertion"] == "contains" and "goodbye" in str(failure["expected"])

    # A run that has ended streams what it was, and ends.
    again = _followed(stack, run["id"])
    assert [n for n, _ in again] == ["run", "done"] and again[-1][1]["status"] == "failed"
    listed = httpx.get(f"{stack.url}/v1/test-runs", headers=stack.auth).json()
    assert [x["id"] for x in listed["data"]] == [run["id"]] and "result" not in listed["data"][0]


def test_what_cannot_run_is_a_clear_400_and_another_tenant_sees_nothing(shop: tuple[Stack, str]) -> None:
    stack, persona = shop
    bad = _post(stack, {"suite": {**suite(persona), "cases": [{"name": "a", "turns": [{"visitr": "hi"}]}]}})
    assert bad.status_code == 400 and bad.json()["error"]["code"] == "request.invalid_suite", bad.text
    assert bad.json()["error"]["details"]["errors"][0]["field"] == "cases.0.turns.0.visitr"
    for body in ({}, {"suite": suite(persona), "persona": persona}, {"suite": suite(persona), "repeat": 0},
                 {"suite": yaml.safe_dump(suite(persona))},  # (YAML files are the command line's)
                 {"suite": suite(persona), "repeat": True}, {"suite": suite(persona), "what": 1}, [], "x"):
        r = _post(stack, body)
        assert r.status_code == 400 and r.json()["error"]["code"].startswith("request."), (body, r.text)
    assert _post(stack, {"persona": "nobody-here"}).status_code == 404
    assert httpx.get(f"{stack.url}/v1/test-runs", headers=stack.auth).json()["data"] == []  # nothing half made

    run = _post(stack, {"suite": suite(persona), "only": "helmets are on topic"}).json()
    _followed(stack, run["id"])
    other = stack.tenant()
    for path in (f"/v1/test-runs/{run['id']}", f"/v1/test-runs/{run['id']}/events"):
        r = httpx.get(stack.url + path, headers={"Authorization": f"Bearer {other['sk']}"})
        assert r.status_code == 404 and r.json()["error"]["code"] == "test_run.not_found"
    assert httpx.get(f"{stack.url}/v1/test-runs", headers={"Authorization": f"Bearer {other['sk']}"}).json()[
        "data"] == []
    done = httpx.get(f"{stack.url}/v1/test-runs/{run['id']}", headers=stack.auth).json()
    assert done["summary"]["cases"] == 1 and done["status"] == "passed"  # --only


def test_a_run_whose_node_stopped_is_seen_as_interrupted(shop: tuple[Stack, str]) -> None:
    stack, persona = shop
    run = _post(stack, {"suite": suite(persona)}).json()
    _followed(stack, run["id"])

    async def lapse() -> None:  # as a node killed mid-run leaves it: running, silent for long
        storage = await open_storage(stack.settings.resolved_database_url)
        try:
            async with storage.engine.begin() as conn:
                await conn.execute(sa.update(test_runs).where(test_runs.c.id == run["id"]).values(
                    status="running", finished_at=None, beat_at=now() - timedelta(minutes=10)))
        finally:
            await storage.close()
    asyncio.run(lapse())
    seen = httpx.get(f"{stack.url}/v1/test-runs/{run['id']}", headers=stack.auth).json()
    assert seen["status"] == "error" and seen["error"].startswith("interrupted")


def test_the_console_runs_saved_cases_and_shows_what_changed(console: Console) -> None:
    stack = console.stack
    assert httpx.put(f"{stack.url}/v1/safety-policy", json=POLICY, headers=stack.auth).status_code == 200
    owner = console.signed_in("owner")
    viewer = console.signed_in("viewer")
    slug = stack.persona("echo")
    pid = httpx.get(f"{stack.url}/v1/personas/{slug}", headers=stack.auth).json()["id"]
    case = suite(slug)["cases"][1]
    r = owner.post("/console/playground/cases", headers={"X-CSRF-Token": token_for(owner)},
                   json={"persona": pid, **case})
    assert r.status_code == 201, r.text
    page = owner.get("/console/tests")
    assert f'action="/console/tests/run/{pid}"' in page.text and "No run yet." in page.text
    assert viewer.post(f"/console/tests/run/{pid}", data={"csrf": token_for(viewer, "/console/tests")}
                       ).status_code == 403
    assert owner.post(f"/console/tests/run/{pid}", data={}).status_code == 403  # no CSRF token
    ran = [owner.post(f"/console/tests/run/{pid}", data={"csrf": token_for(owner, "/console/tests")})
           for _ in range(2)]
    for r in ran:
        assert r.status_code == 303 and r.headers["location"].startswith("/console/tests/runs/")
        run_id = r.headers["location"].rsplit("/", 1)[1]
        events = Events(owner, f"/console/tests/runs/{run_id}/events")
        try:
            events.wait(lambda n, d: n == "done", timeout=60)
        finally:
            events.close()
    shown = owner.get(ran[1].headers["location"])
    assert shown.status_code == 200 and "passed" in shown.text
    assert "Is RivalCycles cheaper?" in shown.text and "term.rival" in shown.text
    assert "Every case ended as in the" in shown.text  # the previous run of the same suite, unchanged
    pasted = owner.post("/console/tests/run", data={"csrf": token_for(owner, "/console/tests"),
                                                    "suite": yaml.safe_dump(suite(slug))})
    assert pasted.status_code == 303
    stranger = console.signed_in("owner", tenant_id=stack.tenant()["tenant_id"])
    assert stranger.get(pasted.headers["location"]).status_code == 404


def test_the_server_publishes_the_suite_files_json_schema(shop: tuple[Stack, str]) -> None:
    import jsonschema

    stack, persona = shop
    r = httpx.get(f"{stack.url}/v1/test-suites/schema")  # no key: editors fetch it
    assert r.status_code == 200 and r.json()["title"] == "widget_server test suite"
    validator = jsonschema.Draft202012Validator(r.json())
    assert list(validator.iter_errors(suite(persona))) == []
    typo = {**suite(persona), "cases": [{"name": "a", "turns": [{"visitr": "hi"}]}]}
    assert list(validator.iter_errors(typo))  # what the command line refuses, the schema flags too
