"""The console's Tests page: the test cases saved from the playground by persona, each as YAML, downloaded one by
one or as a persona's suite file, deleted by those who may converse; on SQLite and PostgreSQL."""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest
import yaml
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from playwright.sync_api import Browser, expect, sync_playwright

from tests.conftest import Stack
from tests.support.console import (
    BROWSER_ARGS,
    CHROMIUM,
    Console,
    axe_violations,
    browser_sign_in,
    needs_chromium,
    token_for,
)

README_SHOTS = Path(__file__).resolve().parents[1] / "docs" / "screenshots"
CASE = {"name": "the rival's name never appears", "turns": [
    {"visitor": "Is RivalCycles cheaper?",
     "expect": {"refused": True, "guardrail": {"reason": "term.rival", "source": "input"}}},
    {"visitor": "Do you sell helmets?", "expect": {"refused": False, "contains": ["helmet"]}}]}


@pytest.fixture
def console_db(stack_factory: Callable[..., Stack], db_url: str) -> Iterator[Console]:
    c = Console(stack_factory(database_url=db_url))
    yield c
    for client in c.clients:
        client.close()


def persona(stack: Stack, **fields: Any) -> dict[str, Any]:
    slug = stack.persona(**fields)
    return httpx.get(f"{stack.url}/v1/personas/{slug}", headers=stack.auth).json()  # type: ignore[no-any-return]


def save(client: httpx.Client, persona_id: str, case: dict[str, Any]) -> httpx.Response:
    return client.post("/console/playground/cases", headers={"X-CSRF-Token": token_for(client)},
                       content=json.dumps({"persona": persona_id, **case}),
                       timeout=30)


def saved(client: httpx.Client, persona_id: str, case: dict[str, Any]) -> str:
    r = save(client, persona_id, case)
    assert r.status_code == 201, r.text
    return str(r.json()["id"])


def test_saved_cases_are_listed_by_persona_and_download_as_the_case_and_as_a_suite(console_db: Console) -> None:
    stack = console_db.stack
    spokes, other = persona(stack, name="Spokes", slug="spokes"), persona(stack, name="Bells", slug="bells")
    owner = console_db.signed_in("owner")
    first = saved(owner, spokes["id"], CASE)
    saved(owner, spokes["id"], {"name": "helmets", "turns": [{"visitor": "helmets?", "expect": {}}]})
    saved(owner, other["id"], {"name": "bells", "turns": [{"visitor": "a bell?"}]})
    page = owner.get("/console/tests").text
    assert page.index("Bells") < page.index("bells") < page.index("Spokes") < page.index("the rival&#39;s name")
    assert f'action="/console/tests/run/{spokes["id"]}"' in page and "Run 2 cases" in page  # (the runs: test_test_runs)
    one = owner.get(f"/console/tests/{first}")
    assert one.status_code == 200 and "term.rival" in one.text
    download = owner.get(f"/console/tests/{first}.yaml")
    assert download.status_code == 200 and download.headers["content-type"].startswith("application/yaml")
    assert "attachment" in download.headers["content-disposition"]
    assert yaml.safe_load(download.text) == CASE
    suite = yaml.safe_load(owner.get(f"/console/tests/suite/{spokes['id']}.yaml").text)
    assert suite["persona"] == spokes["slug"] and suite["policy"] == "tenant" and suite["suite"]
    assert [c["name"] for c in suite["cases"]] == ["the rival's name never appears", "helmets"]
    assert suite["cases"][0] == CASE


