"""The console's playground: a turn through the widget's own pipeline (guardrails on input and output, the same
model call, messages stored, events on channel `console`) streamed to the page with its decision trace; drafts
run and saved nowhere; compare mode and save as test case in Chromium. HTTP tests against a real server and the
fake upstream (model `echo` says the message back), browser tests in Debian's Chromium."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import yaml
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from playwright.sync_api import Browser, Page, expect, sync_playwright

from tests.conftest import Stack
from tests.support.console import (
    BROWSER_ARGS,
    CHROMIUM,
    PASSWORD,
    Console,
    axe_violations,
    browser_sign_in,
    needs_chromium,
    token_for,
)
from tests.test_prompt import sse_events

POLICY = {
    "version": 1,
    "blocked_terms": [{"id": "rival", "terms": ["rivalcycles"], "action": "refuse"}],
    "pii": {"entities": ["email"], "action": "mask"},
    "topics": {
        "allowed": [{"id": "bikes", "examples": ["do you sell helmets", "how much is a bike service",
                                                "what bikes do you have", "can you fix a puncture"]}],
        "denied": [{"id": "medical", "examples": ["what dose of ibuprofen should I take",
                                                  "which painkiller is best for a headache"],
                    "refusal": "I can't give medical advice."}],
        "off_topic": "refuse"},
}


def set_policy(stack: Stack, doc: dict[str, Any] | None = None) -> None:
    r = httpx.put(f"{stack.url}/v1/safety-policy", json=doc or POLICY, headers=stack.auth, timeout=120)
    assert r.status_code == 200, r.text


def persona_id(stack: Stack, slug: str) -> str:
    r = httpx.get(f"{stack.url}/v1/personas/{slug}", headers=stack.auth)
    assert r.status_code == 200, r.text
    return str(r.json()["id"])


def send(client: httpx.Client, token: str, **body: Any) -> httpx.Response:
    return client.post("/console/playground/turn", content=json.dumps(body), timeout=60,  # lone surrogates escaped
                       headers={"X-CSRF-Token": token, "Accept": "text/event-stream",
                                "Content-Type": "application/json"})


def frames(r: httpx.Response) -> list[dict[str, Any]]:
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/event-stream")
    return [data for _, data in sse_events(r.text)]


def one(found: list[dict[str, Any]], type_: str) -> dict[str, Any]:
    hits = [f for f in found if f["type"] == type_]
    assert len(hits) == 1, [f["type"] for f in found]
    return hits[0]


@pytest.fixture
def owner(console: Console) -> tuple[httpx.Client, str]:
    client = console.signed_in("owner")
    return client, token_for(client, "/console/playground")


def test_a_turn_streams_the_reply_and_its_trace_and_records_events_on_the_console_channel(
        console: Console, owner: tuple[httpx.Client, str]) -> None:
    stack = console.stack
    pid = persona_id(stack, stack.persona())
    client, token = owner
    got = frames(send(client, token, persona=pid, message="Do you sell helmets for children?"))
    types = [f["type"] for f in got]
    assert types[0] == "conversation" and types[-1] == "trace"
    assert types.index("message.accepted") < types.index("reply.delta") < types.index("reply.end")
    text = "".join(f["text"] for f in got if f["type"] == "reply.delta")
    assert text == "Do you sell helmets for children?"  # the echo, streamed
    trace = one(got, "trace")
    assert trace["provider_called"] is True and trace["rules"] == [] and trace["topics"] is None
    assert trace["model"] == "echo" and trace["timing"]["ttft_ms"] is not None and trace["usage"]["output_tokens"] > 0
    assert trace["expect"] == {"refused": False, "escalated": False, "contains": ["Do you sell helmets for children?"],
                               "finish_reason": "stop", "provider_called": True}
    conv = got[0]["conversation_id"]
    events = stack.wait_events(lambda es: any(e["type"] == "reply.completed" for e in es), conversation=conv)
    assert {e["channel"] for e in events} == {"console"}
    assert {"conversation.started", "message.received", "reply.completed"} <= {e["type"] for e in events}
    stored = httpx.get(f"{stack.url}/v1/conversations/{conv}", headers=stack.auth).json()
    assert stored["channel"] == "console"
    assert [m["role"] for m in stored["messages"]] == ["visitor", "persona"]


def test_a_refusal_shows_its_rule_and_the_topic_scores_and_no_model_call(
        console: Console, owner: tuple[httpx.Client, str]) -> None:
    stack = console.stack
    set_policy(stack)
    pid = persona_id(stack, stack.persona())
    client, token = owner
    got = frames(send(client, token, persona=pid, message="What dose of ibuprofen should I take?"))
    trace = one(got, "trace")
    assert one(got, "guardrail")["text"] == "I can't give medical advice."
    assert trace["rules"] == [{"action": "refuse", "reason": "topic.denied.medical", "source": "input"}]
    assert trace["provider_called"] is False and trace["timing"]["ttft_ms"] is None
    topics = trace["topics"]
    assert topics["verdict"] == "denied" and topics["topic"] == "medical"
    medical = next(t for t in topics["denied_topics"] if t["id"] == "medical")
    th = topics["thresholds"]
    assert medical["closest"] >= th["deny_close"] or medical["pair"] >= th["deny_pair"]
    assert [t["id"] for t in topics["allowed_topics"]] == ["bikes"]
    assert 0.35 <= th["off_topic"] <= 0.55
    assert trace["expect"]["refused"] is True
    assert trace["expect"]["guardrail"] == {"action": "refuse", "reason": "topic.denied.medical", "source": "input"}
    # the rival's name stops before the topics are read, and the model is not called either
    got = frames(send(client, token, persona=pid, message="Is RivalCycles cheaper?"))
    trace = one(got, "trace")
    assert trace["rules"] == [{"action": "refuse", "reason": "term.rival", "source": "input"}]
    assert trace["topics"] is None and trace["provider_called"] is False


def test_a_masked_email_is_traced_with_its_span_and_masked_in_the_echoed_reply(
        console: Console, owner: tuple[httpx.Client, str]) -> None:
    stack = console.stack
    set_policy(stack)
    pid = persona_id(stack, stack.persona())
    client, token = owner
    message = "Do you sell helmets? Write to me at ann@example.com"
    got = frames(send(client, token, persona=pid, message=message))
    trace = one(got, "trace")
    mask = trace["rules"][0]
    assert mask["action"] == "mask" and mask["reason"] == "pii.email" and mask["source"] == "input"
    span = mask["spans"][0]
    assert message[span["start"]:span["end"]] == "ann@example.com"
    assert one(got, "message.accepted")["text"] == "Do you sell helmets? Write to me at [email]"
    assert trace["topics"]["verdict"] == "on_topic"
    assert trace["expect"]["masked"] == ["email"] and trace["expect"]["refused"] is False
    # the model got the masked text, so its echo carries the label where the address was
    reply = "".join(f["text"] for f in got if f["type"] == "reply.delta")
    assert "ann@example.com" not in reply and "[email]" in reply


def test_what_the_output_check_masks_is_marked_in_the_reply(console: Console,
                                                            owner: tuple[httpx.Client, str]) -> None:
    stack = console.stack
    set_policy(stack, {"version": 1, "pii": {"entities": ["email"], "applies_to": ["output"]}})
    pid = persona_id(stack, stack.persona())
    client, token = owner
    got = frames(send(client, token, persona=pid, message="write to ann@example.com please"))
    reply = "".join(f["text"] for f in got if f["type"] == "reply.delta")
    trace = one(got, "trace")
    assert reply == "write to [email] please"
    assert trace["rules"] == [{"action": "mask", "reason": "pii.email", "source": "output"}]
    assert trace["output_spans"] == [{"start": 9, "end": 16, "reason": "pii.email"}]
    assert trace["expect"]["masked"] == ["email"]


def test_a_conversation_goes_on_over_turns_and_is_its_users_alone(console: Console,
                                                                  owner: tuple[httpx.Client, str]) -> None:
    stack = console.stack
    pid = persona_id(stack, stack.persona())
    client, token = owner
    conv = frames(send(client, token, persona=pid, message="first"))[0]["conversation_id"]
    again = frames(send(client, token, persona=pid, message="second", conversation_id=conv))
    assert again[0]["conversation_id"] == conv
    other = console.signed_in("agent")
    r = send(other, token_for(other, "/console/playground"), persona=pid, message="third", conversation_id=conv)
    assert r.status_code == 404 and r.json()["error"]["code"] == "conversation.not_found"
    widget_conv = stack.turn(stack.persona(), "hello")[0]["conversation_id"]  # not a console conversation
    r = send(client, token, persona=pid, message="x", conversation_id=widget_conv)
    assert r.status_code == 404


def test_a_viewer_sees_the_playground_but_cannot_send(console: Console) -> None:
    stack = console.stack
    pid = persona_id(stack, stack.persona())
    viewer = console.signed_in("viewer")
    page = viewer.get("/console/playground")
    assert page.status_code == 200 and "can look at the playground but not send" in page.text
    r = send(viewer, token_for(viewer, "/console/playground"), persona=pid, message="hello")
    assert r.status_code == 403 and r.json()["error"]["code"] == "console.forbidden"
    assert stack.events(persona=pid) == []  # no conversation was started
    r = viewer.post("/console/playground/turn", json={"persona": pid, "message": "hi"})  # and without a token
    assert r.status_code == 403


def test_another_tenants_persona_cannot_be_used(console: Console, owner: tuple[httpx.Client, str]) -> None:
    stack = console.stack
    other = stack.tenant()
    r = httpx.post(f"{stack.url}/v1/personas", json={"name": "Theirs", "slug": "theirs"},
                   headers={"Authorization": f"Bearer {other['sk']}"})
    theirs = r.json()["id"]
    client, token = owner
    assert client.get(f"/console/playground?persona={theirs}").status_code == 404
    r = send(client, token, persona=theirs, message="hello")
    assert r.status_code == 404 and r.json()["error"]["code"] == "persona.not_found"
    r = client.post("/console/playground/cases", headers={"X-CSRF-Token": token},
                    json={"persona": theirs, "name": "x", "turns": [{"visitor": "hi", "expect": {}}]})
    assert r.status_code == 404


def test_a_draft_runs_against_the_turn_and_is_saved_nowhere(console: Console,
                                                           owner: tuple[httpx.Client, str]) -> None:
    stack = console.stack
    slug = stack.persona(system_prompt="You sell bikes.")
    pid = persona_id(stack, slug)
    client, token = owner
    message = "What dose of ibuprofen should I take?"
    saved = one(frames(send(client, token, persona=pid, message=message)), "trace")
    assert saved["rules"] == [] and saved["provider_called"] is True  # no policy: let through
    topics = yaml.safe_dump(POLICY["topics"])
    draft = {"system_prompt": "You sell bikes, and only bikes.", "topics": topics, "policy": ""}
    drafted = one(frames(send(client, token, persona=pid, message=message, draft=draft)), "trace")
    assert drafted["rules"] == [{"action": "refuse", "reason": "topic.denied.medical", "source": "input"}]
    doc = httpx.get(f"{stack.url}/v1/personas/{slug}", headers=stack.auth).json()
    assert doc["system_prompt"] == "You sell bikes." and doc["topics"]["denied"] == []
    assert httpx.get(f"{stack.url}/v1/safety-policy", headers=stack.auth).status_code == 404
    # a draft policy that does not validate names its field, and no stream starts
    bad = send(client, token, persona=pid, message="hi",
               draft={"policy": "version: 1\nblocked_terms:\n  - {id: x, terms: []}\n"})
    assert bad.status_code == 422 and bad.json()["error"]["details"]["draft"] == "policy"
    assert bad.json()["error"]["details"]["errors"][0]["field"].startswith("blocked_terms.0")
    bad = send(client, token, persona=pid, message="hi", draft={"topics": "allowed: [{id: a}]"})
    assert bad.status_code == 422 and bad.json()["error"]["details"]["draft"] == "topics"
    bad = send(client, token, persona=pid, message="hi", draft={"policy": "a: &x [1]\nb: *x\n"})
    assert bad.status_code == 400 and "aliases" in bad.json()["error"]["message"]
    bad = send(client, token, persona=pid, message="hi", draft={"policy": "version: [1"})
    assert bad.status_code == 400 and "(line 2, column 1)" in bad.json()["error"]["message"]


def test_the_draft_prompt_reaches_the_model(console: Console, owner: tuple[httpx.Client, str],
                                            upstream: Any) -> None:
    fake = upstream[0]
    stack = console.stack
    pid = persona_id(stack, stack.persona(system_prompt="Saved prompt."))
    client, token = owner
    frames(send(client, token, persona=pid, message="canary-7", draft={"system_prompt": "Drafted prompt."}))
    sent = next(r for r in reversed(fake.requests) if "canary-7" in json.dumps(r))
    assert "Drafted prompt." in json.dumps(sent) and "Saved prompt." not in json.dumps(sent)


def test_a_persona_name_and_a_message_with_script_are_text(console: Console,
                                                          owner: tuple[httpx.Client, str]) -> None:
    stack = console.stack
    pid = persona_id(stack, stack.persona(name="<script>alert(1)</script>"))
    client, token = owner
    page = client.get(f"/console/playground?persona={pid}").text
    assert "<script>alert(1)</script>" not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    got = frames(send(client, token, persona=pid, message="<script>alert(2)</script>"))
    assert one(got, "message.accepted")["text"] == "<script>alert(2)</script>"  # JSON for textContent, not HTML


def test_save_as_test_case_validates_the_case(console: Console, owner: tuple[httpx.Client, str]) -> None:
    stack = console.stack
    pid = persona_id(stack, stack.persona())
    client, token = owner
    headers = {"X-CSRF-Token": token}
    r = client.post("/console/playground/cases", headers=headers, json={"persona": pid, "name": "ok", "turns": [
        {"visitor": "hi", "expect": {"refused": False, "contains": ["hi"]}}]})
    assert r.status_code == 201 and r.json()["url"].startswith("/console/tests/")
    for turns, field in [([], "turns"), ([{"visitor": ""}], "turns.0.visitor"),
                         ([{"visitor": "x", "expect": {"refused": "no"}}], "turns.0.expect.refused"),
                         ([{"visitor": "x", "expect": {"nope": 1}}], "turns.0.expect.nope"),
                         ([{"visitor": "a\x00b"}], "turns.0.visitor")]:
        r = client.post("/console/playground/cases", headers=headers,
                        json={"persona": pid, "name": "n", "turns": turns})
        assert r.status_code == 400, (turns, r.text)
        assert r.json()["error"]["details"]["errors"][0]["field"] == field
    viewer = console.signed_in("viewer")
    r = viewer.post("/console/playground/cases", headers={"X-CSRF-Token": token_for(viewer)},
                    json={"persona": pid, "name": "v", "turns": [{"visitor": "hi"}]})
    assert r.status_code == 403
    rows = client.get("/console/tests").text
    assert rows.count("/delete") == 1  # only the owner's case was saved


JSONISH = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=30),
                       lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner,
                                                                                    max_size=4), max_leaves=12)
FIELD_VALUES = st.one_of(JSONISH, st.sampled_from(["", " ", "\x00", "\ud800", "\u202e", "a" * 30000]))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=st.one_of(
    JSONISH,
    st.fixed_dictionaries({"persona": FIELD_VALUES, "message": FIELD_VALUES},
                          optional={"conversation_id": FIELD_VALUES, "draft": FIELD_VALUES}),
    st.fixed_dictionaries({"persona": st.just("@persona"), "message": FIELD_VALUES},
                          optional={"conversation_id": FIELD_VALUES,
                                    "draft": st.dictionaries(st.sampled_from(["system_prompt", "greeting", "topics",
                                                                              "policy", "other"]), FIELD_VALUES,
                                                             max_size=3)}),
))
@example(body={"\ud800": None})  # an unknown field that cannot be encoded: once a 500
@example(body={"persona": "@persona", "message": "hi", "draft": {"\ud800": "x"}})
def test_hostile_turn_bodies_get_a_clear_error_or_a_stream_that_ends(
        console: Console, owner: tuple[httpx.Client, str], body: Any) -> None:
    client, token = owner
    if isinstance(body, dict) and body.get("persona") == "@persona":
        body["persona"] = _persona(console)
    r = send(client, token, **body) if isinstance(body, dict) else client.post(
        "/console/playground/turn", content=json.dumps(body), timeout=60, headers={"X-CSRF-Token": token})
    assert r.status_code != 500, r.text
    assert r.status_code in (200, 400, 404, 413, 422), r.text
    if r.status_code == 200:
        last = frames(r)[-1]
        assert last["type"] in ("trace", "error")
    else:
        error = r.json()["error"]
        assert error["message"] and error["code"] != "internal"


_PERSONAS: dict[str, str] = {}


def _persona(console: Console) -> str:
    key = console.stack.url
    if key not in _PERSONAS:
        _PERSONAS[key] = persona_id(console.stack, console.stack.persona())
    return _PERSONAS[key]


# Chromium


@pytest.fixture
def owner_email(console: Console) -> str:
    """Made before the browser starts: while Playwright's sync API runs, its event loop holds this thread."""
    return str(console.user("owner")["email"])


