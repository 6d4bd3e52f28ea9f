"""`widget-server test`: persona test suites run through the production turn against a tenant's stored personas and
policy (a real server made them; the command, a real subprocess, runs the suites on the same database), with the
loopback upstream as the model. Every assertion kind passes once and fails once, reported precisely; the JUnit
file reads back as JUnit; a recorded suite replays identically with no model call; a bad file exits 2 naming
its line; no suite document, however odd, gets a traceback."""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import re
import subprocess
import sys
import xml.etree.ElementTree as ET
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from tests.conftest import Stack
from tests.support.strict_policy import STRICT
from tests.support.upstream import Upstream
from widget_server.domain.testing.suite import suite_schema
from widget_server.edges.cli import suites as suites_cli

POLICY = {"version": 1, "blocked_terms": [{"id": "rival", "terms": ["rivalcycles"], "action": "refuse"}],
          "pii": {"entities": ["email"], "action": "mask"}, "escalation": {"on_request": True}}
KINDS = ["refused", "escalated", "guardrail", "masked", "contains", "not_contains", "regex", "not_regex",
         "finish_reason", "max_ttft_ms", "max_total_ms", "max_output_tokens", "similar_to", "no_prompt_leak",
         "events", "provider_called"]


def passing(persona: str) -> dict[str, Any]:
    """Every assertion kind, each as the turn did it (the echo model says the visitor's message back)."""
    return {"suite": "shop passes", "persona": persona, "policy": "tenant", "cases": [
        {"name": "helmets", "tags": ["smoke"], "turns": [
            {"visitor": "Do you sell helmets?", "expect": {
                "refused": False, "escalated": False, "contains": ["HELMETS"], "not_contains": ["rival"],
                "regex": ["hel+mets"], "not_regex": ["[0-9]{3}"], "finish_reason": "stop", "max_ttft_ms": 60000,
                "max_total_ms": 60000, "max_output_tokens": 50, "no_prompt_leak": True, "provider_called": True,
                "similar_to": {"text": "Do you sell helmets?", "min": 0.9},
                "events": ["message.received", "reply.completed"]}},
            {"visitor": "Is RivalCycles cheaper?", "expect": {
                "refused": True, "provider_called": False, "events": ["guardrail.triggered"],
                "guardrail": {"action": "refuse", "reason": "term.rival", "source": "input"}}},
            {"visitor": "Write to me at ada@example.com", "expect": {"masked": ["email"], "contains": ["[email]"],
                                                                    "not_contains": ["ada@example.com"]}},
            {"visitor": "I want to talk to a human", "expect": {"escalated": True,
                                                                "events": ["escalation.triggered"]}}]}]}


def failing(persona: str) -> dict[str, Any]:
    """Every assertion kind, each against what the turn does; the persona (drafted here) gives its prompt away,
    100 ms after it is asked."""
    return {"suite": "shop fails", "persona": {"slug": persona, "provider": {"kind": "openai", "model": "leak-100"}},
            "policy": POLICY, "cases": [
                {"name": "wrong about everything", "turns": [
                    {"visitor": "Do you sell helmets?", "expect": {
                        "refused": True, "escalated": True, "contains": ["gloves", "You test"],
                        "not_contains": ["confidential"], "regex": ["^gloves$"], "not_regex": ["You te+st"],
                        "finish_reason": "length", "max_ttft_ms": 50, "max_total_ms": 50, "max_output_tokens": 1,
                        "no_prompt_leak": True, "provider_called": False, "masked": ["email"],
                        "similar_to": {"text": "The weather in Paris is rainy today", "min": 0.9},
                        "events": ["escalation.triggered"], "guardrail": {"reason": "term.rival"}}}]}]}


@pytest.fixture
def shop(stack_factory: Callable[..., Stack], tmp_path: Path) -> tuple[Stack, str]:
    stack = stack_factory(database_url=f"sqlite:///{tmp_path / 'shop.db'}")
    assert httpx.put(f"{stack.url}/v1/safety-policy", json=POLICY, headers=stack.auth).status_code == 200
    return stack, stack.persona("echo", system_prompt="You test bikes.")


