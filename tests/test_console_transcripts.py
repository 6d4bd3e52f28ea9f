"""The console's Transcripts, through the real server: search and open a conversation, filters, keyset pages,
the index following writes and erasure, tenant isolation, escaping, downloads, hostile URLs, and the pages in
Chromium (strict CSP, axe, 390 px)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
from collections.abc import Callable, Iterator
from datetime import timedelta
from html import unescape
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import Stack
from tests.support.console import (
    BROWSER_ARGS,
    CHROMIUM,
    Console,
    axe_violations,
    browser_sign_in,
    needs_chromium,
)
from widget_server.backends.storage import open_storage
from widget_server.clock import now
from widget_server.edges.console import transcripts
from widget_server.ids import new_id


def chat(stack: Stack, persona: str, text: str) -> str:
    """One widget turn (the upstream echoes); the conversation's id."""
    ready, _ = stack.turn(persona, text)
    return str(ready["conversation_id"])


def seed(stack: Stack, tenant_id: str | None = None, messages: tuple[dict[str, Any], ...] = (),
         feedback: str | None = None, **columns: Any) -> str:
    """A conversation written straight to the server's database (for what a turn cannot make at will)."""
    cid = new_id("conv")
    tenant = tenant_id or stack.tenant_id

    async def run() -> None:
        storage = await open_storage(stack.settings.resolved_database_url)
        try:
            await storage.create_conversation({
                "id": cid, "tenant_id": tenant, "persona_id": "per_seeded", "visitor_id": "vis_seeded",
                "channel": "widget", "status": "bot", "created_at": now(), "updated_at": now(), **columns})
            for m in messages:
                mid = new_id("msg")
                await storage.add_message({"id": mid, "tenant_id": tenant, "conversation_id": cid,
                                           "role": "visitor", "created_at": now(), **m})
                if feedback:
                    await storage.save_feedback({"id": new_id("fb"), "tenant_id": tenant, "conversation_id": cid,
                                                 "message_id": mid, "rating": feedback, "comment": "meh",
                                                 "created_at": now()})
        finally:
            await storage.close()
    asyncio.run(run())
    return cid


def listed(html: str) -> list[str]:
    """The conversation ids a list page links to, in order."""
    return list(dict.fromkeys(re.findall(r'href="/console/transcripts/(conv_[0-9a-z]+)', html)))


def links(html: str) -> dict[str, str]:
    return {label: unescape(href) for href, label in re.findall(r'<a href="([^"]+)" rel="(?:prev|next)">([^<]+)</a>',
                                                                html)}


def test_a_search_finds_the_message_and_opens_its_conversation_with_the_match_marked(console: Console) -> None:
    persona = console.stack.persona(name="Baker")
    wanted = chat(console.stack, persona, "Is the sourdough loaf ready yet?")
    chat(console.stack, persona, "Do you sell croissants?")
    client = console.signed_in("viewer")  # every role reads transcripts
    page = client.get("/console/transcripts", params={"q": "sourdough"})
    assert page.status_code == 200
    assert listed(page.text) == [wanted]
    assert "<mark>sourdough</mark>" in page.text and "croissants" not in page.text
    opened = client.get(re.findall(r'href="(/console/transcripts/conv_[^"]+)"', page.text)[0].replace("&amp;", "&"))
    assert opened.status_code == 200
    assert "Is the <mark>sourdough</mark> loaf ready yet?" in opened.text  # the visitor's message
    assert "Baker" in opened.text and "widget" in opened.text and "time to first token" in opened.text
    everything = client.get("/console/transcripts")
    assert len(listed(everything.text)) == 2 and "<mark>" not in everything.text
    assert listed(client.get("/console/transcripts", params={"q": "sourdough bagel"}).text) == []
    assert listed(client.get("/console/transcripts", params={"q": "sourd"}).text) == [wanted]  # a prefix


