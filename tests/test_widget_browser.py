"""The embeddable widget in a real browser (Debian's Chromium through Playwright), as site visitors meet it.

The server runs on one loopback port; the pages that embed the widget are served by a second tiny server on
another port, so every embed here is cross-origin, as on a real site.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import Browser, BrowserContext, ConsoleMessage, Locator, Page, expect

from tests.conftest import Stack
from tests.support.browser import (
    CHROMIUM,
    HostPages,
    Site,
    chromium,
    host_pages,
    last_reply,
    off_thread,
    open_and_send,
    widget,
)
from widget_server.domain.guardrails.policy import Escalation

# The README's screenshots are refreshed on request (WIDGET_SCREENSHOTS=1), so a test run leaves the tree clean;
# otherwise they go to the test's temporary folder, and are still taken (a page that cannot be captured fails).
README_SHOTS = Path(__file__).resolve().parents[1] / "docs" / "screenshots"
HOSTILE = "* { all: unset } div { display: none !important }"
NOBODY = Escalation.model_fields["nobody_message"].default  # what a visitor is told when no agent is signed in
XSS = "<img src=x onerror=alert(1)> <script>alert(2)</script> [x](javascript:alert(1)) **bold** [ok](https://example.com/)"

pytestmark = pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="scripts/browser.sh installs Chromium")
expect.set_options(timeout=15_000)


@pytest.fixture(scope="session")
def host_server() -> Iterator[tuple[HostPages, str]]:
    with host_pages() as served:
        yield served


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    """Module-scoped: while Playwright's sync API runs, its event loop runs on this thread, which would stop
    the other modules' fixtures from calling asyncio.run."""
    with chromium() as b:
        yield b


@pytest.fixture
def context(browser: Browser) -> Iterator[BrowserContext]:
    ctx = browser.new_context(viewport={"width": 1280, "height": 800})
    yield ctx
    ctx.close()


@pytest.fixture
def server(stack_factory: Callable[..., Stack]) -> Stack:
    """The app under uvicorn (made off this thread: Playwright's sync API keeps an event loop running here)."""
    return off_thread(stack_factory)  # type: ignore[no-any-return]


@pytest.fixture
def site(server: Stack, host_server: tuple[HostPages, str]) -> Site:
    stack = server
    pages, origin = host_server
    keys = off_thread(stack.tenant, [origin])
    return Site(stack, pages, origin, keys["sk"], keys["pk"])


def eventually(check: Callable[[], Any], what: str, timeout: float = 20) -> Any:
    """Poll the server until `check()` returns something true (a fact the browser cannot wait for)."""
    deadline = time.monotonic() + timeout
    while not (got := check()):
        assert time.monotonic() < deadline, f"never happened: {what}"
        time.sleep(0.05)
    return got


def finished(w: Locator) -> Locator:
    """The last reply once it is complete (its feedback buttons appear with reply.end)."""
    reply = last_reply(w)
    expect(reply.locator(".fb button")).to_have_count(2)
    return reply


def stored(page: Page, key: str, persona: str) -> dict[str, Any]:
    raw = page.evaluate("k => localStorage.getItem(k)", f"persona-widget:{key}:{persona}")
    return json.loads(raw) if raw else {}


RECORD_STATES = """() => {
  window.__states = [];
  const root = document.querySelector('persona-widget').shadowRoot;
  new MutationObserver(() => {
    const rows = root.querySelectorAll('.m > .r.a');
    const row = rows[rows.length - 1];
    if (row && row !== root.querySelector('.m > .r.a')) {
      window.__states.push({text: row.firstChild.textContent, typing: !!row.querySelector('.d'),
                            done: !!row.querySelector('.fb')});
    }
  }).observe(root, {subtree: true, childList: true, characterData: true});
}"""


EVENTS = """window.__events = [];
  ['ready', 'connected', 'open', 'message', 'reply'].forEach(n => window.addEventListener('persona-widget:' + n,
    e => window.__events.push([n, e.detail.text || e.detail.conversation_id || null,
                               e.detail.instance === PersonaWidget.instances[0]])));"""


