"""Simulated visitors: a case driven by a test persona, played by a model (a fake OpenAI-compatible visitor model
on a local port, `tests/support/scripted.py`), answered by the persona through the turn visitors get (the loopback
upstream's echo model), checked on the whole conversation. The command as a user runs it (a subprocess), in
process where it runs ten times, and `POST /v1/test-runs`."""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import Stack
from tests.support.errors import assert_error
from tests.support.scripted import Scripted, scripted_model
from tests.support.servers import serve_in_thread
from tests.support.sse import Events
from tests.support.upstream import Upstream
from tests.test_suites import POLICY, Command
from widget_server.domain.testing import assertions
from widget_server.domain.testing.assertions import Observation
from widget_server.domain.testing.simulated import _similar
from widget_server.domain.testing.suite import Case
from widget_server.edges.cli import suites as suites_cli
from widget_server.settings import Settings

ESCALATES = "script:Do you sell helmets?|I want to talk to a human|Are you still there?"
REFUSED = "script:Hello there|Is RivalCycles cheaper?|Thanks, bye"


@pytest.fixture
def visitor_model() -> Iterator[tuple[Scripted, str]]:
    with scripted_model() as served:
        yield served


@pytest.fixture
def shop(stack_factory: Callable[..., Stack], tmp_path: Path) -> tuple[Stack, str]:
    stack = stack_factory(database_url=f"sqlite:///{tmp_path / 'shop.db'}")
    assert httpx.put(f"{stack.url}/v1/safety-policy", json=POLICY, headers=stack.auth).status_code == 200
    return stack, stack.persona("echo", name="Spokes", system_prompt="You sell bikes.", greeting="Hi, I'm Spokes!")


def simulated(persona: str, script: str, **case: Any) -> dict[str, Any]:
    visitor = {"inline": {"name": "Claire", "description": "a cyclist in Lyon",
                          "system_prompt": "You are Claire, who rides to work.",
                          "headers": {"Accept-Language": "fr-FR"}}}
    return {"suite": "simulated", "persona": persona, "simulator": {"model": script, "temperature": 0},
            "cases": [{"name": "a person when asked", "visitor_persona": visitor, "goal": "talk to a person",
                       "max_turns": 5, **case}]}


def _command(stack: Stack, where: Path, model_url: str) -> Command:
    command = Command(stack, where)
    command.env["WIDGET_SIMULATOR_BASE_URL"] = model_url
    return command


def test_a_simulated_visitor_that_escalates_at_turn_2_passes(shop: tuple[Stack, str], tmp_path: Path,
                                                             visitor_model: tuple[Scripted, str]) -> None:
    stack, persona = shop
    fake, url = visitor_model
    command = _command(stack, tmp_path, url)
    doc = simulated(persona, ESCALATES, at_some_turn={"escalated": True}, never={"refused": True})
    done = command.run(command.file("sim.yaml", doc), "--json", tmp_path / "out.json", "--junit", tmp_path / "j.xml")
    assert done.returncode == 0, done.stdout + done.stderr
    (case,) = json.loads((tmp_path / "out.json").read_text())["suites"][0]["cases"]
    assert case["status"] == "passed" and case["failures"] == []
    assert [t["visitor"] for t in case["turns"]] == ["Do you sell helmets?", "I want to talk to a human"]
    assert case["turns"][0]["reply"] == "Do you sell helmets?"  # (the echo persona), through the pipeline
    assert [t["escalated"] for t in case["turns"]] == [False, True]
    assert case["simulated"] == {"name": "Claire", "goal": "talk to a person", "max_turns": 5,
                                 "headers": {"Accept-Language": "fr-FR"}, "ended": "escalated"}
    # The visitor model was asked twice, with the roles swapped: the persona's words come to it as the user's.
    assert fake.calls("script:") == 2
    first, second = fake.requests
    system = first["messages"][0]["content"]
    assert "You are Claire" in system and "a cyclist in Lyon" in system and "talk to a person" in system
    assert "fr-FR" in system and "[END]" in system
    assert first["messages"][1:] == [{"role": "user", "content": "Hi, I'm Spokes!"}]
    assert [m["role"] for m in second["messages"][1:]] == ["user", "assistant", "user"]
    assert second["messages"][2:] == [{"role": "assistant", "content": "Do you sell helmets?"},
                                      {"role": "user", "content": "Do you sell helmets?"}]
    # The visitor's headers go with its conversation, on the event that opened it.
    started = stack.wait_events(lambda got: len(got) == 1, type="conversation.started")
    assert started[0]["channel"] == "test"
    assert started[0]["attributes"]["http.request.header.accept-language"] == ["fr-FR"]
    # The JUnit report carries the simulated transcript.
    out = ET.parse(tmp_path / "j.xml").getroot().findtext("./testsuite/testcase/system-out") or ""
    assert "simulated visitor 'Claire'" in out and "Accept-Language: fr-FR" in out
    assert "[turn 2] visitor: I want to talk to a human" in out and "ended: escalated" in out


