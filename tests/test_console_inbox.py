"""The console's inbox, over HTTP (pages, actions, the live streams) and in Chromium with two browser contexts: a
visitor on a host page of another origin and an agent in the console. What an agent notices: a visitor asking for a
person shows up at once, claiming it tells the visitor, both see each other type, the agent's messages reach the
widget with the agent's name and notes never do, and after a resolve the bot answers again."""

from __future__ import annotations

import asyncio
import json
import os
import re
import secrets
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import Browser, expect

from tests.conftest import Stack
from tests.support.browser import HostPages, Site, chromium, host_pages, off_thread, open_and_send, widget
from tests.support.console import (
    Console,
    axe_violations,
    browser_sign_in,
    needs_chromium,
    token_for,
)
from tests.support.sse import Events
from tests.support.upstream import Upstream
from widget_server.backends.storage import open_storage
from widget_server.clock import now
from widget_server.ids import new_id

POLICY = {"version": 1, "escalation": {"on_request": True}}
README_SHOTS = Path(__file__).resolve().parents[1] / "docs" / "screenshots"
expect.set_options(timeout=15_000)


def _escalated(stack: Stack, marker: str = "") -> tuple[Any, str]:
    """A widget conversation waiting for a person: (the visitor's socket, the conversation id)."""
    assert httpx.put(f"{stack.url}/v1/safety-policy", json=POLICY, headers=stack.auth).status_code == 200
    ws = stack.open(stack.persona("echo", name="Ada", system_prompt=f"You test. {marker}"))
    conversation_id = ws.recv()["conversation_id"]
    ws.send({"type": "message", "client_id": "c1", "text": "can I talk to a human please"})
    ws.until("reply.end")
    return ws, conversation_id


async def _canned(stack: Stack, tenant_id: str, shortcut: str, text: str) -> None:
    storage = await open_storage(stack.settings.resolved_database_url)
    try:
        await storage.console.add_canned({"id": new_id("cnd"), "tenant_id": tenant_id, "shortcut": shortcut,
                                          "text": text, "created_at": now()})
    finally:
        await storage.close()


def test_owners_keep_canned_replies_that_agents_see_and_no_other_tenant_does(console: Console) -> None:
    owner = console.signed_in("owner")
    token = token_for(owner, "/console/inbox")
    made = _post(owner, "/console/inbox/canned", token, shortcut="/thanks", text="Thanks, <b>glad</b> to help!")
    assert made.status_code == 201, made.text
    again = _post(owner, "/console/inbox/canned", token, shortcut="thanks", text="again")
    assert again.status_code == 409 and again.json()["error"]["code"] == "canned.shortcut_taken"
    bad = _post(owner, "/console/inbox/canned", token, shortcut="Not OK!", text="x")
    assert bad.status_code == 400 and bad.json()["error"]["details"]["field"] == "shortcut"
    agent = console.signed_in("agent")
    page = agent.get("/console/inbox").text
    assert "/thanks" in page and "Thanks, &lt;b&gt;glad&lt;/b&gt; to help!" in page  # as text
    assert _post(agent, "/console/inbox/canned", token_for(agent, "/console/inbox"), shortcut="x",
                 text="y").status_code == 403  # agents use them; owners keep them
    other = console.signed_in("owner", tenant_id=console.stack.tenant()["tenant_id"])
    assert "/thanks" not in other.get("/console/inbox").text
    canned_id = re.search(r'/console/inbox/canned/(cnd_[0-9a-z]+)/delete', page := owner.get("/console/inbox").text)
    assert canned_id
    assert _post(other, f"/console/inbox/canned/{canned_id.group(1)}/delete",
                 token_for(other, "/console/inbox")).status_code == 404
    assert _post(owner, f"/console/inbox/canned/{canned_id.group(1)}/delete", token).status_code == 200
    assert "/thanks" not in owner.get("/console/inbox").text


def _post(client: httpx.Client, path: str, token: str, **body: Any) -> httpx.Response:
    return client.post(path, json=body, headers={"X-CSRF-Token": token, "Accept": "application/json"})