def test_each_filter_narrows_the_list(console: Console) -> None:
    stack = console.stack
    persona = stack.persona()
    persona_id = httpx.get(f"{stack.url}/v1/personas/{persona}", headers=stack.auth).json()["id"]
    mine = chat(stack, persona, "hello")
    old = seed(stack, created_at=now() - timedelta(days=40), messages=({"text": "old"},))
    api = seed(stack, channel="api", status="closed", messages=({"text": "hi"},))
    guarded = seed(stack, messages=({"text": "[email]", "guardrail": {"action": "mask", "reason": "pii.email",
                                                                       "source": "input"}},))
    escalated = seed(stack, status="escalated", messages=({"text": "a person please"},))
    down = seed(stack, messages=({"text": "bad", "role": "persona"},), feedback="down")
    client = console.signed_in("agent")
    day = lambda d: (now() + timedelta(days=d)).strftime("%Y-%m-%d")  # noqa: E731
    cases: list[tuple[dict[str, str], set[str]]] = [
        ({}, {mine, old, api, guarded, escalated, down}),
        ({"persona": persona_id}, {mine}),
        ({"channel": "api"}, {api}),
        ({"status": "escalated"}, {escalated}),
        ({"from": day(-1)}, {mine, api, guarded, escalated, down}),
        ({"from": day(-60), "to": day(-30)}, {old}),
        ({"guardrail": "1"}, {guarded}),
        ({"feedback": "1"}, {down}),
        ({"escalated": "1"}, {escalated}),
        ({"channel": "api", "q": "hi"}, {api}),
        ({"channel": "widget", "q": "hi"}, set()),
    ]
    for params, expected in cases:
        r = client.get("/console/transcripts", params=params)
        assert r.status_code == 200, (params, r.text[:500])
        assert set(listed(r.text)) == expected, params
        for name, value in params.items():  # the form shows the filter it applied
            assert f'value="{value}"' in r.text or "selected" in r.text or "checked" in r.text, name