def test_a_reply_streams_into_the_panel_and_completes(site: Site, context: BrowserContext) -> None:
    persona = site.persona("pace-120-8")
    page = context.new_page()
    page.add_init_script(EVENTS)  # listening before the script loads, as a host page does
    page.goto(site.page(site.tag(persona)))
    w = widget(page)
    expect(w.locator(".h .t")).to_have_text("Ada")
    expect(w.locator("button.l")).to_have_attribute("aria-label", "Open chat")
    page.wait_for_function("window.__events.length > 0")
    assert page.evaluate("window.__events") == [["ready", None, True]], "ready at load, before any message"
    page.evaluate(RECORD_STATES)
    open_and_send(page, "Tell me about bread")
    reply = finished(w)
    final = "w1 w2 w3 w4 w5 w6 w7 w8"
    expect(reply.locator(".bd")).to_have_text(final)

    states = page.evaluate("window.__states")
    assert states[0]["typing"] and not states[0]["text"], "a typing indicator before the first token"
    partial = {s["text"].strip() for s in states if s["text"].strip() and not s["done"]}
    assert len(partial - {final}) >= 2, f"the reply grew through intermediate states: {partial}"
    assert all(final.startswith(p) for p in partial), "each state is a prefix of the final text"

    conversation = stored(page, site.pk, persona)["c"]
    assert page.evaluate("window.__events") == [
        ["ready", None, True], ["open", None, True], ["connected", conversation, True],
        ["message", "Tell me about bread", True], ["reply", final + " ", True]]

    thumbs_up = reply.locator(".fb button").first
    thumbs_up.click()
    expect(thumbs_up).to_have_attribute("aria-pressed", "true")
    expect(w.locator(".sr[aria-live=polite]").last).to_have_text(f"Ada: {final} ")


def test_a_visitors_first_open_is_recorded_with_the_conversation(site: Site, context: BrowserContext) -> None:
    persona = site.persona("echo")
    page = context.new_page()
    page.goto(site.page(site.tag(persona)))
    w = open_and_send(page, "hello")  # a new visitor: no conversation, no socket until this message
    expect(finished(w).locator(".bd")).to_have_text("hello")
    w.locator(".x").click()
    conversation = stored(page, site.pk, persona)["c"]
    types = site.events(conversation, lambda types: "widget.closed" in types)
    assert types == ["conversation.started", "widget.opened", "message.received", "reply.completed",
                     "widget.closed"]

    page.reload()  # a returning visitor: the socket resumes at load, and opening is recorded at once
    widget(page).locator("button.l").click()
    assert site.events(conversation, lambda types: types.count("widget.opened") == 2)[-1] == "widget.opened"


def test_no_cookie_is_set_on_either_origin(site: Site, context: BrowserContext) -> None:
    persona = site.persona("echo")
    page = context.new_page()
    page.goto(site.page(site.tag(persona)))
    w = open_and_send(page, "cookies please")
    expect(finished(w).locator(".bd")).to_have_text("cookies please")
    assert context.cookies() == []
    assert page.evaluate("document.cookie") == ""
    saved = stored(page, site.pk, persona)
    assert saved["v"].startswith("vis") and saved["c"].startswith("conv"), "ids live in namespaced localStorage"
    assert "token" not in json.dumps(page.evaluate("Object.assign({}, localStorage)"))


def test_works_under_a_strict_csp_without_violations(site: Site, context: BrowserContext) -> None:
    persona = site.persona("words-5")
    ws = site.stack.url.replace("http://", "ws://")
    csp = (f"default-src 'none'; script-src {site.stack.url}; connect-src {site.stack.url} {ws}; "
           "style-src 'self'; img-src 'self'; base-uri 'none'; form-action 'none'")
    assert "unsafe" not in csp
    page = context.new_page()
    page.add_init_script("""window.__violations = [];
      document.addEventListener('securitypolicyviolation',
        e => window.__violations.push(e.violatedDirective + ' ' + e.blockedURI));""")
    page.goto(site.page(site.tag(persona), headers={"Content-Security-Policy": csp}))
    w = open_and_send(page, "hello under CSP")
    expect(finished(w).locator(".bd")).to_have_text("w1 w2 w3 w4 w5")
    launcher = w.locator("button.l")
    assert launcher.evaluate("e => getComputedStyle(e).backgroundColor") == "rgb(29, 78, 216)", "styles applied"
    assert page.evaluate("window.__violations") == []