def test_a_never_refused_that_fails_names_the_turn_and_the_decision(shop: tuple[Stack, str], tmp_path: Path,
                                                                   visitor_model: tuple[Scripted, str]) -> None:
    stack, persona = shop
    command = _command(stack, tmp_path, visitor_model[1])
    doc = simulated(persona, REFUSED, never={"refused": True, "escalated": True}, max_turns=3)
    done = command.run(command.file("sim.yaml", doc), "--json", tmp_path / "out.json", "--junit", tmp_path / "j.xml")
    assert done.returncode == 1, done.stderr
    (case,) = json.loads((tmp_path / "out.json").read_text())["suites"][0]["cases"]
    assert case["status"] == "failed" and case["simulated"]["ended"] == "max_turns" and len(case["turns"]) == 3
    (failure,) = case["failures"]  # escalated never happened: only the refusal fails
    assert failure["assertion"] == "never.refused" and failure["turn"] == 2 and failure["expected"] is True
    assert failure["actual"]["decisions"] == [{"action": "refuse", "reason": "term.rival", "source": "input"}]
    assert failure["actual"]["visitor"] == "Is RivalCycles cheaper?"
    assert failure["message"] == "refused was True: refuse term.rival (input)"
    assert "turn 2: never.refused: refused was True: refuse term.rival (input)" in done.stdout
    failed = ET.parse(tmp_path / "j.xml").getroot().find("./testsuite/testcase/failure")
    assert failed is not None and failed.get("message", "").startswith("turn 2: never.refused")


def _args(*argv: str | Path) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    suites_cli.add_parser(parser.add_subparsers())
    return parser.parse_args(["test", *map(str, argv)])


def _in_process(settings: Settings, *argv: str | Path) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = suites_cli.cmd_test(settings, _args(*argv))
    return code, out.getvalue(), err.getvalue()


def test_a_recorded_simulated_case_replays_identically_ten_times_with_the_models_stopped(
        shop: tuple[Stack, str], tmp_path: Path, upstream: tuple[Upstream, str]) -> None:
    stack, persona = shop
    fake = Scripted()
    doc = simulated(persona, ESCALATES, at_some_turn={"escalated": True}, never={"refused": True})
    command = Command(stack, tmp_path)
    path, tape = command.file("sim.yaml", doc), tmp_path / "tape.json"
    with serve_in_thread(fake.app()) as url:
        settings = stack.settings.model_copy(update={"simulator_base_url": url + "/v1"})
        code, _, err = _in_process(settings, path, "--tenant", stack.tenant_id, "--record", tape,
                                   "--json", tmp_path / "rec.json")
        assert code == 0, err
    assert fake.calls("script:") == 2
    kept = json.loads(tape.read_text())["suites"]["simulated"]["cases"]["a person when asked"]
    assert [t.get("visitor") for t in kept[0]] == ["Do you sell helmets?", "I want to talk to a human"]
    persona_calls = len(upstream[0].requests)
    outputs = set()
    for i in range(10):  # the visitor model's server is stopped: any call to it would fail the case
        code, stdout, err = _in_process(settings, path, "--tenant", stack.tenant_id, "--replay", tape,
                                        "--json", tmp_path / f"replay-{i}.json")
        assert code == 0, stdout + err
        outputs.add((tmp_path / f"replay-{i}.json").read_bytes())
    assert len(outputs) == 1 and fake.calls("script:") == 2 and len(upstream[0].requests) == persona_calls
    (case,) = json.loads(outputs.pop())["suites"][0]["cases"]
    assert case["simulated"]["ended"] == "escalated" and len(case["turns"]) == 2
    recorded = json.loads((tmp_path / "rec.json").read_text())["suites"][0]["cases"][0]
    assert [t["visitor"] for t in case["turns"]] == [t["visitor"] for t in recorded["turns"]]
    assert [t["reply"] for t in case["turns"]] == [t["reply"] for t in recorded["turns"]]

    # A simulated turn the cassette lacks is the case's error, never a model call.
    longer = simulated(persona, ESCALATES, name="not recorded")
    code, stdout, _ = _in_process(settings, command.file("other.yaml", longer), "--tenant", stack.tenant_id,
                                  "--replay", tape, "--json", tmp_path / "miss.json")
    (missed,) = json.loads((tmp_path / "miss.json").read_text())["suites"][0]["cases"]
    assert code == 1 and missed["status"] == "error" and "no visitor message" in missed["error"], stdout
    assert fake.calls("script:") == 2