def test_an_agent_claims_replies_notes_and_resolves_from_the_console(console: Console,
                                                                     upstream: tuple[Upstream, str]) -> None:
    stack = console.stack
    agent = console.signed_in("agent")
    token = token_for(agent, "/console/inbox")
    inbox = Events(agent, "/console/inbox/events")
    try:
        inbox.wait(lambda n, d: n == "ready")
        marker = secrets.token_hex(6)
        ws, conversation_id = _escalated(stack, marker)
        alert = inbox.wait(lambda n, d: n == "inbox" and d.get("what") == "escalated")
        assert alert["conversation_id"] == conversation_id and alert["reason"] == "escalation.requested"
    finally:
        inbox.close()
    listed = agent.get("/console/inbox")
    assert listed.status_code == 200 and f'href="/console/inbox/{conversation_id}"' in listed.text
    assert "can I talk to a human please" in listed.text and "waiting" in listed.text

    page = agent.get(f"/console/inbox/{conversation_id}")
    after = re.search(r'data-after="([0-9.]+)"', page.text)
    assert page.status_code == 200 and after
    live = Events(agent, f"/console/inbox/{conversation_id}/events?after={after.group(1)}")
    try:
        claimed = _post(agent, f"/console/inbox/{conversation_id}/claim", token)
        assert claimed.status_code == 200 and claimed.json()["status"] == "agent"
        joined = ws.recv()
        assert joined["status"] == "agent_joined" and joined["agent"]["name"] == "Agent Tester"
        ws.send({"type": "typing", "active": True})
        live.wait(lambda n, d: n == "agents" and d == {"type": "typing", "who": "visitor", "active": True,
                                                         "seq": d["seq"]})
        assert _post(agent, f"/console/inbox/{conversation_id}/typing", token, active=True).status_code == 204
        assert ws.recv() == {"type": "typing", "who": "agent", "active": True, "seq": joined["seq"] + 1}
        note = _post(agent, f"/console/inbox/{conversation_id}/messages", token, text="VIP", internal=True)
        assert note.status_code == 201
        live.wait(lambda n, d: n == "agents" and d.get("type") == "note" and d["text"] == "VIP")
        said = _post(agent, f"/console/inbox/{conversation_id}/messages", token, text="Hello, I can help.")
        assert said.status_code == 201
        shown = ws.recv()  # the note never came: the agent's message is the next frame
        assert shown["type"] == "agent.message" and shown["text"] == "Hello, I can help."
        ws.send({"type": "message", "client_id": "c2", "text": "great, thanks"})
        live.wait(lambda n, d: n == "conversation" and d.get("type") == "message.accepted"
                  and d["text"] == "great, thanks")
        assert [r for r in upstream[0].requests if marker in str(r["messages"][0]["content"])] == []
        resolved = _post(agent, f"/console/inbox/{conversation_id}/resolve", token)
        assert resolved.status_code == 200 and resolved.json()["status"] == "bot"
        assert ws.until("escalation")[-1]["status"] == "resolved"
        live.wait(lambda n, d: n == "conversation" and d.get("status") == "resolved")
    finally:
        live.close()


def test_the_agent_sees_the_visitor_come_and_go(console: Console) -> None:
    stack = console.stack
    agent = console.signed_in("agent")
    ws, conversation_id = _escalated(stack)
    page = agent.get(f"/console/inbox/{conversation_id}")
    assert 'id="presence" class="presence here"' in page.text  # they just asked for a person
    after = re.search(r'data-after="([0-9.]+)"', page.text)
    assert after
    live = Events(agent, f"/console/inbox/{conversation_id}/events?after={after.group(1)}")
    try:
        # The visitor opens the chat in another tab: the newer socket takes the conversation (the first is
        # closed with 4409), and that first socket's end is not the visitor leaving.
        row = httpx.get(f"{stack.url}/v1/conversations/{conversation_id}", headers=stack.auth).json()
        persona = row["persona_id"]  # (a session names its persona by slug or id)
        token, _ = stack.token(persona, visitor_id=row["visitor_id"])
        again = stack.open(persona, token=token, resume={"conversation_id": conversation_id, "last_seq": 0})
        assert again.recv()["type"] == "ready"
        assert ws.close_code() == 4409
        live.wait(lambda n, d: n == "agents" and d.get("type") == "presence")
        again.close()
        gone = live.wait(lambda n, d: n == "agents" and d.get("type") == "presence" and d["online"] is False)
        assert gone["at"]
        shown = [d["online"] for n, d in live.got if n == "agents" and d.get("type") == "presence"]
        assert shown == [True, False], shown
    finally:
        live.close()
        ws.close()
    row = httpx.get(f"{stack.url}/v1/conversations/{conversation_id}", headers=stack.auth).json()
    assert row["visitor_online"] is False and row["visitor_seen_at"] == gone["at"]
    listed = agent.get("/console/inbox")
    assert "Visitor left" in listed.text and "Visitor here" not in listed.text