def test_two_instances_on_one_page_keep_their_own_conversations(site: Site, context: BrowserContext) -> None:
    first, second = site.persona("echo", name="Ada"), site.persona("words-3", name="Bruno")
    queued = ("<script>window.PersonaWidget = window.PersonaWidget || {q: []};"
              f"PersonaWidget.q.push(['init', {{persona: {json.dumps(second)}, position: 'left', lang: 'de'}},"
              " function (w) { window.__second = !!w; w.on('ready', function () { window.__ready = true; }); }]);"
              "</script>")
    page = context.new_page()
    page.goto(site.page(queued + site.tag(first)))
    expect(page.locator("persona-widget")).to_have_count(2)
    a, b = widget(page, 0), widget(page, 1)
    expect(a.locator(".h .t")).to_have_text("Ada")
    expect(b.locator(".h .t")).to_have_text("Bruno")
    expect(b.locator("button.l")).to_have_attribute("aria-label", "Chat öffnen")
    assert page.evaluate("window.__second") is True, "a call queued before the script loaded ran"
    page.wait_for_function("window.__ready === true")  # its callback's on('ready') heard the instance's ready
    box_a, box_b = a.locator("button.l").bounding_box(), b.locator("button.l").bounding_box()
    assert box_a and box_b and box_b["x"] < box_a["x"], "the second one sits on the left"

    open_and_send(page, "alpha", 0)
    expect(finished(a).locator(".bd")).to_have_text("alpha")
    a.locator(".x").click()
    open_and_send(page, "beta", 1)
    expect(finished(b).locator(".bd")).to_have_text("w1 w2 w3")

    assert a.locator(".m > .r.v").all_inner_texts() == ["alpha"]
    assert b.locator(".m > .r.v").all_inner_texts() == ["beta"]
    conv_a, conv_b = stored(page, site.pk, first)["c"], stored(page, site.pk, second)["c"]
    assert conv_a != conv_b
    assert [m["text"] for m in site.conversation(conv_a)["messages"]] == ["alpha", "alpha"]
    assert [m["text"] for m in site.conversation(conv_b)["messages"]] == ["beta", "w1 w2 w3 "]


def test_a_reload_continues_the_conversation(site: Site, context: BrowserContext) -> None:
    persona = site.persona("echo")
    page = context.new_page()
    page.goto(site.page(site.tag(persona)))
    w = open_and_send(page, "first message")
    expect(finished(w).locator(".bd")).to_have_text("first message")
    conversation = stored(page, site.pk, persona)["c"]

    page.reload()
    w = widget(page)
    w.locator("button.l").click()
    expect(w.locator(".m > .r.v")).to_have_text(["first message"])
    expect(finished(w).locator(".bd")).to_have_text("first message")
    w.locator("textarea").fill("second message")
    w.locator("textarea").press("Enter")
    expect(w.locator(".m > .r.v")).to_have_text(["first message", "second message"])
    expect(finished(w).locator(".bd")).to_have_text("second message")  # reply.end: stored
    expect(w.locator(".m > .r.a")).to_have_text(["Hi! How can I help?", "first message", "second message"])
    assert stored(page, site.pk, persona)["c"] == conversation
    texts = [m["text"] for m in site.conversation(conversation)["messages"]]
    assert texts == ["first message", "first message", "second message", "second message"]


def test_a_dropped_connection_mid_reply_resumes_with_the_exact_text(site: Site, context: BrowserContext) -> None:
    persona = site.persona("pace-80-30")
    page = context.new_page()
    page.goto(site.page(site.tag(persona)))
    w = open_and_send(page, "a long answer please")
    expect(last_reply(w)).to_contain_text("w3 ")
    conversation = stored(page, site.pk, persona)["c"]

    context.set_offline(True)  # the visitor's connection drops mid-reply
    # At once: the browser says it is offline (the socket's own close event may come much later, or never).
    expect(w.locator(".s")).to_contain_text("Offline. Reconnecting…")
    partial = last_reply(w).locator(".bd").text_content() or ""

    def reply_stored() -> list[dict[str, Any]] | None:  # the server finishes it while the visitor is away
        messages: list[dict[str, Any]] = site.conversation(conversation)["messages"]
        return messages if len(messages) == 2 else None
    messages = eventually(reply_stored, "the reply is stored")
    assert messages[1]["finish_reason"] == "stop"
    assert messages[1]["text"] == "".join(f"w{i} " for i in range(1, 31))
    assert messages[1]["text"].startswith(partial) and len(partial) < len(messages[1]["text"]), "text was missed"
    assert last_reply(w).locator(".bd").text_content() == partial, "nothing is shown while offline"
    context.set_offline(False)

    reply = finished(w)
    expect(reply.locator(".bd")).to_have_text(messages[1]["text"])
    assert reply.locator(".bd").text_content() == messages[1]["text"], "nothing lost, nothing doubled"
    expect(w.locator(".s")).to_be_hidden()