def test_a_stored_test_persona_by_name_plays_with_its_goal_budget_and_headers(
        shop: tuple[Stack, str], tmp_path: Path, visitor_model: tuple[Scripted, str]) -> None:
    stack, persona = shop
    fake, url = visitor_model
    made = httpx.post(f"{stack.url}/v1/test-personas", headers=stack.auth, json={
        "name": "Hans", "description": "a commuter from Basel", "system_prompt": "You are Hans.",
        "headers": {"Accept-Language": "de-CH"}, "goal": "find a helmet for a child", "max_turns": 2})
    assert made.status_code == 201, made.text
    doc = {"suite": "by name", "persona": persona, "simulator": {"model": "script:Hallo|Kinderhelme?|Danke"},
           "cases": [{"name": "hans shops", "visitor_persona": {"name": "HANS"}, "never": {"escalated": True}}]}
    command = _command(stack, tmp_path, url)
    done = command.run(command.file("hans.yaml", doc), "--json", tmp_path / "out.json")
    assert done.returncode == 0, done.stdout + done.stderr
    (case,) = json.loads((tmp_path / "out.json").read_text())["suites"][0]["cases"]
    assert case["simulated"] == {"name": "Hans", "goal": "find a helmet for a child", "max_turns": 2,
                                 "headers": {"Accept-Language": "de-CH"}, "ended": "max_turns"}
    assert [t["visitor"] for t in case["turns"]] == ["Hallo", "Kinderhelme?"]  # its budget: two turns
    system = fake.requests[0]["messages"][0]["content"]
    assert "You are Hans." in system and "a commuter from Basel" in system and "de-CH" in system
    assert "find a helmet for a child" in system

    # A name the tenant has no test persona of: the suite cannot run (exit 2), nothing is asked of any model.
    doc["cases"][0]["visitor_persona"] = {"name": "Nobody"}
    calls = len(fake.requests)
    done = command.run(command.file("nobody.yaml", doc))
    assert done.returncode == 2 and done.stdout == "" and "Traceback" not in done.stderr
    assert "no test persona named 'Nobody'" in done.stderr and len(fake.requests) == calls
    r = httpx.post(f"{stack.url}/v1/test-runs", json={"suite": doc}, headers=stack.auth)
    body = assert_error(r, 400, "request.invalid_suite")
    assert "'Nobody'" in body["message"] and body["details"]["errors"][0]["field"] == "visitor_persona.name"
    # Another tenant's test persona is no test persona of this one.
    other = stack.tenant()
    doc["cases"][0]["visitor_persona"] = {"name": "Hans"}
    r = httpx.post(f"{stack.url}/v1/test-runs", json={"suite": doc}, headers={"Authorization": f"Bearer {other['sk']}"})
    assert_error(r, 400, "request.invalid_suite")


def test_a_simulated_case_runs_on_the_server_with_test_runs(stack_factory: Callable[..., Stack], tmp_path: Path,
                                                            visitor_model: tuple[Scripted, str]) -> None:
    fake, url = visitor_model
    stack = stack_factory(database_url=f"sqlite:///{tmp_path / 'runs.db'}", simulator_base_url=url)
    assert httpx.put(f"{stack.url}/v1/safety-policy", json=POLICY, headers=stack.auth).status_code == 200
    persona = stack.persona("echo", name="Spokes", greeting="Hi!")
    doc = simulated(persona, ESCALATES, at_some_turn={"escalated": True, "events": ["escalation.triggered"]})
    r = httpx.post(f"{stack.url}/v1/test-runs", json={"suite": doc}, headers=stack.auth)
    assert r.status_code == 202, r.text
    events = Events(httpx.Client(base_url=stack.url), f"/v1/test-runs/{r.json()['id']}/events", headers=stack.auth)
    try:
        events.wait(lambda n, d: n == "done", timeout=60)
    finally:
        events.close()
    run = httpx.get(f"{stack.url}/v1/test-runs/{r.json()['id']}", headers=stack.auth).json()
    assert run["status"] == "passed", run
    (case,) = run["result"]["cases"]
    assert case["simulated"]["ended"] == "escalated" and case["turns"][1]["escalated"] is True
    assert fake.calls("script:") == 2
    # The command with --server runs it there, and reports the simulated transcript here.
    command = Command(stack, tmp_path)
    command.env["WIDGET_DATABASE_URL"] = f"sqlite:///{tmp_path / 'empty.db'}"  # (nothing to run with here)
    done = command.run(command.file("sim.yaml", doc), "--server", stack.url, "--key", stack.sk, "--junit",
                       tmp_path / "remote.xml", "--json", tmp_path / "remote.json", tenant=False)
    assert done.returncode == 0, done.stdout + done.stderr
    out = ET.parse(tmp_path / "remote.xml").getroot().findtext("./testsuite/testcase/system-out") or ""
    assert "simulated visitor 'Claire'" in out and "ended: escalated" in out
    (remote,) = json.loads((tmp_path / "remote.json").read_text())["suites"][0]["cases"]
    assert remote["simulated"] == case["simulated"] and fake.calls("script:") == 4