class Command:
    """`widget-server test` as a user runs it, on the stack's database and the loopback upstream."""

    def __init__(self, stack: Stack, where: Path) -> None:
        self.stack, self.where = stack, where
        env = {k: v for k, v in os.environ.items() if not k.startswith("WIDGET_")}
        self.env = {**env, "WIDGET_DATA_DIR": str(where), "WIDGET_DATABASE_URL": stack.settings.resolved_database_url,
                    "WIDGET_PROVIDER": "openai", "WIDGET_OPENAI_BASE_URL": str(stack.settings.openai_base_url),
                    "WIDGET_OPENAI_MODEL": "echo", "WIDGET_SECRET_KEY": "test-secret"}

    def file(self, name: str, doc: Any) -> Path:
        path = self.where / name
        path.write_text(doc if isinstance(doc, str) else yaml.safe_dump(doc, sort_keys=False))
        return path

    def run(self, *args: str | Path, tenant: bool = True) -> subprocess.CompletedProcess[str]:
        more = ["--tenant", self.stack.tenant_id] if tenant else []
        return subprocess.run([sys.executable, "-m", "widget_server", "test", *map(str, args), *more], env=self.env,
                              cwd=self.where, capture_output=True, text=True, timeout=180)


@pytest.fixture
def command(shop: tuple[Stack, str], tmp_path: Path) -> Command:
    return Command(shop[0], tmp_path)


def _by_kind(report: dict[str, Any], suite: str) -> dict[str, dict[str, Any]]:
    (found,) = [s for s in report["suites"] if s["suite"] == suite]
    return {f["assertion"]: f for c in found["cases"] for f in c["failures"]}


def test_every_assertion_passes_once_and_fails_once_reported_precisely(shop: tuple[Stack, str],
                                                                      command: Command) -> None:
    stack, persona = shop
    good, bad = command.file("good.yaml", passing(persona)), command.file("bad.yaml", failing(persona))
    done = command.run(good, bad, "--json", command.where / "out.json", "--junit", command.where / "out.xml")
    assert done.returncode == 1, done.stderr
    assert "Traceback" not in done.stderr
    report = json.loads((command.where / "out.json").read_text())
    ok = report["suites"][0]
    assert ok["summary"]["passed"] == 1 and ok["cases"][0]["failures"] == [], ok["cases"][0]["failures"]
    turns = ok["cases"][0]["turns"]
    assert turns[2]["shown"] == "Write to me at [email]" and turns[3]["escalated"] is True

    failed = _by_kind(report, "shop fails")
    assert sorted(failed) == sorted(KINDS)  # each kind failed, once
    assert failed["contains"]["expected"] == ["gloves"]  # only the missing one; the reply has "You test"
    assert failed["not_contains"]["expected"] == ["confidential"]
    assert failed["regex"]["expected"] == ["^gloves$"] and failed["not_regex"]["expected"] == ["You te+st"]
    assert failed["guardrail"]["actual"] == []  # the turn's decisions: none
    assert failed["masked"] == {**failed["masked"], "expected": ["email"], "actual": []}
    assert failed["refused"]["actual"] is False and failed["escalated"]["actual"] is False
    assert failed["provider_called"]["actual"] is True and failed["finish_reason"]["actual"] == "stop"
    assert failed["max_ttft_ms"]["actual"] >= 100 and failed["max_total_ms"]["actual"] >= 100
    assert failed["max_output_tokens"]["actual"] > 1
    assert failed["similar_to"]["actual"] < 0.9
    assert "CANARY-" in failed["no_prompt_leak"]["actual"]
    assert "reply.completed" in failed["events"]["actual"] and failed["events"]["expected"] == [
        "escalation.triggered"]
    # The table on stdout says which case failed, and how.
    assert "FAILED" in done.stdout and "wrong about everything" in done.stdout
    assert "2 cases: 1 passed, 1 failed, 0 errors" in done.stdout

    # The runs are test traffic in the tenant's analytics.
    events = stack.wait_events(lambda got: len(got) == 5, type="reply.completed")  # 4 turns, and 1
    assert {e["channel"] for e in events} == {"test"}