def test_an_untrusted_reply_renders_as_inert_text(site: Site, context: BrowserContext) -> None:
    persona = site.persona(f"spell:{XSS}")
    page = context.new_page()
    dialogs: list[str] = []
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    page.goto(site.page(site.tag(persona)))
    w = open_and_send(page, "<b>not bold</b>")
    body = finished(w).locator(".bd")
    expect(body).to_contain_text("<img src=x onerror=alert(1)> <script>alert(2)</script> [x](javascript:alert(1))")
    expect(body.locator("strong")).to_have_text("bold")
    expect(body.locator("a")).to_have_count(1)
    link = body.locator("a")
    assert link.get_attribute("href") == "https://example.com/"
    assert link.get_attribute("rel") == "noopener noreferrer"
    root = w.locator(".m")
    expect(root.locator("img")).to_have_count(0)
    expect(root.locator("script")).to_have_count(0)
    expect(root.locator("b")).to_have_count(0)
    expect(w.locator(".m > .r.v").last).to_have_text("<b>not bold</b>")
    assert dialogs == []


def test_keyboard_only(site: Site, context: BrowserContext) -> None:
    persona = site.persona("echo")
    page = context.new_page()
    page.goto(site.page(site.tag(persona)))
    w = widget(page)
    launcher = w.locator("button.l")
    expect(w.locator(".h .t")).to_have_text("Ada")
    focused = ("() => { const h = document.activeElement;"
               " return h && h.shadowRoot ? h.shadowRoot.activeElement.className : '' }")
    for _ in range(4):
        page.keyboard.press("Tab")
        if page.evaluate(focused) == "l":
            break
    assert page.evaluate(focused) == "l", "Tab reaches the launcher"
    page.keyboard.press("Enter")
    expect(w.locator("[role=dialog]")).to_be_visible()
    expect(launcher).to_have_attribute("aria-expanded", "true")
    assert page.evaluate(focused) == "", "focus moved into the panel (the textarea)"
    assert w.locator("textarea").evaluate("t => t.getRootNode().activeElement === t")
    page.keyboard.type("line one")
    page.keyboard.press("Shift+Enter")
    page.keyboard.type("line two")
    page.keyboard.press("Enter")
    expect(w.locator(".m > .r.v").last).to_have_text("line one\nline two")
    expect(finished(w).locator(".bd")).to_contain_text("line two")
    page.keyboard.press("Escape")
    expect(w.locator("[role=dialog]")).to_be_hidden()
    expect(launcher).to_have_attribute("aria-expanded", "false")
    assert page.evaluate(focused) == "l", "focus returned to the launcher"


def test_an_origin_not_on_the_key_list_gets_a_clear_message(site: Site, context: BrowserContext) -> None:
    persona = site.persona("echo")
    other = off_thread(site.stack.tenant, ["https://elsewhere.example"])
    page = context.new_page()

    def from_widget(msg: ConsoleMessage) -> bool:
        return msg.text.startswith("[widget]")
    with page.expect_console_message(from_widget) as message:
        page.goto(site.page(site.tag(persona, key=other["pk"])))
    assert message.value.type == "error"
    assert site.origin in message.value.text and "not allowed" in message.value.text, message.value.text
    w = widget(page)
    w.locator("button.l").click()
    expect(w.locator(".s")).to_have_text("This chat is not enabled for this website.")
    expect(w.locator("textarea")).to_be_disabled()