def test_pages_link_older_and_newer_with_no_gap_and_no_duplicate(console: Console,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(transcripts, "PAGE_SIZE", 3)
    made = [seed(console.stack, messages=({"text": f"parcel number {i}"},)) for i in range(8)]
    client = console.signed_in("owner")
    for params in ({}, {"q": "parcel"}, {"q": "parcel", "channel": "widget"}):
        r = client.get("/console/transcripts", params=params)
        pages = [listed(r.text)]
        assert "Newer" not in links(r.text)
        while "Older →" in links(r.text):
            r = client.get(links(r.text)["Older →"])
            assert r.status_code == 200
            pages.append(listed(r.text))
        assert [c for p in pages for c in p] == made[::-1], params
        assert all(len(p) == 3 for p in pages[:-1])
        back = [listed(r.text)]
        while "← Newer" in links(r.text):
            r = client.get(links(r.text)["← Newer"])
            back.insert(0, listed(r.text))
        assert back == pages, params
        assert all(k in links(client.get(links(client.get("/console/transcripts", params=params).text)["Older →"])
                                  .text)["← Newer"] for k in params)  # the filters ride along in the URL


def test_a_message_written_after_the_page_was_made_is_found(console: Console) -> None:
    persona = console.stack.persona()
    client = console.signed_in("viewer")
    before = client.get("/console/transcripts", params={"q": "umbrella"})
    assert listed(before.text) == [] and "No conversation matches this search" in before.text
    cid = chat(console.stack, persona, "I left my umbrella in the shop")
    assert listed(client.get("/console/transcripts", params={"q": "umbrella"}).text) == [cid]


def test_an_erased_visitors_messages_are_no_longer_found(console: Console) -> None:
    stack = console.stack
    persona = stack.persona()
    cid = chat(stack, persona, "my address is 12 Willow Lane")
    kept = chat(stack, persona, "Willow trees are nice")
    client = console.signed_in("owner")
    assert set(listed(client.get("/console/transcripts", params={"q": "willow"}).text)) == {cid, kept}
    visitor = httpx.get(f"{stack.url}/v1/conversations/{cid}", headers=stack.auth).json()["visitor_id"]
    r = httpx.delete(f"{stack.url}/v1/analytics/visitors/{visitor}", headers=stack.auth)
    assert r.status_code == 200, r.text
    assert listed(client.get("/console/transcripts", params={"q": "willow"}).text) == [kept]
    assert listed(client.get("/console/transcripts", params={"q": "lane"}).text) == []
    assert client.get(f"/console/transcripts/{cid}").status_code == 404


def test_a_user_of_another_tenant_finds_nothing_and_gets_404_on_the_conversation(console: Console) -> None:
    persona = console.stack.persona()
    cid = chat(console.stack, persona, "confidential walnut order")
    other = console.stack.tenant()
    seed(console.stack, tenant_id=other["tenant_id"], messages=({"text": "their own walnut"},))
    outsider = console.signed_in("owner", tenant_id=other["tenant_id"])
    found = outsider.get("/console/transcripts", params={"q": "walnut"})
    assert found.status_code == 200 and cid not in found.text and "confidential" not in found.text
    assert len(listed(found.text)) == 1
    assert cid not in outsider.get("/console/transcripts").text
    for path in ("", "/download.json", "/download.txt"):
        r = outsider.get(f"/console/transcripts/{cid}{path}")
        assert r.status_code == 404 and "confidential" not in r.text, path
    assert console.signed_in("viewer").get(f"/console/transcripts/{cid}/download.txt").status_code == 200


def test_markup_in_a_message_is_shown_as_text(console: Console) -> None:
    hostile = '<script>alert(1)</script> and <mark>fake</mark> "quoted" & done'
    cid = seed(console.stack, messages=({"text": hostile},))
    client = console.signed_in("viewer")
    found = client.get("/console/transcripts", params={"q": "script mark"})
    assert listed(found.text) == [cid]
    assert "&lt;<mark>script</mark>&gt;alert(1)&lt;/<mark>script</mark>&gt;" in found.text
    for r in (found, client.get(f"/console/transcripts/{cid}"), client.get(f"/console/transcripts/{cid}",
                                                                             params={"q": "fake"})):
        assert r.status_code == 200
        assert "<script>alert" not in r.text
    plain = client.get(f"/console/transcripts/{cid}").text
    assert "&lt;script&gt;alert(1)&lt;/script&gt; and &lt;mark&gt;fake&lt;/mark&gt;" in plain and "<mark>" not in plain
    marked = client.get(f"/console/transcripts/{cid}", params={"q": "fake"}).text
    assert "&lt;mark&gt;<mark>fake</mark>&lt;/mark&gt;" in marked  # our mark, around their text


def test_one_transcript_downloads_as_json_and_as_text(console: Console) -> None:
    persona = console.stack.persona(name="Florist")
    cid = chat(console.stack, persona, "Tulips or roses?")
    client = console.signed_in("viewer")
    r = client.get(f"/console/transcripts/{cid}/download.json")
    assert r.status_code == 200 and r.headers["content-type"].startswith("application/json")
    assert r.headers["content-disposition"] == f'attachment; filename="transcript-{cid}.json"'
    doc = r.json()
    assert doc["id"] == cid and doc["persona"]["name"] == "Florist" and doc["channel"] == "widget"
    assert [m["role"] for m in doc["messages"]] == ["visitor", "persona"]
    assert doc["messages"][0]["text"] == "Tulips or roses?" and doc["messages"][1]["timing"]["total_ms"] >= 0
    t = client.get(f"/console/transcripts/{cid}/download.txt")
    assert t.headers["content-type"] == "text/plain; charset=utf-8"
    assert t.headers["content-disposition"] == f'attachment; filename="transcript-{cid}.txt"'
    assert f"Conversation {cid}" in t.text and "Visitor: Tulips or roses?" in t.text and "Florist:" in t.text
    page = client.get(f"/console/transcripts/{cid}").text
    assert f'href="/console/transcripts/{cid}/download.json"' in page and "Download text" in page


def test_a_bad_filter_is_shown_next_to_its_field(console: Console) -> None:
    client = console.signed_in("viewer")
    for params, field in [({"channel": "<fax>"}, "channel"), ({"from": "2024-13-40"}, "from"),
                          ({"from": "2024-05-02", "to": "2024-05-01"}, "to"), ({"persona": "per_nobody"}, "persona"),
                          ({"q": "x", "before": "not-a-cursor"}, "cursor")]:
        r = client.get("/console/transcripts", params=params)
        assert r.status_code == 400, params
        assert f'id="{field}-error"' in r.text or (field == "cursor" and "out of date" in r.text), params
        assert "&lt;fax&gt;" not in r.text or field != "channel" or 'value="&lt;fax&gt;"' not in r.text


@pytest.fixture
def any_db_console(db_url: str, stack_factory: Callable[..., Stack]) -> Iterator[Console]:
    c = Console(stack_factory(database_url=db_url))
    yield c
    for client in c.clients:
        client.close()


PARAMS = st.dictionaries(
    st.sampled_from(["q", "persona", "channel", "status", "from", "to", "guardrail", "feedback", "escalated",
                     "before", "after"]),
    st.text(max_size=60) | st.sampled_from(['"', "NEAR(", "*", "'", "=1", "=msg_x", "9" * 30, "2024-02-30", "\x00",
                                            "conv_" + "z" * 26, "msg_" + "0" * 26, "a" * 3000]),
    max_size=5)


def test_hostile_urls_get_a_page_or_a_clear_error_never_a_500(any_db_console: Console) -> None:
    console = any_db_console
    seed(console.stack, messages=({"text": "a b c NEAR OR * quoted"},))
    client = console.signed_in("viewer")

    @settings(max_examples=50, deadline=None, suppress_health_check=list(HealthCheck))
    @given(params=PARAMS, conversation=st.text(max_size=100))
    def check(params: dict[str, str], conversation: str) -> None:
        r = client.get("/console/transcripts", params=params)
        assert r.status_code in (200, 400), (params, r.status_code, r.text[:300])
        assert "<h1>Transcripts</h1>" in r.text
        path = "/console/transcripts/" + quote(conversation, safe="")
        for suffix in ("", "/download.json", "/download.txt"):
            got = client.get(path + suffix)
            assert got.status_code in (200, 307, 404), (path, got.status_code, got.text[:300])  # 307: a bare slash
    check()


# In Chromium


@contextlib.contextmanager
def chromium() -> Iterator[Any]:
    """Started after the test has written its data: Playwright's sync API holds the thread's event loop."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=BROWSER_ARGS)
        try:
            yield b
        finally:
            b.close()


def _csp_errors(page: Any) -> list[str]:
    errors: list[str] = []
    page.on("console", lambda msg: errors.append(msg.text) if "Content Security Policy" in msg.text else None)
    return errors


@needs_chromium
def test_in_chromium_a_person_searches_opens_the_match_and_downloads_it(console: Console) -> None:

    persona = console.stack.persona(name="Cyclist")
    chat(console.stack, persona, "My <b>tandem</b> bicycle has a flat tyre")
    chat(console.stack, persona, "Opening hours please")
    user = console.user("viewer")
    with chromium() as browser:
        for width in (1280, 390):
            _search_and_open(browser, console, user, width)


def _search_and_open(browser: Any, console: Console, user: dict[str, Any], width: int) -> None:
    from playwright.sync_api import expect

    context = browser.new_context(viewport={"width": width, "height": 800}, accept_downloads=True)
    page = context.new_page()
    csp = _csp_errors(page)
    browser_sign_in(page, console.url, user["email"])
    page.goto(console.url + "/console/transcripts")
    page.get_by_label("Search messages").fill("tandem bicy")
    page.get_by_label("Search messages").press("Enter")
    row_link = page.locator("table.transcripts tbody tr a")
    expect(row_link).to_have_count(1)
    expect(page.locator("td.snippet mark")).to_have_text(["tandem", "bicycle"])
    expect(page.locator("td.snippet")).to_contain_text("My <b>tandem</b> bicycle")  # as text
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth"), width
    row_link.focus()
    page.keyboard.press("Enter")
    expect(page.get_by_role("heading", name="Conversation")).to_be_visible()
    expect(page.locator("li.message:target mark")).to_have_text(["tandem", "bicycle"])
    expect(page.locator("li.message")).to_have_count(2)
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth"), width
    with page.expect_download() as download:
        page.get_by_role("link", name="Download JSON").click()
    assert json.loads(open(download.value.path()).read())["persona"]["name"] == "Cyclist"
    assert csp == [], csp
    context.close()


@needs_chromium
def test_the_transcript_pages_have_no_accessibility_violation(console: Console) -> None:

    persona = console.stack.persona()
    cid = chat(console.stack, persona, "Where is my parcel?")
    seed(console.stack, status="escalated", messages=(
        {"text": "[email] parcel", "guardrail": {"action": "mask", "reason": "pii.email", "source": "input"}},
        {"text": "rated", "role": "persona", "timing": {"ttft_ms": 12, "total_ms": 40},
         "usage": {"input_tokens": 3, "output_tokens": 5}}), feedback="down")
    user = console.user("owner")
    with chromium() as browser:
        _axe_every_page(browser, console, user, cid)


def _axe_every_page(browser: Any, console: Console, user: dict[str, Any], cid: str) -> None:
    from playwright.sync_api import expect

    context = browser.new_context(viewport={"width": 1280, "height": 800}, bypass_csp=True)  # to inject axe
    page = context.new_page()
    browser_sign_in(page, console.url, user["email"])
    for path in ("/console/transcripts", "/console/transcripts?q=parcel&guardrail=1",
                 "/console/transcripts?channel=nope", f"/console/transcripts/{cid}?q=parcel"):
        page.goto(console.url + path)
        expect(page.locator("h1")).to_be_visible()
        found = axe_violations(page)
        assert found == [], (path, json.dumps(found, indent=1))
    seeded = listed(page.evaluate("fetch('/console/transcripts?feedback=1').then(r => r.text())"))
    page.goto(console.url + f"/console/transcripts/{seeded[0]}")
    expect(page.get_by_text("rated down").first).to_be_visible()
    expect(page.locator(".decisions .badge.mask")).to_have_text("mask · pii.email (input)")
    found = axe_violations(page)
    assert found == [], json.dumps(found, indent=1)
    context.close()