def test_the_visitor_model_is_the_bundled_local_one_unless_a_simulator_is_named(
        shop: tuple[Stack, str], tmp_path: Path, settings_factory: Callable[..., Settings]) -> None:
    from widget_server.backends.providers import Providers

    assert Providers(settings_factory()).get("simulator").kind == "local"
    assert Providers(settings_factory(simulator_base_url="http://127.0.0.1:9/v1")).get("simulator").kind == "openai"
    # The bundled model plays a visitor for real (offline): one turn, whatever it writes, through the pipeline.
    stack, persona = shop
    doc = {"suite": "local visitor", "persona": persona, "simulator": {"max_tokens": 24, "temperature": 0},
           "cases": [{"name": "one turn", "visitor_persona": {"inline": {"name": "Ada", "system_prompt":
                                                                         "You are Ada, who wants a bike helmet."}},
                      "goal": "buy a helmet", "max_turns": 1}]}
    code, stdout, err = _in_process(stack.settings, Command(stack, tmp_path).file("local.yaml", doc),
                                    "--tenant", stack.tenant_id, "--json", tmp_path / "out.json")
    (case,) = json.loads((tmp_path / "out.json").read_text())["suites"][0]["cases"]
    assert code == 0 and case["status"] == "passed", stdout + err
    assert case["simulated"]["ended"] == "max_turns" and len(case["turns"]) == 1 and case["turns"][0]["visitor"]
    assert case["turns"][0]["reply"] == case["turns"][0]["visitor"]  # (the echo persona says it back)


def test_a_test_persona_is_found_by_its_folded_name_in_its_tenant_only(db_url: str) -> None:
    import asyncio

    from widget_server.backends.storage import open_storage
    from widget_server.domain import tenants
    from widget_server.domain.testing import personas as test_personas
    from widget_server.domain.testing.suite import SuiteInvalid, parse_suite
    from widget_server.domain.testing.visitor import visitor_of

    async def check() -> None:
        storage = await open_storage(db_url)
        try:
            mine, _ = await tenants.create_tenant(storage, "Mine")
            theirs, _ = await tenants.create_tenant(storage, "Theirs")
            await test_personas.create(storage, mine, {"name": "Zoë", "goal": "a refund", "max_turns": 3,
                                                       "headers": {"Accept-Language": "fr"}})
            case = parse_suite({"suite": "s", "persona": "p", "cases": [
                {"name": "c", "visitor_persona": {"name": "ZOË"}, "max_turns": 2}]}).cases[0]
            found = await visitor_of(storage, mine, case)
            assert (found.name, found.goal, found.max_turns, found.headers) == ("Zoë", "a refund", 2,
                                                                               {"Accept-Language": "fr"})
            with pytest.raises(SuiteInvalid, match="no test persona named 'ZOË'"):
                await visitor_of(storage, theirs, case)
        finally:
            await storage.close()

    asyncio.run(check())


def test_each_whole_conversation_similar_to_is_checked_against_its_own_text() -> None:
    case = Case.model_validate({"name": "two texts", "visitor_persona": {"inline": {"name": "V"}}, "goal": "a helmet",
                                "at_some_turn": {"similar_to": {"text": "we sell helmets", "min": 0.5}},
                                "never": {"similar_to": {"text": "I cannot help", "min": 0.5}}})
    assert _similar(case) == ("we sell helmets", "I cannot help")  # both texts embedded, each reply
    obs = Observation("Do you sell helmets?", "Do you sell helmets?", "Yes, helmets in every size.", "stop", [], {},
                      {}, [], True, False, similarities={"we sell helmets": 0.8, "I cannot help": 0.1})
    assert case.at_some_turn is not None and case.never is not None
    assert assertions.at_some_turn(case.at_some_turn, [obs]) == []
    assert assertions.never(case.never, [obs]) == []  # judged on "I cannot help" (0.1), not on the other text (0.8)
    far = Observation("x", "x", "I cannot help with that.", "stop", [], {}, {}, [], True, False,
                      similarities={"we sell helmets": 0.1, "I cannot help": 0.9})
    assert [f.assertion for f in assertions.never(case.never, [obs, far])] == ["never.similar_to"]