@pytest.fixture
def browser(console: Console, owner_email: str) -> Iterator[Browser]:
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=BROWSER_ARGS)
        yield b
        b.close()


def open_page(browser: Browser, console: Console, email: str, width: int = 1280,
              bypass_csp: bool = False) -> tuple[Page, list[str]]:
    context = browser.new_context(viewport={"width": width, "height": 900}, bypass_csp=bypass_csp)
    page = context.new_page()
    csp: list[str] = []
    page.on("console", lambda m: csp.append(m.text) if "Content Security Policy" in m.text else None)
    browser_sign_in(page, console.url, email, PASSWORD)
    return page, csp


def chat(page: Page, text: str) -> None:
    box = page.get_by_label("Message", exact=True)
    box.fill(text)
    box.press("Enter")
    expect(page.get_by_role("status").filter(has_text="Reply complete.")).to_be_visible(timeout=60_000)


@needs_chromium
def test_in_chromium_a_reply_streams_in_and_a_refusal_and_a_mask_show_their_trace(
        console: Console, owner_email: str, browser: Browser) -> None:
    stack = console.stack
    set_policy(stack)
    pid = persona_id(stack, stack.persona(name="Echo"))
    page, csp = open_page(browser, console, owner_email)
    page.goto(f"{console.url}/console/playground?persona={pid}")
    expect(page.get_by_role("heading", name="Playground")).to_be_visible()
    chat(page, "What dose of ibuprofen should I take?")
    saved = page.locator('.column[data-variant="saved"]')
    reply = saved.locator(".msg.persona").last
    expect(reply.locator(".text")).to_have_text("I can't give medical advice.")
    trace = reply.locator("details.trace")
    expect(trace.get_by_text("topic.denied.medical")).to_be_visible()
    expect(trace.get_by_role("table", name="Topic scores").get_by_role("cell", name="medical")).to_be_visible()
    expect(trace.get_by_role("row", name=re.compile("Model called no"))).to_be_visible()
    chat(page, "Do you sell helmets? Mail me at ann@example.com")
    visitor = saved.locator(".msg.visitor").last
    expect(visitor.locator("mark.masked")).to_have_text("ann@example.com")
    expect(visitor.get_by_text("Stored and sent as: Do you sell helmets? Mail me at [email]")).to_be_visible()
    assert csp == []