def test_deleting_needs_converse_and_the_token_and_asks_first(console_db: Console) -> None:
    stack = console_db.stack
    pid = persona(stack)["id"]
    owner = console_db.signed_in("owner")
    case_id = saved(owner, pid, CASE)
    page = owner.get("/console/tests").text
    assert f'action="/console/tests/{case_id}/delete"' in page and "data-confirm=" in page
    viewer = console_db.signed_in("viewer")
    assert "/delete" not in viewer.get("/console/tests").text
    r = viewer.post(f"/console/tests/{case_id}/delete", data={"csrf": token_for(viewer)})
    assert r.status_code == 403
    r = owner.post(f"/console/tests/{case_id}/delete", data={})
    assert r.status_code == 403  # no CSRF token
    assert owner.get(f"/console/tests/{case_id}").status_code == 200
    agent = console_db.signed_in("agent")
    r = agent.post(f"/console/tests/{case_id}/delete", data={"csrf": token_for(agent)})
    assert r.status_code == 303 and r.headers["location"] == "/console/tests?deleted=1"
    assert "The test case was deleted." in agent.get(r.headers["location"]).text
    assert owner.get(f"/console/tests/{case_id}").status_code == 404
    assert owner.get(f"/console/tests/suite/{pid}.yaml").status_code == 404  # no case left


def test_another_tenants_cases_are_not_found(console_db: Console) -> None:
    stack = console_db.stack
    pid = persona(stack)["id"]
    owner = console_db.signed_in("owner")
    case_id = saved(owner, pid, CASE)
    other = stack.tenant()
    stranger = console_db.signed_in("owner", tenant_id=other["tenant_id"])
    assert CASE["name"] not in stranger.get("/console/tests").text.replace("&#39;", "'")
    for path in (f"/console/tests/{case_id}", f"/console/tests/{case_id}.yaml", f"/console/tests/suite/{pid}.yaml"):
        r = stranger.get(path)
        assert r.status_code == 404 and "Not found" in r.text, path
    r = stranger.post(f"/console/tests/{case_id}/delete", data={"csrf": token_for(stranger)})
    assert r.status_code == 404
    assert owner.get(f"/console/tests/{case_id}").status_code == 200


def test_a_case_and_a_persona_with_script_in_their_names_are_text(console: Console) -> None:
    stack = console.stack
    pid = persona(stack, name="<script>alert(1)</script>")["id"]
    owner = console.signed_in("owner")
    case_id = saved(owner, pid, {"name": "<script>alert(2)</script>", "turns": [{"visitor": "<img src=x>"}]})
    for path in ("/console/tests", f"/console/tests/{case_id}"):
        text = owner.get(path).text
        assert "<script>alert" not in text and "<img src=x>" not in text
        assert "&lt;script&gt;alert(2)&lt;/script&gt;" in text
    assert "&lt;img src=x&gt;" in owner.get(f"/console/tests/{case_id}").text
    r = owner.get(f"/console/tests/{case_id}.yaml")
    assert yaml.safe_load(r.text)["name"] == "<script>alert(2)</script>"
    assert re.fullmatch(r'attachment; filename="[A-Za-z0-9._-]+"', r.headers["content-disposition"])


TEXT = st.text(max_size=40) | st.sampled_from(["", " ", "\x00", "\ud800", "\u202e", "x" * 300, "../../etc"])
JSONISH = st.recursive(st.none() | st.booleans() | st.integers() | TEXT,
                       lambda inner: st.lists(inner, max_size=3) | st.dictionaries(TEXT, inner, max_size=3),
                       max_leaves=10)
TURN = st.fixed_dictionaries({"visitor": JSONISH}, optional={"expect": JSONISH | st.fixed_dictionaries(
    {}, optional={k: JSONISH for k in ("refused", "escalated", "guardrail", "masked", "contains", "finish_reason")})})


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=JSONISH | st.fixed_dictionaries({"persona": st.just("@persona") | JSONISH, "name": JSONISH,
                                             "turns": st.lists(TURN, max_size=3) | JSONISH}))