def test_roles_tenants_and_csrf_hold_on_the_inbox(console: Console) -> None:
    stack = console.stack
    _, conversation_id = _escalated(stack)
    viewer = console.signed_in("viewer")
    token = token_for(viewer, "/console/inbox")
    assert viewer.get(f"/console/inbox/{conversation_id}").status_code == 200  # a viewer reads
    refused = _post(viewer, f"/console/inbox/{conversation_id}/claim", token)
    assert refused.status_code == 403  # and cannot take over
    agent = console.signed_in("agent")
    no_csrf = agent.post(f"/console/inbox/{conversation_id}/claim", headers={"Accept": "application/json"})
    assert no_csrf.status_code == 403
    other = console.signed_in("owner", tenant_id=stack.tenant()["tenant_id"])
    other_token = token_for(other, "/console/inbox")
    assert other.get(f"/console/inbox/{conversation_id}").status_code == 404
    assert _post(other, f"/console/inbox/{conversation_id}/claim", other_token).status_code == 404
    assert conversation_id not in other.get("/console/inbox").text
    second = console.signed_in("agent")
    first_token, second_token = token_for(agent, "/console/inbox"), token_for(second, "/console/inbox")
    assert _post(agent, f"/console/inbox/{conversation_id}/claim", first_token).status_code == 200
    lost = _post(second, f"/console/inbox/{conversation_id}/claim", second_token)
    assert lost.status_code == 409 and lost.json()["error"]["details"]["agent"]["name"] == "Agent Tester"
    page = second.get(f"/console/inbox/{conversation_id}")
    assert "with Agent Tester" in page.text and "Reply to the visitor" not in page.text


# In Chromium: a visitor on a page of another origin, an agent in the console.

@pytest.fixture(scope="module")
def host_server() -> Iterator[tuple[HostPages, str]]:
    with host_pages() as served:
        yield served


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with chromium() as b:
        yield b


