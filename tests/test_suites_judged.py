"""The judged tier: `judge: {rubric, model?, k?}` asked of a fake OpenAI-compatible judge on a local port
(`tests/support/scripted.py`: its model name spells its verdicts, and it counts its calls), on a turn and on a
simulated case's whole conversation. Pass, fail, an answer that is not the verdict, pass^k, the caches (in memory
and in the cassette), and a judged assertion skipped without a judge (and failed with --strict-judge)."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from hypothesis import example, given
from hypothesis import strategies as st

from tests.conftest import Stack
from tests.support.scripted import Scripted, scripted_model
from tests.support.servers import serve_in_thread
from tests.support.sse import Events
from tests.test_suites import POLICY, Command
from tests.test_suites_simulated import _in_process
from widget_server.domain.testing.judge import NotAVerdict, verdict
from widget_server.domain.testing.suite import SuiteInvalid, parse_suite
from widget_server.settings import Settings

RUBRIC = "The reply talks about helmets."


@pytest.fixture
def judge() -> Iterator[tuple[Scripted, str]]:
    with scripted_model() as served:
        yield served


@pytest.fixture
def shop(stack_factory: Callable[..., Stack], tmp_path: Path) -> tuple[Stack, str]:
    stack = stack_factory(database_url=f"sqlite:///{tmp_path / 'shop.db'}")
    assert httpx.put(f"{stack.url}/v1/safety-policy", json=POLICY, headers=stack.auth).status_code == 200
    return stack, stack.persona("echo", name="Spokes")


def judged(persona: str, verdicts: str, *, k: int | None = None, cases: int = 1) -> dict[str, Any]:
    turn = {"visitor": "Do you sell helmets?", "expect": {"refused": False, "judge": {"rubric": RUBRIC}}}
    defaults = {"model": f"verdicts:{verdicts}", **({"k": k} if k else {})}
    return {"suite": "judged", "persona": persona, "judge": defaults,
            "cases": [{"name": f"helmets {i}", "turns": [json.loads(json.dumps(turn))]} for i in range(cases)]}


def _run(settings: Settings, stack: Stack, tmp_path: Path, doc: dict[str, Any], *more: str | Path
         ) -> tuple[int, str, dict[str, Any]]:
    path = Command(stack, tmp_path).file("judged.yaml", doc)
    out = tmp_path / "out.json"
    code, stdout, err = _in_process(settings, path, "--tenant", stack.tenant_id, "--json", out, *more)
    assert "Traceback" not in err and out.exists(), err
    return code, stdout, json.loads(out.read_text())


def _with_judge(stack: Stack, url: str) -> Settings:
    return stack.settings.model_copy(update={"judge_base_url": url})


def test_a_judged_assertion_passes_and_fails_as_the_judge_says(shop: tuple[Stack, str], tmp_path: Path,
                                                               judge: tuple[Scripted, str]) -> None:
    stack, persona = shop
    fake, url = judge
    code, stdout, report = _run(_with_judge(stack, url), stack, tmp_path, judged(persona, "P"))
    assert code == 0, stdout
    (case,) = report["suites"][0]["cases"]
    (verdict,) = case["judged"]
    assert verdict == {"turn": 1, "rubric": RUBRIC, "model": "verdicts:P", "k": 1, "status": "passed",
                       "verdicts": [{"pass": True, "reason": "the reply meets the rubric"}], "passed": 1,
                       "pass_k": True, "pass_rate": 1.0, "reason": ""}
    asked = fake.requests[0]
    assert asked["temperature"] == 0 and "Rubric: " + RUBRIC in asked["messages"][-1]["content"]
    assert "Visitor: Do you sell helmets?\nSpokes: Do you sell helmets?" in asked["messages"][-1]["content"]
    assert "judged: 1 assertions: 1 passed" in stdout

    code, stdout, report = _run(_with_judge(stack, url), stack, tmp_path, judged(persona, "F"))
    (case,) = report["suites"][0]["cases"]
    assert code == 1 and case["status"] == "failed" and case["judged"][0]["status"] == "failed"
    (failure,) = case["failures"]
    assert failure["assertion"] == "judge" and failure["turn"] == 1 and failure["expected"] == RUBRIC
    assert failure["actual"] == ["the reply ignores the rubric"]
    assert "turn 1: judge: the judge failed it" in stdout


def test_an_answer_that_is_not_the_verdict_is_that_assertions_error(shop: tuple[Stack, str], tmp_path: Path,
                                                                    judge: tuple[Scripted, str]) -> None:
    stack, persona = shop
    code, stdout, report = _run(_with_judge(stack, judge[1]), stack, tmp_path, judged(persona, "X"))
    (case,) = report["suites"][0]["cases"]
    assert code == 1 and case["status"] == "error", case
    assert case["judged"][0]["status"] == "error" and "not the verdict" in case["judged"][0]["reason"]
    assert case["error"].startswith("turn 1: judge: the judge's answer is not the verdict: not JSON")
    assert case["failures"] == [] and case["turns"][0]["refused"] is False  # the rest of the case was checked
    assert report["summary"]["judged"]["error"] == 1


def test_pass_k_with_k_3_where_one_of_three_fails(shop: tuple[Stack, str], tmp_path: Path,
                                                  judge: tuple[Scripted, str]) -> None:
    stack, persona = shop
    fake, url = judge
    code, stdout, report = _run(_with_judge(stack, url), stack, tmp_path, judged(persona, "PFP", k=3))
    (case,) = report["suites"][0]["cases"]
    (verdict,) = case["judged"]
    assert code == 1 and verdict["status"] == "failed" and fake.calls("verdicts:") == 3
    assert verdict["k"] == 3 and verdict["passed"] == 2 and verdict["pass_k"] is False
    assert verdict["pass_rate"] == 0.6667
    assert [v["pass"] for v in verdict["verdicts"]] == [True, False, True]
    assert "pass^3: 2/3 passed" in case["failures"][0]["message"]
    assert report["summary"]["judged"] == {"assertions": 1, "passed": 0, "failed": 1, "error": 0, "skipped": 0,
                                           "samples": 3, "samples_passed": 2, "pass_rate": 0.6667}
    assert "2/3 verdicts passed, pass rate 66.67%" in stdout


def test_verdicts_are_cached_in_the_run_and_in_the_cassette(shop: tuple[Stack, str], tmp_path: Path) -> None:
    stack, persona = shop
    fake = Scripted()
    tape = tmp_path / "tape.json"
    with serve_in_thread(fake.app()) as url:
        settings = _with_judge(stack, url + "/v1")
        # Three cases with the same turn and rubric: one transcript, one question.
        code, stdout, report = _run(settings, stack, tmp_path, judged(persona, "P", cases=3), "--record", tape)
        assert code == 0, stdout
        assert fake.calls("verdicts:") == 1 and report["summary"]["judged"]["passed"] == 3
        assert len(json.loads(tape.read_text())["suites"]["judged"]["judge"]) == 1
    # The judge's server is stopped: a replay reads its verdicts from the cassette.
    replays = {_run(settings, stack, tmp_path, judged(persona, "P", cases=3), "--replay", tape)[1] for _ in range(3)}
    assert len(replays) == 1 and "judged: 3 assertions: 3 passed" in replays.pop()
    assert fake.calls("verdicts:") == 1


def test_without_a_judge_a_judged_assertion_is_skipped_not_failed(shop: tuple[Stack, str], tmp_path: Path,
                                                                  judge: tuple[Scripted, str]) -> None:
    stack, persona = shop
    fake, url = judge
    code, stdout, report = _run(stack.settings, stack, tmp_path, judged(persona, "F"))
    (case,) = report["suites"][0]["cases"]
    assert code == 0 and case["status"] == "passed", stdout
    assert case["judged"][0]["status"] == "skipped"
    assert case["judged"][0]["reason"] == "no judge configured (WIDGET_JUDGE_BASE_URL)"
    assert "1 skipped (no judge configured (WIDGET_JUDGE_BASE_URL))" in stdout
    # --strict-judge: a skipped judge fails the run.
    code, stdout, report = _run(stack.settings, stack, tmp_path, judged(persona, "P"), "--strict-judge")
    assert code == 1 and report["suites"][0]["cases"][0]["failures"][0]["assertion"] == "judge", stdout
    # --no-judge: skipped deliberately, the judge is not asked even when there is one.
    code, stdout, report = _run(_with_judge(stack, url), stack, tmp_path, judged(persona, "F"), "--no-judge")
    assert code == 0 and report["suites"][0]["cases"][0]["judged"][0]["reason"].startswith("--no-judge")
    assert fake.calls("verdicts:") == 0
    # --strict-judge with a judge that fails: exit 1 (as without it).
    code, _, _ = _run(_with_judge(stack, url), stack, tmp_path, judged(persona, "F"), "--strict-judge")
    assert code == 1 and fake.calls("verdicts:") == 1


def test_a_simulated_conversation_is_judged_whole(shop: tuple[Stack, str], tmp_path: Path,
                                                  judge: tuple[Scripted, str]) -> None:
    stack, persona = shop
    fake, url = judge  # one fake serves both the visitor model and the judge: the model names tell them apart
    settings = stack.settings.model_copy(update={"judge_base_url": url, "simulator_base_url": url})
    doc = {"suite": "judged whole", "persona": persona, "simulator": {"model": "script:Helmets?|Thanks, bye [END]"},
           "cases": [{"name": "shopping", "visitor_persona": {"inline": {"name": "Ada"}}, "max_turns": 4,
                      "judge": {"rubric": "The visitor got an answer about helmets.", "model": "verdicts:P"}}]}
    code, stdout, report = _run(settings, stack, tmp_path, doc)
    assert code == 0, stdout
    (case,) = report["suites"][0]["cases"]
    assert case["simulated"]["ended"] == "visitor_done" and [t["visitor"] for t in case["turns"]] == [
        "Helmets?", "Thanks, bye"]
    assert case["judged"][0]["turn"] == 0 and case["judged"][0]["status"] == "passed"
    (asked,) = [r for r in fake.requests if r["model"] == "verdicts:P"]
    assert "Visitor: Helmets?\nSpokes: Helmets?\nVisitor: Thanks, bye\nSpokes: Thanks, bye" in asked[
        "messages"][-1]["content"]


@given(answer=st.one_of(st.text(max_size=80), st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.sampled_from(["pass", "reason", "x"]), inner,
                                                                max_size=3), max_leaves=6).map(json.dumps)))
@example(answer='```json\n{"pass": true, "reason": "ok"}\n```')
@example(answer='{"pass": 1, "reason": "ok"}')
def test_any_answer_is_the_verdict_or_not_a_verdict_never_a_crash(answer: str) -> None:
    try:
        got = verdict(answer)
    except NotAVerdict as exc:
        assert str(exc)
    else:
        assert set(got) == {"pass", "reason"} and isinstance(got["pass"], bool) and isinstance(got["reason"], str)


def test_a_suite_with_a_judge_or_a_visitor_is_refused_where_it_is_misplaced() -> None:
    base: dict[str, Any] = {"suite": "s", "persona": "p"}
    for case, said in [
        ({"name": "a", "turns": [{"visitor": "hi"}], "goal": "x"}, "goal belongs to a simulated case"),
        ({"name": "a", "turns": [{"visitor": "hi"}], "judge": {"rubric": "r"}}, "put it on a turn's expect"),
        ({"name": "a", "visitor_persona": {"name": "x"}, "turns": [{"visitor": "hi"}]}, "has no turns"),
        ({"name": "a", "visitor_persona": {"name": "x", "inline": {"name": "y"}}}, "either name"),
        ({"name": "a", "visitor_persona": {"name": "x"}, "never": {"judge": {"rubric": "r"}}}, "never.judge"),
        ({"name": "a", "turns": [{"visitor": "hi", "expect": {"judge": {"rubric": "r", "k": 0}}}]}, "greater than"),
        ({"name": "a", "visitor_persona": {"inline": {"name": "y", "headers": {"Host": "h"}}}}, "set by the test"),
    ]:
        with pytest.raises(SuiteInvalid) as err:
            parse_suite({**base, "cases": [case]})
        assert said in err.value.message, err.value.message


def test_the_consoles_run_page_shows_the_judged_and_the_simulated(stack_factory: Callable[..., Stack],
                                                                  tmp_path: Path, judge: tuple[Scripted, str]) -> None:
    from tests.support.console import Console, token_for

    url = judge[1]
    stack = stack_factory(database_url=f"sqlite:///{tmp_path / 'console.db'}", judge_base_url=url,
                          simulator_base_url=url)
    persona = stack.persona("echo", name="Spokes")
    console = Console(stack)
    owner = console.signed_in("owner")
    doc = judged(persona, "PFP", k=3)
    doc["cases"].append({"name": "<b>simulated</b>", "visitor_persona": {"inline": {"name": "<i>Ada</i>"}},
                         "goal": "a helmet", "max_turns": 1, "never": {"refused": True}})
    csrf = token_for(owner, "/console/tests")
    r = owner.post("/console/tests/run", data={"csrf": csrf, "suite": yaml.safe_dump(doc)})
    assert r.status_code == 303, r.text
    events = Events(owner, f"/console/tests/runs/{r.headers['location'].rsplit('/', 1)[1]}/events")
    try:
        events.wait(lambda n, d: n == "done", timeout=60)
    finally:
        events.close()
    page = owner.get(r.headers["location"]).text
    assert "<caption class=\"muted\">Judged</caption>" in page and "2 of 3" in page and "0.6667" in page
    assert RUBRIC in page and "the reply ignores the rubric" in page
    assert "Simulated visitor <strong>&lt;i&gt;Ada&lt;/i&gt;</strong>, goal: a helmet" in page  # (text, not HTML)
    assert "the conversation ended: visitor_done" in page and "<i>Ada</i>" not in page
    for client in console.clients:
        client.close()


def test_the_published_schema_takes_simulated_and_judged_cases() -> None:
    import jsonschema

    from tests.test_suites_simulated import ESCALATES, simulated
    from widget_server.domain.testing.suite import suite_schema

    validator = jsonschema.Draft202012Validator(suite_schema())
    whole = simulated("p", ESCALATES, at_some_turn={"escalated": True}, judge={"rubric": "r", "k": 2})
    for doc in (judged("p", "P", k=3), whole):
        assert list(validator.iter_errors(doc)) == [], doc
        parse_suite(doc)  # (and the runner takes it)
    assert list(validator.iter_errors({**whole, "judge": {"k": 0}}))
    assert list(validator.iter_errors({**whole, "simulator": {"base_url": "http://x"}}))  # no endpoint in a suite