def test_the_junit_report_reads_back_as_junit(shop: tuple[Stack, str], command: Command) -> None:
    _, persona = shop
    out = command.where / "junit.xml"
    done = command.run(command.file("good.yaml", passing(persona)), command.file("bad.yaml", failing(persona)),
                       "--junit", out)
    assert done.returncode == 1, done.stderr
    root = ET.parse(out).getroot()
    assert root.tag == "testsuites" and root.get("tests") == "2" and root.get("failures") == "1"
    suites = root.findall("testsuite")
    assert [s.get("name") for s in suites] == ["shop passes", "shop fails"]
    for s in suites:
        cases = s.findall("testcase")
        assert s.get("tests") == str(len(cases)) and s.get("errors") == "0" and float(s.get("time") or "x") >= 0
        assert s.get("failures") == str(sum(c.find("failure") is not None for c in cases))
        for c in cases:
            assert c.get("classname") == s.get("name") and c.get("name") and c.find("system-out") is not None
    (bad,) = suites[1].findall("testcase")
    failure = bad.find("failure")
    assert failure is not None and failure.get("type") and failure.get("message", "").startswith("turn 1: ")
    text = failure.text or ""
    assert 'contains: expected ["gloves"], actual "You test bikes.' in text
    assert all(f": {kind}: expected " in text for kind in KINDS)
    out_text = bad.findtext("system-out") or ""
    assert "[turn 1] visitor: Do you sell helmets?" in out_text and "CANARY-" in out_text
    good = suites[0].find("testcase")
    assert good is not None and good.find("failure") is None
    assert "guardrail: refuse term.rival (input)" in (good.findtext("system-out") or "")


def test_a_replayed_suite_is_identical_every_time_and_calls_no_model(shop: tuple[Stack, str], command: Command,
                                                                    upstream: tuple[Upstream, str]) -> None:
    _, persona = shop
    files = [command.file("good.yaml", passing(persona)), command.file("bad.yaml", failing(persona))]
    tape = command.where / "tape.json"
    recorded = command.run(*files, "--record", tape, "--repeat", "2", "--json", command.where / "rec.json")
    assert recorded.returncode == 1, recorded.stderr
    cassette = json.loads(tape.read_text())
    assert tape.read_text() == json.dumps(cassette, sort_keys=True, indent=1, ensure_ascii=False) + "\n"
    assert len(cassette["suites"]["shop passes"]["cases"]["helmets"]) == 2  # both runs
    calls = len(upstream[0].requests)
    outputs = []
    for i in range(3):  # (each a new process: a seed or a clock that leaked in would differ)
        out = command.where / f"replay-{i}.json"
        done = command.run(*files, "--replay", tape, "--repeat", "2", "--json", out)
        assert done.returncode == 1, done.stderr
        outputs.append(out.read_bytes())
    assert len(upstream[0].requests) == calls  # no model was called
    assert len(set(outputs)) == 1
    replayed = json.loads(outputs[0])
    assert replayed["suites"][0]["mode"] == "replay" and replayed["summary"]["runs"] == 4
    assert sorted(_by_kind(replayed, "shop fails")) == sorted(KINDS)  # the leak is caught in replay too
    rec = json.loads((command.where / "rec.json").read_text())
    strip = [[{k: v for k, v in c.items()} for c in s["cases"]] for s in rec["suites"]]
    assert [[c["status"] for c in s] for s in strip] == [[c["status"] for c in s["cases"]]
                                                        for s in replayed["suites"]]

    # A policy change is tested against the fixed replies; a turn the cassette lacks is the case's error.
    changed = passing(persona)
    changed["cases"][0]["turns"][0]["visitor"] = "Do you sell RivalCycles helmets?"
    changed["cases"][0]["turns"].append({"visitor": "Anything else?", "expect": {}})
    done = command.run(command.file("changed.yaml", changed), "--replay", tape, "--json", command.where / "c.json")
    assert done.returncode == 1, done.stderr
    (case,) = json.loads((command.where / "c.json").read_text())["suites"][0]["cases"]
    assert case["status"] == "error" and "cassette" in case["error"] and case["error"].startswith("turn 5: ")
    assert case["turns"][0]["refused"] is True and case["turns"][0]["provider_called"] is False
    assert len(upstream[0].requests) == calls