@needs_chromium
def test_in_chromium_the_reply_arrives_token_by_token(console: Console, owner_email: str, browser: Browser) -> None:
    stack = console.stack
    pid = persona_id(stack, stack.persona(model="pace-40-15"))
    page, csp = open_page(browser, console, owner_email)
    page.goto(f"{console.url}/console/playground?persona={pid}")
    box = page.get_by_label("Message", exact=True)
    box.fill("go")
    box.press("Enter")
    text = page.locator('.column[data-variant="saved"] .msg.persona .text').last
    expect(text).to_contain_text("w3")  # part of the reply is shown ...
    assert "w15" not in text.inner_text()  # ... while the rest is still coming
    expect(text).to_contain_text("w15")
    expect(page.get_by_role("status").filter(has_text="Reply complete.")).to_be_visible()
    assert csp == []


@needs_chromium
def test_in_chromium_compare_marks_where_the_draft_differs_and_the_case_saved_lands_on_the_tests_page(
        console: Console, owner_email: str, browser: Browser) -> None:
    stack = console.stack
    pid = persona_id(stack, stack.persona(name="Spokes"))
    page, csp = open_page(browser, console, owner_email)
    page.goto(f"{console.url}/console/playground?persona={pid}")
    page.get_by_label("Persona topics (draft, YAML)").fill(yaml.safe_dump(POLICY["topics"]))
    page.get_by_label("both, side by side (compare)").check()
    chat(page, "What dose of ibuprofen should I take?")
    saved = page.locator('.column[data-variant="saved"] .msg.persona').last
    drafted = page.locator('.column[data-variant="draft"] .msg.persona').last
    expect(saved.locator(".text")).to_have_text("What dose of ibuprofen should I take?")  # no topics: echoed
    expect(drafted.locator(".text")).to_have_text("I can't give medical advice.")
    expect(drafted.locator(".diff")).to_contain_text("Differs from the other version: the text and the decisions")
    expect(saved.locator(".diff")).to_contain_text("draft: refuse topic.denied.medical (input)")
    chat(page, "Do you sell helmets?")
    expect(page.locator('.column[data-variant="draft"] .msg.persona').last.get_by_text(
        "Same text and decisions in both versions")).to_be_visible()
    # save the draft's exchange as a test case
    page.get_by_label("Test case name").fill("medical <b>questions</b> are refused")
    page.get_by_label("Exchange to save").select_option("draft")
    page.get_by_role("button", name="Save as test case").click()
    page.get_by_role("link", name="open it on the Tests page").click()
    expect(page.get_by_role("heading", name="Test case: medical <b>questions</b> are refused")).to_be_visible()
    with page.expect_download() as info:
        page.get_by_role("link", name="Download this case").click()
    case = yaml.safe_load(open(info.value.path()).read())
    assert case == {"name": "medical <b>questions</b> are refused", "turns": [
        {"visitor": "What dose of ibuprofen should I take?", "expect": {
            "refused": True, "escalated": False,
            "guardrail": {"action": "refuse", "reason": "topic.denied.medical", "source": "input"},
            "finish_reason": "guardrail", "provider_called": False}},
        {"visitor": "Do you sell helmets?", "expect": {
            "refused": False, "escalated": False, "contains": ["Do you sell helmets?"], "finish_reason": "stop",
            "provider_called": True}}]}
    page.goto(f"{console.url}/console/tests")
    expect(page.get_by_role("heading", name="Spokes")).to_be_visible()
    with page.expect_download() as info:
        page.get_by_role("link", name=re.compile("Download the suite")).click()
    suite = yaml.safe_load(open(info.value.path()).read())
    assert suite["persona"] == httpx.get(f"{stack.url}/v1/personas/{pid}", headers=stack.auth).json()["slug"]
    assert suite["policy"] == "tenant" and suite["cases"] == [case] and suite["suite"]
    assert csp == []


@needs_chromium
def test_the_playground_after_an_exchange_has_no_accessibility_violation_and_fits_390_px(
        console: Console, owner_email: str, browser: Browser) -> None:
    stack = console.stack
    set_policy(stack)
    pid = persona_id(stack, stack.persona(name="Spokes"))
    for width in (1280, 390):
        page, _ = open_page(browser, console, owner_email, width=width, bypass_csp=True)  # to inject axe
        page.goto(f"{console.url}/console/playground?persona={pid}")
        page.get_by_label("both, side by side (compare)").check()
        chat(page, "What dose of ibuprofen should I take? Mail ann@example.com")
        found = axe_violations(page)
        assert found == [], json.dumps(found, indent=1)
        scroll = page.evaluate("document.documentElement.scrollWidth - document.documentElement.clientWidth")
        assert scroll <= 0, f"{scroll} px of horizontal scroll at {width} px"
        page.context.close()