def test_a_hostile_host_stylesheet_does_not_break_it(site: Site, context: BrowserContext) -> None:
    persona = site.persona("words-4")
    page = context.new_page()
    page.goto(site.page(site.tag(persona), head=f"<style>{HOSTILE}</style>"))
    w = widget(page)
    launcher = w.locator("button.l")
    expect(launcher).to_be_visible()
    box = launcher.bounding_box()
    assert box and box["width"] == 56 and box["height"] == 56
    w2 = open_and_send(page, "still there?")
    panel = w2.locator("[role=dialog]").bounding_box()
    assert panel and panel["width"] == 380 and panel["height"] == 600
    expect(finished(w).locator(".bd")).to_have_text("w1 w2 w3 w4")
    expect(w.locator(".h")).to_have_css("background-color", "rgb(29, 78, 216)")


def test_a_phone_viewport_gets_a_full_screen_panel(site: Site, browser: Browser) -> None:
    persona = site.persona("words-6", starters=["Opening hours?", "Order a cake"])
    ctx = browser.new_context(viewport={"width": 390, "height": 844}, is_mobile=True, has_touch=True,
                              device_scale_factor=2)
    try:
        page = ctx.new_page()
        page.goto(site.page(site.tag(persona, lang="en")))
        w = widget(page)
        expect(w.locator(".c button")).to_have_count(2)
        w.locator("button.l").click()
        panel = w.locator("[role=dialog]")
        expect(panel).to_be_visible()
        assert panel.bounding_box() == {"x": 0, "y": 0, "width": 390, "height": 844}
        expect(w.locator("textarea")).to_have_css("font-size", "16px")
        w.locator(".c button").first.click()  # a starter chip sends its text
        expect(w.locator(".m > .r.v")).to_have_text(["Opening hours?"])
        expect(finished(w).locator(".bd")).to_have_text("w1 w2 w3 w4 w5 w6")
        expect(w.locator(".c")).to_be_hidden()
    finally:
        ctx.close()


def test_the_demo_pages_embed_the_widget(server: Stack, context: BrowserContext) -> None:
    stack = server
    demo = off_thread(stack.tenant, [stack.url])
    r = httpx.post(f"{stack.url}/v1/personas", headers={"Authorization": f"Bearer {demo['sk']}"}, json={
        "name": "Ada", "slug": "ada", "greeting": "Hi, I'm Ada.", "provider": {"kind": "openai", "model": "echo"}})
    assert r.status_code == 201, r.text
    (Path(stack.settings.data_dir) / "demo.json").write_text(json.dumps({
        "tenant_id": demo["tenant_id"], "publishable_key": demo["pk"], "origins": [stack.url], "persona": "ada",
        "persona_name": "Ada"}))
    home = httpx.get(stack.url + "/")
    assert home.status_code == 200 and f'src="{stack.url}/embed.js" data-key="{demo["pk"]}"' in home.text
    strict = httpx.get(stack.url + "/demo/csp")
    csp = strict.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "style-src 'self'" in csp and "unsafe" not in csp

    page = context.new_page()
    page.add_init_script("""window.__violations = [];
      document.addEventListener('securitypolicyviolation', e => window.__violations.push(e.violatedDirective));""")
    page.goto(stack.url + "/demo/csp")
    page.get_by_role("button", name="Open the chat").click()
    w = widget(page)
    expect(w.locator("[role=dialog]")).to_be_visible()
    expect(w.locator(".m > .r.a").first).to_have_text("Hi, I'm Ada.")
    w.locator("textarea").fill("demo works")
    w.locator("textarea").press("Enter")
    expect(finished(w).locator(".bd")).to_have_text("demo works")
    expect(page.locator("#events li").first).to_contain_text("reply")
    assert page.evaluate("window.__violations") == []