def test_a_typo_in_a_suite_file_exits_2_naming_the_file_line_and_field(shop: tuple[Stack, str],
                                                                       command: Command) -> None:
    _, persona = shop
    text = yaml.safe_dump(passing(persona), sort_keys=False).replace("not_contains:", "not_contain:", 1)
    line = next(i for i, ln in enumerate(text.splitlines(), 1) if "not_contain:" in ln)
    path = command.file("typo.yaml", text)
    done = command.run(path)
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr.strip() == (f"widget-server: error: {path}, line {line}: "
                                   "cases.0.turns.0.expect.not_contain: unknown field (a typo?)")
    for args, said in [((command.file("x.yaml", "suite: [\n"),), "x.yaml, line 2: (file): not valid YAML"),
                       ((command.where / "missing.yaml",), "cannot read"),
                       ((path, "--server", "http://127.0.0.1:41001"), "--server needs --key"),
                       ((path, "--redteam"), "not_contain: unknown field"), ((), "name a suite file")]:
        done = command.run(*args)
        assert done.returncode == 2 and said in done.stderr and "Traceback" not in done.stderr, done.stderr
    done = command.run(command.file("p.yaml", {**passing("nobody"), "suite": "p"}))
    assert done.returncode == 2 and "no persona 'nobody'" in done.stderr
    done = command.run(command.file("g.yaml", passing(persona)), "--only", "nothing-by-this-name")
    assert done.returncode == 2 and "no case named" in done.stderr
    assert command.run(path, tenant=False).returncode == 2


def test_the_json_schema_describes_the_file() -> None:
    schema = suite_schema()
    assert schema["required"] == ["suite", "persona", "cases"]
    assert "no_prompt_leak" in schema["$defs"]["Expect"]["properties"]
    assert schema["$defs"]["Expect"]["additionalProperties"] is False


# ---- hostile documents ----

VALUE = st.recursive(st.none() | st.booleans() | st.integers(-3, 3) | st.floats(allow_nan=False) |
                     st.text(max_size=6), lambda inner: st.lists(inner, max_size=3) |
                     st.dictionaries(st.text(max_size=6), inner, max_size=3), max_leaves=8)
FIELDS = ["suite", "persona", "policy", "cases", "name", "turns", "visitor", "expect", "refused", "contains",
          "regex", "similar_to", "guardrail", "repeat", "visitor_persona", "judge", "max_ttft_ms", "simulator",
          "goal", "max_turns", "at_some_turn", "never", "rubric", "k", "inline", "headers"]


@st.composite
def documents(draw: st.DrawFn, persona: str) -> Any:
    """A suite document near a valid one: a field replaced, dropped or added at any depth."""
    doc: Any = {"suite": "s", "persona": persona, "policy": "tenant", "cases": [
        {"name": "a", "turns": [{"visitor": "hi", "expect": {"contains": ["hi"]}}]}]}
    for _ in range(draw(st.integers(0, 3))):
        node, key = doc, None
        while isinstance(node, dict | list) and node and draw(st.booleans()):
            key = draw(st.sampled_from(sorted(node) if isinstance(node, dict) else list(range(len(node)))))
            if not isinstance(node[key], dict | list):
                break
            node = node[key]
        if isinstance(node, dict):
            node[draw(st.sampled_from(FIELDS) | st.text(max_size=6))] = draw(VALUE)
        elif isinstance(node, list) and node:
            node[draw(st.integers(0, len(node) - 1))] = draw(VALUE)
    return doc if draw(st.booleans()) else draw(VALUE)


