"""The console as a support team meets it, end to end in Chromium: sign in, look at the dashboard, set a policy, make
a persona, try it in the playground (a refusal's trace, a masked span), find a visitor's conversation by a word of
it and open it; axe-core finds nothing on any page on the way. With WIDGET_SCREENSHOTS=1 the README's console
screenshots are taken from this tour (docs/screenshots/console-*.png); otherwise they go to a temporary folder, and
are still taken."""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import yaml
from playwright.sync_api import Browser, Page, expect, sync_playwright

from tests.support.console import BROWSER_ARGS, CHROMIUM, Console, axe_violations, browser_sign_in, needs_chromium

pytestmark = needs_chromium
expect.set_options(timeout=30_000)
README_SHOTS = Path(__file__).resolve().parents[1] / "docs" / "screenshots"
POLICY = {
    "version": 1,
    "blocked_terms": [{"id": "rival", "terms": ["rivalcycles"], "action": "refuse"}],
    "pii": {"entities": ["email", "phone"], "action": "mask"},
    "topics": {
        "allowed": [{"id": "bikes", "description": "bikes, repairs, helmets and accessories",
                     "examples": ["do you sell helmets", "how much is a bike service", "what bikes do you have",
                                  "can you fix a puncture"]}],
        "denied": [{"id": "medical", "examples": ["what dose of ibuprofen should I take",
                                                  "which painkiller is best for a headache"],
                    "refusal": "I can't give medical advice, but I can help with your bike."}],
        "off_topic": "refuse"},
}


@pytest.fixture
def shots(tmp_path: Path) -> Path:
    return README_SHOTS if os.environ.get("WIDGET_SCREENSHOTS") else tmp_path


@pytest.fixture
def owner(console: Console) -> str:
    return str(console.user("owner")["email"])


@pytest.fixture
def browser(console: Console, owner: str) -> Iterator[Browser]:
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=BROWSER_ARGS)
        yield b
        b.close()


def clean(page: Page) -> None:
    found = axe_violations(page)
    assert found == [], json.dumps(found, indent=1)


def test_a_support_team_tour_of_the_console(console: Console, owner: str, browser: Browser, shots: Path) -> None:
    stack = console.stack
    r = httpx.put(f"{stack.url}/v1/safety-policy", content=yaml.safe_dump(POLICY),
                  headers={**stack.auth, "Content-Type": "application/yaml"}, timeout=120)
    assert r.status_code == 200, r.text
    slug = stack.persona(name="Spokes", slug="spokes", system_prompt="You are Spokes, the bike shop's assistant.",
                         greeting="Hi, I'm Spokes from the bike shop. How can I help?")
    for text in ("Do you sell helmets for kids?", "Can you fix a puncture on a road bike today?",
                 "My email is ann@example.com, can you send the invoice?", "Is RivalCycles cheaper?",
                 "I want to talk to a human please"):
        stack.turn(slug, text, timeout=60)
    stack.wait_events(lambda got: sum(e["type"] == "reply.completed" for e in got) >= 5)

    context = browser.new_context(viewport={"width": 1280, "height": 900}, bypass_csp=True)  # to inject axe
    page = context.new_page()
    browser_sign_in(page, console.url, owner)
    expect(page.get_by_role("heading", name="Dashboard")).to_be_visible()
    expect(page.locator("svg[role=img]").first).to_be_visible()
    clean(page)
    page.screenshot(path=str(shots / "console-dashboard.png"), full_page=True)

    page.get_by_role("navigation", name="Console").get_by_role("link", name="Personas").click()
    page.get_by_role("link", name="Spokes").click()
    expect(page.get_by_label("Greeting")).to_have_value("Hi, I'm Spokes from the bike shop. How can I help?")
    clean(page)

    page.get_by_role("navigation", name="Console").get_by_role("link", name="Safety policy").click()
    expect(page.get_by_role("heading", name="Safety policy")).to_be_visible()
    clean(page)

    page.get_by_role("navigation", name="Console").get_by_role("link", name="Playground").click()
    page.get_by_label("Persona", exact=True).select_option(label=f"Spokes ({slug})")
    page.get_by_role("button", name="Open").click()
    box = page.get_by_label("Message", exact=True)
    for text in ("Which painkiller is best for a headache?", "Do you sell helmets? Call me on +44 20 7946 0958"):
        box.fill(text)
        box.press("Enter")
        expect(page.get_by_role("status").filter(has_text="Reply complete.")).to_be_visible(timeout=60_000)
    saved = page.locator('.column[data-variant="saved"]')
    refusal = saved.locator(".msg.persona").nth(1)  # after the greeting
    expect(refusal.locator(".text")).to_have_text("I can't give medical advice, but I can help with your bike.")
    refusal.locator("details.trace").evaluate("d => d.open = true")
    expect(refusal.locator("details.trace").get_by_text("topic.denied.medical")).to_be_visible()
    expect(saved.locator(".msg.visitor").last.locator("mark.masked")).to_be_visible()
    clean(page)
    page.screenshot(path=str(shots / "console-playground.png"), full_page=True)

    page.get_by_role("navigation", name="Console").get_by_role("link", name="Transcripts").click()
    page.get_by_label("Search messages").fill("puncture")
    page.get_by_role("button", name="Apply").click()
    expect(page.locator("td.snippet mark")).to_have_text(re.compile("puncture", re.I))
    clean(page)
    page.screenshot(path=str(shots / "console-transcripts.png"), full_page=True)
    page.locator("table.transcripts a").first.click()
    expect(page.get_by_text("Can you fix a puncture on a road bike today?").first).to_be_visible()  # (echoed back)
    clean(page)

    mobile = browser.new_context(viewport={"width": 390, "height": 844}, bypass_csp=True)
    small = mobile.new_page()
    browser_sign_in(small, console.url, owner)
    small.goto(console.url + "/console/transcripts?escalated=1")
    expect(small.locator("table.transcripts")).to_be_visible()
    assert small.evaluate("document.documentElement.scrollWidth <= document.documentElement.clientWidth")
    clean(small)
    small.screenshot(path=str(shots / "console-mobile.png"), full_page=False)
    mobile.close()
    context.close()
