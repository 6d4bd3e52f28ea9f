"""The console's Safety policy page over HTTP, through a real server on SQLite and PostgreSQL: none set (the
built-in default), saving only a valid policy (each error inline with its field path and line), removing it, and
"check this text" with the saved policy or an unsaved draft; roles, tenant isolation and hostile input; then the
page in Chromium: set by hand, its errors and their lines, a refusal and a masked span, axe-core, 390 px."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator

import httpx
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from playwright.sync_api import Browser, Page, expect, sync_playwright

from tests.conftest import Stack
from tests.support.console import BROWSER_ARGS, CHROMIUM, Console, axe_violations, needs_chromium, token_for
from tests.test_console_personas import element, signed_in_page

POLICY = """version: 1
blocked_terms:
  - {id: rival, terms: ["acme rival", "rivalco"], match: word, action: refuse}
pii: {entities: [email, phone], action: mask}
refusals:
  default: "Sorry, not that."
"""
BROKEN = """version: 1
blocked_terms:
  - id: rival
    terms: ["acme rival"]
    action: obliterate
patterns:
  - {id: ticket, regex: 'TCK-(\\d{6}', action: mask}
surprise: true
"""


@pytest.fixture
def any_console(stack_factory: Callable[..., Stack], db_url: str) -> Iterator[Console]:
    c = Console(stack_factory(database_url=db_url))
    yield c
    for client in c.clients:
        client.close()


def saved(stack: Stack) -> httpx.Response:
    return httpx.get(f"{stack.url}/v1/safety-policy", headers=stack.auth)


def state(stack: Stack) -> object:
    """The stored policy (and when it was saved), or None."""
    r = saved(stack)
    return r.json() if r.status_code == 200 else None


def post(client: httpx.Client, path: str, data: dict[str, str]) -> httpx.Response:
    return client.post(path, data={**data, "csrf": token_for(client, "/console/policy")})


def check(client: httpx.Client, text: str, source: str = "input", use: str = "saved", policy: str = "") -> str:
    r = post(client, "/console/policy/check", {"text": text, "source": source, "use": use, "policy": policy})
    assert r.status_code == 200, r.text
    return str(element(r.text, "check-result")["text"])


def test_an_owner_sets_a_policy_sees_it_and_removes_it(any_console: Console) -> None:
    stack, owner = any_console.stack, any_console.signed_in("owner")
    page = owner.get("/console/policy")
    assert page.status_code == 200 and "No policy is set" in page.text and "built-in default" in page.text
    assert saved(stack).status_code == 404
    r = post(owner, "/console/policy", {"policy": POLICY})
    assert r.status_code == 303 and r.headers["location"] == "/console/policy?notice=saved", r.text
    stored = saved(stack).json()["policy"]
    assert stored["blocked_terms"][0]["terms"] == ["acme rival", "rivalco"] and stored["refusals"]["default"] == \
        "Sorry, not that."
    page = owner.get(r.headers["location"])
    assert "The policy was saved" in page.text and "A policy is set" in page.text
    assert yaml.safe_load(element(page.text, "policy-yaml")["text"]) == stored  # the editor holds what is saved
    r = post(owner, "/console/policy/remove", {})
    assert r.status_code == 303 and r.headers["location"] == "/console/policy?notice=removed"
    assert saved(stack).status_code == 404 and "No policy is set" in owner.get("/console/policy").text


def test_an_invalid_policy_is_not_saved_and_each_error_names_its_field_and_line(console: Console) -> None:
    stack, owner = console.stack, console.signed_in("owner")
    assert post(owner, "/console/policy", {"policy": POLICY}).status_code == 303
    before = saved(stack).json()
    r = post(owner, "/console/policy", {"policy": BROKEN})
    assert r.status_code == 422 and saved(stack).json() == before
    assert element(r.text, "policy-yaml")["text"] == BROKEN  # the draft is kept as typed
    editor = element(r.text, "policy-yaml")["attrs"]
    assert editor["aria-invalid"] == "true" and "policy-errors" in editor["aria-describedby"]
    errors = element(r.text, "policy-errors")["text"]
    for field, line in [("blocked_terms.0.action", 5), ("patterns.0.regex", 7), ("surprise", 8)]:
        assert field in errors and f"line {line}" in errors, (field, errors)
    assert "not a valid RE2 regular expression" in errors and "Extra inputs are not permitted" in errors
    assert 'data-line="5"' in r.text


@pytest.mark.parametrize(("text", "shown"), [
    ("version: 1\nblocked_terms: [\n", "this is not valid YAML"),
    ("- a list\n", "expected an object"),
    ("version: 1\nx: &a [1]\ny: *a\n", "anchors and aliases"),
    ("version: 2\n", "version"),
])
def test_not_a_policy_is_refused_with_a_clear_message(console: Console, text: str, shown: str) -> None:
    owner = console.signed_in("owner")
    r = post(owner, "/console/policy", {"policy": text})
    assert r.status_code in (400, 422) and shown in element(r.text, "policy-errors")["text"], r.text
    assert saved(console.stack).status_code == 404


def test_check_this_text_shows_a_refusal_and_a_masked_span(console: Console) -> None:
    owner = console.signed_in("owner")
    none = check(owner, "hello rivalco")
    assert "allow" in none and "no policy (the built-in default" in none
    assert post(owner, "/console/policy", {"policy": POLICY}).status_code == 303
    refused = check(owner, "is RivalCo cheaper? mail me at ann@example.com")
    assert "refuse" in refused and "term.rival" in refused and "Sorry, not that." in refused
    assert "[email]" in refused and "pii.email" in refused  # the masks of a refused message are reported too
    r = post(owner, "/console/policy/check", {"text": "write to ann@example.com today", "source": "input",
                                              "use": "saved", "policy": ""})
    result = element(r.text, "check-result")["text"]
    assert "mask" in result and "pii.email" in result and "ann@example.com" in result
    assert "<mark title=\"pii.email\"><span class=\"visually-hidden\">masked, pii.email: </span>[email]</mark>" \
        in r.text
    assert "write to " in r.text and " today" in r.text
    out = check(owner, "call me on +1 415 555 0100", source="output")
    assert "mask" in out and "pii.phone" in out and "as a reply" in out


def test_a_draft_is_checked_without_being_saved(console: Console) -> None:
    stack, owner = console.stack, console.signed_in("owner")
    assert post(owner, "/console/policy", {"policy": POLICY}).status_code == 303
    before = saved(stack).json()
    draft = POLICY.replace('"rivalco"', '"rivalco", "megacorp"')
    r = post(owner, "/console/policy/check", {"text": "megacorp is better", "source": "input", "use": "draft",
                                              "policy": draft})
    assert r.status_code == 200 and "term.rival" in element(r.text, "check-result")["text"]
    assert "the draft in the editor (not saved)" in element(r.text, "check-result")["text"]
    assert element(r.text, "policy-yaml")["text"] == draft and saved(stack).json() == before
    assert "allow" in check(owner, "megacorp is better")  # the saved policy does not have it
    r = post(owner, "/console/policy/check", {"text": "hi", "source": "input", "use": "draft", "policy": BROKEN})
    assert r.status_code == 422 and "patterns.0.regex" in element(r.text, "policy-errors")["text"]
    assert 'id="check-result"' not in r.text


@pytest.mark.parametrize("role", ["viewer", "agent"])
def test_every_role_may_check_but_only_an_owner_saves_or_removes(console: Console, role: str) -> None:
    stack, owner, other = console.stack, console.signed_in("owner"), console.signed_in(role)
    assert post(owner, "/console/policy", {"policy": POLICY}).status_code == 303
    before = saved(stack).json()
    page = other.get("/console/policy")
    assert page.status_code == 200 and "only an owner can save" in page.text and "Save the policy" not in page.text
    assert "Remove the policy" not in page.text
    assert "refuse" in check(other, "rivalco", use="draft", policy=POLICY)
    for path in ("/console/policy", "/console/policy/remove"):
        r = post(other, path, {"policy": "version: 1\n"})
        assert r.status_code == 403 and "cannot do this" in r.text, path
    assert saved(stack).json() == before


def test_a_tenant_sees_and_checks_only_its_own_policy(console: Console) -> None:
    stack, owner = console.stack, console.signed_in("owner")
    assert post(owner, "/console/policy", {"policy": POLICY}).status_code == 303
    before = saved(stack).json()
    stranger = console.signed_in("owner", tenant_id=stack.tenant()["tenant_id"])
    page = stranger.get("/console/policy")
    assert "No policy is set" in page.text and "Sorry, not that." not in page.text
    assert "allow" in check(stranger, "rivalco")
    assert post(stranger, "/console/policy/remove", {}).status_code == 404  # none of its own to remove
    assert saved(stack).json() == before


def test_check_refuses_a_bad_source_or_a_huge_text_beside_the_box(console: Console) -> None:
    owner = console.signed_in("owner")
    for data, shown in [({"source": "sideways", "use": "saved", "text": "x"}, "choose where the text comes from"),
                        ({"source": "input", "use": "somebody's", "text": "x"}, "choose the policy to check with"),
                        ({"source": "input", "use": "saved", "text": "x" * 100_001}, "longer than 100000")]:
        r = post(owner, "/console/policy/check", data)
        assert r.status_code == 400 and shown in element(r.text, "check-error")["text"]


POLICY_PARTS = st.recursive(st.one_of(st.none(), st.booleans(), st.integers(-5, 5000), st.text(max_size=20),
                                      st.sampled_from(["refuse", "mask", "block", "escalate", "input", "output",
                                                       "email", "word", "(a+)+$", "TCK-\\d{6}", "[", ""])),
                            lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                    st.dictionaries(st.text(max_size=12), inner, max_size=4)),
                            max_leaves=20)
SECTIONS = st.fixed_dictionaries({"version": st.sampled_from([1, 1, 2, "1"])}, optional={
    "blocked_terms": st.lists(st.fixed_dictionaries({"id": st.text(max_size=8), "terms": POLICY_PARTS},
                                                    optional={"action": POLICY_PARTS}), max_size=2),
    "patterns": st.lists(st.fixed_dictionaries({"id": st.sampled_from(["p", "q", "p"]), "regex": POLICY_PARTS}),
                         max_size=2),
    "pii": POLICY_PARTS, "input": POLICY_PARTS, "escalation": POLICY_PARTS, "refusals": POLICY_PARTS,
    "nonsense": POLICY_PARTS})
DRAFTS = st.one_of(SECTIONS.map(lambda d: yaml.safe_dump(d, allow_unicode=True)), st.text(max_size=200))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(draft=DRAFTS, sample=st.text(max_size=200), source=st.sampled_from(["input", "output", "x", ""]),
       use=st.sampled_from(["saved", "draft", "other"]))
def test_hostile_policies_and_checks_get_a_clear_answer_and_never_half_a_save(console: Console, draft: str,
                                                                            sample: str, source: str,
                                                                            use: str) -> None:
    stack = console.stack
    if not hasattr(console, "owner"):
        console.owner = console.signed_in("owner")  # type: ignore[attr-defined]
    owner: httpx.Client = console.owner  # type: ignore[attr-defined]
    token = token_for(owner, "/console/policy")
    before = state(stack)
    r = owner.post("/console/policy", data={"policy": draft, "csrf": token})
    assert r.status_code in (303, 400, 422), r.text
    if r.status_code == 303:
        assert saved(stack).status_code == 200
    else:
        assert "policy-errors" in r.text and state(stack) == before
    r = owner.post("/console/policy/check", data={"policy": draft, "text": sample, "source": source, "use": use,
                                                  "csrf": token})
    assert r.status_code in (200, 400, 422), r.text
    assert ('id="check-result"' in r.text) == (r.status_code == 200)


# In Chromium (users made before the browser starts: Playwright's sync API holds this thread's event loop).

@pytest.fixture
def people(console: Console) -> dict[str, str]:
    return {role: str(console.user(role)["email"]) for role in ("owner", "viewer")}


@pytest.fixture
def chromium(people: dict[str, str]) -> Iterator[Browser]:
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=BROWSER_ARGS)
        yield b
        b.close()


@needs_chromium
def test_an_owner_sets_a_policy_in_the_browser_and_checks_a_text(console: Console, people: dict[str, str],
                                                                 chromium: Browser) -> None:
    stack = console.stack
    with signed_in_page(chromium, stack.url, people["owner"], confirm=True) as (page, problems):
        page.goto(stack.url + "/console/policy")
        expect(page.locator(".policy-state")).to_contain_text("No policy is set")
        editor = page.get_by_label("The policy, in YAML")
        editor.fill(BROKEN)
        page.get_by_role("button", name="Save the policy").click()
        errors = page.locator("#policy-errors")
        expect(errors).to_contain_text("patterns.0.regex")
        expect(editor).to_have_attribute("aria-invalid", "true")
        expect(editor).to_have_value(BROKEN)
        errors.get_by_role("link", name="line 7").click()  # the caret goes to the line with the bad regex
        expect(editor).to_be_focused()
        chosen = editor.evaluate("e => e.value.slice(e.selectionStart, e.selectionEnd)")
        assert chosen == BROKEN.splitlines()[6]
        assert saved(stack).status_code == 404

        editor.fill(POLICY)
        page.get_by_role("button", name="Save the policy").click()
        expect(page.get_by_role("status")).to_contain_text("The policy was saved")
        assert saved(stack).json()["policy"]["refusals"]["default"] == "Sorry, not that."

        page.get_by_label("Text", exact=True).fill("Is RivalCo cheaper?")
        page.get_by_role("button", name="Check").click()
        result = page.locator("#check-result")
        expect(result.locator("h3")).to_contain_text("refuse")
        expect(result).to_contain_text("term.rival")
        expect(result).to_contain_text("Sorry, not that.")
        page.get_by_label("Text", exact=True).fill("write to ann@example.com please")
        page.get_by_label("a persona's reply (output)").check()
        page.get_by_role("button", name="Check").click()
        expect(result.locator("mark").first).to_have_text("masked, pii.email: [email]")
        expect(result).to_contain_text("ann@example.com")

        assert problems == []
        page.get_by_role("button", name="Remove the policy").click()  # asks first
        expect(page.get_by_role("status")).to_contain_text("The policy was removed")
        assert saved(stack).status_code == 404
        assert problems == ["dialog: Remove the safety policy? The built-in default (no checks) applies at once."]


@needs_chromium
@pytest.mark.parametrize("width", [1280, 390])
def test_the_policy_page_passes_axe_and_fits_its_width_in_every_state(console: Console, people: dict[str, str],
                                                                      chromium: Browser, width: int) -> None:
    stack = console.stack
    with signed_in_page(chromium, stack.url, people["owner"], width, bypass_csp=True) as (page, _):
        page.goto(stack.url + "/console/policy")  # none set
        states = ["none set"]
        assert_clean(page, states[-1])
        page.get_by_label("The policy, in YAML").fill(BROKEN)
        page.get_by_role("button", name="Save the policy").click()
        expect(page.locator("#policy-errors")).to_be_visible()
        assert_clean(page, "errors")
        page.get_by_label("The policy, in YAML").fill(POLICY)
        page.get_by_role("button", name="Save the policy").click()
        page.get_by_label("Text", exact=True).fill("RivalCo? write to ann@example.com")
        page.get_by_role("button", name="Check").click()
        expect(page.locator("#check-result")).to_be_visible()
        assert_clean(page, "a result")
    with signed_in_page(chromium, stack.url, people["viewer"], width, bypass_csp=True) as (page, _):
        page.goto(stack.url + "/console/policy")
        assert_clean(page, "a viewer")


def assert_clean(page: Page, state: str) -> None:
    found = axe_violations(page)
    assert found == [], (state, json.dumps(found, indent=1))
    widths = page.evaluate("[document.documentElement.scrollWidth, window.innerWidth]")
    assert widths[0] <= widths[1], (state, widths)