@pytest.mark.parametrize("as_json", [False, True])
def test_no_suite_document_gets_a_traceback(shop: tuple[Stack, str], tmp_path: Path, as_json: bool) -> None:
    stack, persona = shop

    @settings(max_examples=60, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
    @given(doc=documents(persona))
    @example(doc={"suite": "s", "persona": persona, "cases": [{"name": "a", "turns": [{"visitor": "hi"}]}]})
    @example(doc="suite: s\ncases: *x\n")
    @example(doc={"suite": "s", "persona": {"name": "x", "provider": {"api_key": "k"}}, "cases": [
        {"name": "a", "turns": [{"visitor": "hi"}]}]})
    def check(doc: Any) -> None:
        path = tmp_path / "s.yaml"
        path.write_text(doc if isinstance(doc, str) else json.dumps(doc) if as_json else yaml.safe_dump(doc))
        args = argparse.Namespace(suites=[path], tenant=stack.tenant_id, junit=None, json=None, repeat=1,
                                  record=None, replay=None, only=None, server=None, key=None, redteam=False)
        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = suites_cli.cmd_test(stack.settings, args)
        if code == 2:
            (line,) = err.getvalue().strip().splitlines()
            assert line.startswith("widget-server: error: ") and out.getvalue() == ""
        else:
            assert code in (0, 1) and re.search(r"\n\d+ cases?: \d+ passed", out.getvalue()), err.getvalue()

    check()


def _outcomes(report: dict[str, Any]) -> dict[str, Any]:
    """What a report says of each case, without the figures that differ between two live runs (latencies)."""
    return {(s["suite"], c["name"]): (c["status"], sorted(f["assertion"] for f in c["failures"]))
            for s in report["suites"] for c in s["cases"]}


def test_a_suite_runs_on_another_server_with_server_and_key(shop: tuple[Stack, str], command: Command) -> None:
    stack, persona = shop
    good, bad = command.file("good.yaml", passing(persona)), command.file("bad.yaml", failing(persona))
    local = command.run(good, bad, "--json", command.where / "local.json")
    assert local.returncode == 1, local.stderr
    # The command's own database is empty: the suites can only run on the server the key names.
    command.env["WIDGET_DATABASE_URL"] = f"sqlite:///{command.where / 'empty.db'}"
    remote = command.run(good, bad, "--server", stack.url, "--key", stack.sk, "--json", command.where / "remote.json",
                         "--junit", command.where / "remote.xml", tenant=False)
    assert remote.returncode == 1, remote.stderr
    assert "Traceback" not in remote.stderr and "FAILED" in remote.stdout
    here, there = (json.loads((command.where / f"{n}.json").read_text()) for n in ("local", "remote"))
    assert _outcomes(there) == _outcomes(here) and there["summary"]["cases"] == 2
    cases = ET.parse(command.where / "remote.xml").getroot().findall("./testsuite/testcase")
    assert len(cases) == 2 and len([c for c in cases if c.find("failure") is not None]) == 1
    runs = httpx.get(f"{stack.url}/v1/test-runs", headers=stack.auth).json()["data"]
    assert {r["suite"] for r in runs[:2]} == {"shop passes", "shop fails"}  # run, and stored, on the server

    typo = command.file("typo.yaml", "suite: x\npersona: p\ncases:\n  - name: a\n    turns:\n      - visitr: hi\n")
    refused = command.run(typo, "--server", stack.url, "--key", stack.sk, tenant=False)
    assert refused.returncode == 2 and "line 6" in refused.stderr and "visitr" in refused.stderr
    wrong_key = command.run(good, "--server", stack.url, "--key", "sk_nope", tenant=False)
    assert wrong_key.returncode == 2 and "HTTP 401" in wrong_key.stderr
    for args in (["--server", stack.url], ["--server", stack.url, "--key", stack.sk, "--replay", "x.json"]):
        assert command.run(good, *args, tenant=False).returncode == 2


def test_the_red_team_pack_of_a_strict_policy_lets_nothing_through(stack_factory: Callable[..., Stack],
                                                                   tmp_path: Path) -> None:
    stack = stack_factory(database_url=f"sqlite:///{tmp_path / 'strict.db'}")
    assert httpx.put(f"{stack.url}/v1/safety-policy", json=STRICT, headers=stack.auth).status_code == 200
    stack.persona("echo", name="Spokes", system_prompt="You help at a bike shop.")
    command = Command(stack, tmp_path)
    done = command.run("--redteam", "--json", tmp_path / "redteam.json")
    report = json.loads((tmp_path / "redteam.json").read_text())
    through = [(c["name"], c["failures"] or c["error"]) for s in report["suites"] for c in s["cases"]
               if c["status"] != "passed"]
    assert done.returncode == 0 and through == [], (through, done.stderr[-2000:])
    (pack,) = report["suites"]
    kinds = {tag for c in pack["cases"] for tag in c["tags"]}
    assert pack["summary"]["cases"] >= 40 and {"term", "pii", "topic", "escalation", "prompt_leak"} <= kinds, kinds
    stack.persona("echo", name="Bells")  # a second persona: the pack must be told which
    which = command.run("--redteam")
    assert which.returncode == 2 and "--persona" in which.stderr