def test_a_rejected_token_gets_a_new_session_and_a_newer_window_takes_over(site: Site,
                                                                           context: BrowserContext) -> None:
    persona = site.persona("echo")
    url = site.page(site.tag(persona))
    page = context.new_page()
    page.goto(url)
    w = open_and_send(page, "one")
    expect(finished(w).locator(".bd")).to_have_text("one")

    # The token expired (4401): the widget fetches a new session and carries on in the same conversation.
    page.evaluate("() => { const i = PersonaWidget.instances[0]; i.token = 'expired'; i.ws.close(); }")
    w.locator("textarea").fill("two")
    w.locator("textarea").press("Enter")
    expect(w.locator(".m > .r.a .bd")).to_have_text(["one", "two"])
    assert page.evaluate("PersonaWidget.instances[0].token") != "expired"

    # The same visitor opens the conversation in a second tab: the first one yields (4409) and stays quiet.
    other = context.new_page()
    other.goto(url)
    expect(widget(page).locator(".s")).to_have_text("This conversation continues in another window.Retry")
    w2 = widget(other)
    w2.locator("button.l").click()
    expect(w2.locator(".m > .r.v")).to_have_text(["one", "two"])
    w2.locator("textarea").fill("three")
    w2.locator("textarea").press("Enter")
    expect(finished(w2).locator(".bd")).to_have_text("three")
    # The newer tab kept the conversation through a whole turn: the first one did not take it back.
    expect(w2.locator(".s")).to_be_hidden()
    expect(widget(page).locator(".s")).to_have_text("This conversation continues in another window.Retry")
    assert page.evaluate("PersonaWidget.instances[0].ws") is None, "the first tab holds no socket"


def test_the_js_api_sends_and_a_closed_panel_counts_unread_replies(site: Site, context: BrowserContext) -> None:
    persona = site.persona("echo")
    page = context.new_page()
    page.goto(site.page(site.tag(persona, lang="es")))
    w = widget(page)
    launcher = w.locator("button.l")
    expect(launcher).to_have_attribute("aria-label", "Abrir chat")
    page.evaluate("""() => { const i = PersonaWidget.instances[0];
      window.__replies = []; i.on('reply', d => window.__replies.push(d.text)); i.send('hola'); }""")
    expect(w.locator(".b")).to_have_text("1")
    expect(launcher).to_have_attribute("aria-label", "Abrir chat (1 sin leer)")
    assert page.evaluate("window.__replies") == ["hola"]
    page.evaluate("PersonaWidget.instances[0].open()")
    expect(w.locator("[role=dialog]")).to_be_visible()
    expect(w.locator(".b")).to_be_hidden()
    expect(w.locator(".m > .r.a .bd")).to_have_text(["hola"])
    page.evaluate("PersonaWidget.instances[0].destroy()")
    expect(page.locator("persona-widget")).to_have_count(0)


def test_the_history_comes_back_from_a_server_that_restarted(site: Site, context: BrowserContext,
                                                            stack_factory: Callable[..., Stack]) -> None:
    persona = site.persona("echo")
    page = context.new_page()
    page.goto(site.page(site.tag(persona)))
    w = open_and_send(page, "before the restart")
    expect(finished(w).locator(".bd")).to_have_text("before the restart")

    restarted = off_thread(stack_factory)  # same database and secret, no frame log in memory
    site.stack = restarted
    page.goto(site.page(site.tag(persona)))
    w = widget(page)
    w.locator("button.l").click()
    expect(w.locator(".m > .r.v")).to_have_text(["before the restart"])
    expect(w.locator(".m > .r.a .bd")).to_have_text(["before the restart"])
    w.locator("textarea").fill("after it")
    w.locator("textarea").press("Enter")
    expect(finished(w).locator(".bd")).to_have_text("after it")  # reply.end: stored
    expect(w.locator(".m > .r.a .bd")).to_have_text(["before the restart", "after it"])
    texts = [m["text"] for m in site.conversation(stored(page, site.pk, persona)["c"])["messages"]]
    assert texts == ["before the restart", "before the restart", "after it", "after it"]