@needs_chromium
def test_in_chromium_a_visitor_and_an_agent_talk_through_a_takeover(
        stack_factory: Callable[..., Stack], host_server: tuple[HostPages, str], browser: Browser,
        upstream: tuple[Upstream, str], tmp_path: Path) -> None:
    shots = README_SHOTS if os.environ.get("WIDGET_SCREENSHOTS") else tmp_path  # (as test_console_tour.py)
    stack: Stack = off_thread(stack_factory)
    pages, origin = host_server
    keys = off_thread(stack.tenant, [origin])
    site = Site(stack, pages, origin, keys["sk"], keys["pk"])
    site.policy(POLICY)
    marker = secrets.token_hex(6)
    persona = site.persona("echo", name="Ada", system_prompt=f"You test. {marker}")
    agent_row = Console(Stack(stack.url, stack.settings, keys["tenant_id"], keys["sk"], keys["pk"],
                              stack.exits)).user("agent")

    off_thread(asyncio.run, _canned(stack, keys["tenant_id"], "ships", "Your order ships today."))
    agent_ctx = browser.new_context(viewport={"width": 1280, "height": 900}, bypass_csp=True)  # axe is injected
    visitor_ctx = browser.new_context(viewport={"width": 390, "height": 800})
    try:
        desk = agent_ctx.new_page()
        browser_sign_in(desk, stack.url, agent_row["email"])
        desk.goto(stack.url + "/console/inbox")
        expect(desk.get_by_text("Nobody is waiting.").first).to_be_visible()
        found = axe_violations(desk)
        assert found == [], json.dumps(found, indent=1)

        visitor = visitor_ctx.new_page()
        visitor.goto(site.page(site.tag(persona)))
        w = open_and_send(visitor, "Is there a person there? I need real help.")
        expect(w.locator(".m > .r.g .bd")).to_have_text(["Connecting you with a person…"])
        expect(w.locator(".m > .r.n")).to_have_count(0)  # said once, not again as a note

        # The agent is alerted where they are: the list refreshes and the Inbox tab counts it.
        waiting = desk.locator(".queue-item")
        expect(waiting).to_have_count(1)
        expect(waiting.first).to_contain_text("Is there a person there? I need real help.")
        expect(desk.locator(".nav a[href='/console/inbox'] .count")).to_have_text("1")
        expect(desk).to_have_title(re.compile(r"^\(1\) Inbox"))
        waiting.first.get_by_role("button", name="Claim").click()
        expect(desk.get_by_role("heading", name=re.compile("Conversation with a visitor of Ada"))).to_be_visible()
        expect(desk.locator("#status")).to_have_text("with Agent Tester")
        expect(w.locator(".m > .r.n").last).to_have_text("A person joined the chat.")
        found = axe_violations(desk)
        assert found == [], json.dumps(found, indent=1)

        # Typing, both ways.
        w.locator("textarea").press_sequentially("where is my ord")
        expect(desk.get_by_text("The visitor is typing…")).to_be_visible()
        box = desk.get_by_label("Reply to the visitor")
        box.press_sequentially("Let me look")
        expect(w.locator(".r.ag .d")).to_be_visible()  # the agent's typing dots in the widget
        w.locator("textarea").press_sequentially("er?")
        w.locator("textarea").press("Enter")
        expect(desk.locator(".message.role-visitor").last).to_have_text(re.compile("where is my order\\?"))

        box.fill("")
        box.press_sequentially("/shi")  # a canned reply, by its shortcut
        expect(desk.get_by_role("option", name="/ships Your order ships today.")).to_be_visible()
        box.press("Enter")
        expect(box).to_have_value("Your order ships today.")
        box.press("Enter")
        expect(w.locator(".r.ag").last).to_have_text("Agent TesterYour order ships today.")
        expect(w.locator(".r.ag .d")).to_have_count(0)  # the indicator went with the message
        box.fill("Customer seems upset")
        desk.get_by_role("button", name="Add internal note").click()
        expect(desk.locator(".message.note").last).to_contain_text("Customer seems upset")
        desk.screenshot(path=str(shots / "console-inbox.png"), full_page=True)
        visitor.screenshot(path=str(shots / "takeover-widget.png"), full_page=False)

        # The visitor leaves the page mid-takeover (the agent sees them go) and comes back: the agent's message
        # is there, the note never, and the agent sees them here again.
        expect(desk.locator("#presence")).to_have_text("here")
        visitor.goto("about:blank")
        expect(desk.locator("#presence")).to_have_text("left just now")
        visitor.go_back()
        expect(desk.locator("#presence")).to_have_text("here")
        w = widget(visitor)
        w.locator("button.l").click()
        expect(w.locator(".r.ag").filter(has_text="Your order ships today.")).to_have_count(1)
        assert "Customer seems upset" not in w.locator(".m").inner_text()
        assert [r for r in upstream[0].requests if marker in str(r["messages"][0]["content"])] == []

        desk.get_by_role("button", name="Resolve: back to the bot").click()
        expect(w.locator(".m > .r.n").last).to_have_text(
            "Your request was marked as solved. You can keep writing here.")
        w.locator("textarea").fill("thanks! one more thing")
        w.locator("textarea").press("Enter")
        expect(w.locator(".m > .r.a").last).to_contain_text("thanks! one more thing")  # the bot (echo) again
    finally:
        agent_ctx.close()
        visitor_ctx.close()