@example(body={"\ud800": None})  # an unknown field that cannot be encoded: once a 500
def test_hostile_cases_get_a_clear_error_and_nothing_half_saved(console: Console, body: Any) -> None:
    stack = console.stack
    client, pid = _client(console)
    if isinstance(body, dict) and body.get("persona") == "@persona":
        body["persona"] = pid
    before = client.get("/console/tests").text.count("/delete")
    r = client.post("/console/playground/cases", headers={"X-CSRF-Token": token_for(client)},
                    content=json.dumps(body), timeout=30)
    assert r.status_code in (201, 400, 404), r.text
    after = client.get("/console/tests").text.count("/delete")
    if r.status_code == 201:
        assert after == before + 1
        case = yaml.safe_load(client.get(f"/console/tests/{r.json()['id']}.yaml").text)
        assert case["name"] == body["name"].strip()
    else:
        assert after == before and r.json()["error"]["message"]
    assert stack is console.stack


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(segment=st.text(st.characters(codec="utf-8", exclude_characters="/?#"), min_size=1, max_size=60))
def test_hostile_paths_are_not_found(console: Console, segment: str) -> None:
    client, _ = _client(console)
    quoted = "/console/tests/" + quote(segment, safe="")
    for path in (quoted, quoted + ".yaml", quoted.replace("/tests/", "/tests/suite/") + ".yaml"):
        r = client.get(path)
        assert r.status_code in (404, 200), (path, r.status_code)
        assert r.status_code != 500
    r = client.post(quoted + "/delete", data={"csrf": token_for(client)})
    assert r.status_code in (404, 405), r.text


_CLIENTS: dict[str, tuple[httpx.Client, str]] = {}


def _client(console: Console) -> tuple[httpx.Client, str]:
    """One signed-in owner per server (the examples of one test share it)."""
    key = console.stack.url
    if key not in _CLIENTS:
        _CLIENTS[key] = (console.signed_in("owner"), persona(console.stack)["id"])
    return _CLIENTS[key]


@pytest.fixture
def emails(console: Console) -> dict[str, str]:
    """Users and a saved case, made before the browser starts (Playwright's sync API holds the event loop)."""
    pid = persona(console.stack, name="Spokes")["id"]
    owner = console.signed_in("owner")
    case_id = saved(owner, pid, {**CASE, "name": "a rather long name for a test case that wraps " * 3})
    return {"owner": str(console.user("owner")["email"]), "case": case_id}


@pytest.fixture
def browser(console: Console, emails: dict[str, str]) -> Iterator[Browser]:
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=BROWSER_ARGS)
        yield b
        b.close()


@needs_chromium
@pytest.mark.parametrize("width", [1280, 390])
def test_the_tests_page_has_no_accessibility_violation_fits_390_px_runs_and_deletes_after_asking(
        console: Console, emails: dict[str, str], browser: Browser, width: int, tmp_path: Path) -> None:
    case_id = emails["case"]
    context = browser.new_context(viewport={"width": width, "height": 900}, bypass_csp=True)  # to inject axe
    page = context.new_page()
    browser_sign_in(page, console.url, emails["owner"])
    for path in ("/console/tests", f"/console/tests/{case_id}"):
        page.goto(console.url + path)
        found = axe_violations(page)
        assert found == [], json.dumps(found, indent=1)
        scroll = page.evaluate("document.documentElement.scrollWidth - document.documentElement.clientWidth")
        assert scroll <= 0, f"{scroll} px of horizontal scroll at {width} px on {path}"
    # Run the persona's cases: the run's page follows it live, then shows the case with its transcript.
    page.goto(console.url + "/console/tests")
    page.get_by_role("button", name="Run 1 case").click()
    expect(page.locator("#run-status")).to_have_text(re.compile("^(passed|failed)$"), timeout=30_000)
    expect(page.locator(".case .transcript")).to_contain_text("Is RivalCycles cheaper?")
    found = axe_violations(page)
    assert found == [], json.dumps(found, indent=1)
    scroll = page.evaluate("document.documentElement.scrollWidth - document.documentElement.clientWidth")
    assert scroll <= 0, f"{scroll} px of horizontal scroll at {width} px on the run's page"
    if width == 1280:
        shots = README_SHOTS if os.environ.get("WIDGET_SCREENSHOTS") == "1" else tmp_path
        page.screenshot(path=str(shots / "console-test-run.png"), full_page=True)
    page.goto(console.url + f"/console/tests/{case_id}")
    page.on("dialog", lambda dialog: dialog.accept())
    page.get_by_role("button", name="Delete this case").click()
    expect(page.get_by_role("status")).to_have_text("The test case was deleted.")
    expect(page.get_by_text("No test case yet.")).to_be_visible()
    context.close()