def test_after_a_restart_the_history_comes_back_to_a_tab_that_reconnects_second(
        site: Site, context: BrowserContext, stack_factory: Callable[..., Stack]) -> None:
    persona = site.persona("echo")
    page = context.new_page()
    page.goto(site.page(site.tag(persona)))
    w = open_and_send(page, "before the restart")
    expect(finished(w).locator(".bd")).to_have_text("before the restart")

    site.stack = off_thread(stack_factory)  # same database and secret, no frame log in memory
    url = site.page(site.tag(persona))
    other = context.new_page()  # a second tab reconnects first: the restarted server makes the channel afresh
    other.goto(url)
    widget(other).locator("button.l").click()
    expect(widget(other).locator(".m > .r.v")).to_have_text(["before the restart"])
    # The first tab comes back to a channel that exists but holds none of the frames it had shown: it has to
    # ask for the stored transcript.
    page.goto(url)
    w = widget(page)
    w.locator("button.l").click()
    expect(w.locator(".m > .r.v")).to_have_text(["before the restart"])
    expect(w.locator(".m > .r.a .bd")).to_have_text(["before the restart"])
    expect(w.locator(".s")).to_be_hidden()
    expect(widget(other).locator(".s")).to_have_text("This conversation continues in another window.Retry")

@pytest.mark.parametrize(("lang", "ask", "requested", "resolved"), [
    ("en", "Can I talk to a human?", "Connecting you with a person…",
     "Your request was marked as solved. You can keep writing here."),
    ("de", "Kann ich mit einem Menschen sprechen?", "Ich verbinde Sie mit einem Menschen…",
     "Ihr Anliegen wurde als gelöst markiert. Sie können hier weiterschreiben."),
    ("es", "Quiero hablar con una persona", "Te estamos conectando con una persona…",
     "Tu consulta se marcó como resuelta. Puedes seguir escribiendo aquí."),
], ids=["en", "de", "es"])
def test_escalation_notes_are_in_the_visitors_language(site: Site, context: BrowserContext, lang: str, ask: str,
                                                       requested: str, resolved: str) -> None:
    site.policy({"version": 1, "escalation": {"on_request": True}})
    persona = site.persona("echo")
    page = context.new_page()
    page.goto(site.page(site.tag(persona, lang=lang)))
    w = open_and_send(page, ask)
    notes = w.locator(".m > .r.n")
    # Said once, in the visitor's language: the reply to the request (the policy's default words), then no
    # note repeating it; then the tenant's words, since nobody of it is signed in.
    expect(w.locator(".m > .r.g .bd")).to_have_text([requested])
    expect(notes).to_have_text([NOBODY])
    assert w.locator(".m").inner_text().count(requested) == 1
    conversation = stored(page, site.pk, persona)["c"]
    r = httpx.post(f"{site.stack.url}/v1/conversations/{conversation}/resolve", json={},
                   headers={"Authorization": f"Bearer {site.sk}"})
    assert r.status_code == 200, r.text
    expect(notes).to_have_text([NOBODY, resolved])  # the support team handed the conversation back

    # A status this widget does not know (a newer server, or a name such as `constructor`) shows nothing raw.
    page.evaluate("""() => { const i = PersonaWidget.instances[0];
      i.receive({type: 'escalation', status: 'transferred', seq: i.seq + 1});
      i.receive({type: 'escalation', status: 'constructor', seq: i.seq + 1}); }""")
    expect(notes).to_have_count(2)
    shown = w.locator(".m").inner_text()
    assert "resolved" not in shown and "transferred" not in shown and "function" not in shown, shown


BAKERY = """<!doctype html><html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1"><title>Crumb &amp; Co. · Bakery</title>
<style>
body{margin:0;font:16px/1.5 Georgia,serif;color:#3b2a20;background:#fbf6ef}
header{display:flex;align-items:center;justify-content:space-between;padding:18px 48px;background:#fff;
  border-bottom:1px solid #eadfce}
.logo{font-size:26px;font-weight:700}
nav a{margin-left:28px;color:#3b2a20;text-decoration:none;font:15px system-ui,sans-serif}
.hero{padding:56px 48px;background:#f3e3cb}
.hero h1{font-size:42px;margin:0 0 12px;max-width:560px;line-height:1.15}
.hero p{max-width:480px;font-size:18px;margin:0 0 24px}
.btn{display:inline-block;padding:12px 22px;background:#9a3412;color:#fff;border-radius:6px;
  font:600 15px system-ui,sans-serif;text-decoration:none}
.menu{display:grid;grid-template-columns:repeat(3,1fr);gap:20px;padding:36px 48px;max-width:720px}
.card{background:#fff;border:1px solid #eadfce;border-radius:10px;padding:16px}
.card h3{margin:0 0 6px;font-size:18px}.card p{margin:0;font:14px/1.45 system-ui,sans-serif;color:#6b5444}
.price{display:block;margin-top:10px;font:600 15px system-ui,sans-serif;color:#9a3412}
.visit{padding:0 48px 40px;font:15px system-ui,sans-serif;color:#6b5444}
@media (max-width:640px){header,.hero,.menu,.visit{padding-left:20px;padding-right:20px}nav{display:none}
  .hero h1{font-size:30px}.menu{grid-template-columns:1fr}}
</style></head><body>
<header><div class="logo">Crumb &amp; Co.</div>
<nav><a href="#bread">Bread</a><a href="#cakes">Cakes</a><a href="#visit">Visit us</a><a href="#order">Order</a></nav>
</header>
<section class="hero"><h1>Sourdough, pastries and celebration cakes, baked every morning.</h1>
<p>A neighbourhood bakery on Market Street since 2009. Order a cake online, or ask Mila in the chat.</p>
<a class="btn" href="#order">Order a cake</a></section>
<section class="menu" id="bread">
<div class="card"><h3>Country sourdough</h3><p>48-hour ferment, dark crust, open crumb.</p>
<span class="price">€6.50</span></div>
<div class="card"><h3>Cardamom buns</h3><p>Swedish-style, twisted by hand, warm from 8 am.</p>
<span class="price">€3.20</span></div>
<div class="card" id="cakes"><h3>Lemon elderflower cake</h3><p>Our summer favourite; serves 8 to 10.</p>
<span class="price">€38.00</span></div>
</section>
<p class="visit" id="visit">Market Street 14 · Tuesday to Sunday · Cakes to order with 48 hours' notice</p>
BODY
</body></html>"""


@pytest.fixture
def shots(tmp_path: Path) -> Path:
    """Where screenshots go: the README's folder with WIDGET_SCREENSHOTS=1, else this test's temporary one."""
    return README_SHOTS if os.environ.get("WIDGET_SCREENSHOTS") else tmp_path


def test_the_readme_screenshots_show_a_conversation_on_a_bakery_site(site: Site, browser: Browser,
                                                                    shots: Path) -> None:
    mila = {"name": "Mila", "greeting": "Hi, I'm Mila from Crumb & Co. Ask me about bread, cakes or opening hours.",
            "starters": ["Opening hours?", "Order a birthday cake", "Anything vegan?"]}
    cake, hours = site.persona("say-cake", **mila), site.persona("say-hours", **mila)

    desktop = browser.new_context(viewport={"width": 1280, "height": 800})
    try:
        page = desktop.new_page()
        page.goto(site.document(BAKERY.replace("BODY", site.tag(cake, accent="#9a3412", lang="en"))))
        w = open_and_send(page, "Can I order a birthday cake for Saturday?")
        expect(w.locator(".h")).to_have_css("background-color", "rgb(154, 52, 18)")  # data-accent is applied
        reply = finished(w).locator(".bd")
        expect(reply.locator("strong")).to_have_text("48 hours' notice")
        expect(reply.locator("strong")).to_have_css("font-weight", "700")  # markdown bold shows as bold
        expect(reply.locator("em").first).to_have_css("font-style", "italic")
        expect(reply.locator("li")).to_have_count(3)
        expect(reply).to_contain_text("You can collect it from 8 am at our Market Street shop.")
        page.screenshot(path=str(shots / "desktop.png"))
    finally:
        desktop.close()

    phone = browser.new_context(viewport={"width": 390, "height": 844}, is_mobile=True, has_touch=True,
                                device_scale_factor=2)
    try:
        page = phone.new_page()
        page.goto(site.document(BAKERY.replace("BODY", site.tag(hours, accent="#9a3412", lang="en"))))
        w = widget(page)
        w.locator("button.l").click()
        w.locator(".c button").first.click()  # the "Opening hours?" starter
        reply = finished(w).locator(".bd")
        expect(reply.locator("li")).to_have_count(3)
        expect(reply).to_contain_text("usually sells out by noon on Saturdays.")
        page.screenshot(path=str(shots / "mobile.png"))
    finally:
        phone.close()
    assert (shots / "desktop.png").stat().st_size > 10_000 and (shots / "mobile.png").stat().st_size > 10_000
