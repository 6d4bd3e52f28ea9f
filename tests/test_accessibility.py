"""The pages people look at pass axe-core with no violation: the demo page and its strict-CSP twin, with the
widget closed and open (axe reads into the widget's open shadow root), after a real exchange.

axe-core comes from the npm registry (tests/support/axe, installed by scripts/test.sh); Chromium is Debian's.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, Page, expect, sync_playwright

from tests.conftest import Stack
from widget_server.edges.cli.demo import ensure_demo

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", "--no-first-run", "--disable-quic"]
AXE = Path(__file__).parent / "support" / "axe" / "node_modules" / "axe-core" / "axe.min.js"

pytestmark = pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="scripts/browser.sh installs Chromium")


@pytest.fixture
def demo(stack: Stack) -> Stack:
    """The server with its demo tenant, persona and key (what `widget-server demo` makes), for the demo page."""
    asyncio.run(ensure_demo(stack.settings, stack.url))
    return stack


@pytest.fixture
def browser(demo: Stack) -> Iterator[Browser]:
    """After `demo`: while Playwright's sync API runs, its event loop holds this thread (no asyncio.run)."""
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield b
        b.close()


def violations(page: Page) -> list[dict[str, Any]]:
    """axe-core's WCAG 2.1 A/AA rules and best practices over the whole page, shadow roots included."""
    assert AXE.exists(), "axe-core is missing: scripts/test.sh installs it (npm ci --prefix tests/support/axe)"
    page.evaluate(AXE.read_text())
    result = page.evaluate("""async () => {
        const r = await axe.run(document, {runOnly: {type: 'tag',
            values: ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa', 'best-practice']}});
        return r.violations.map(v => ({id: v.id, impact: v.impact, help: v.help,
                                       nodes: v.nodes.map(n => n.target.join(' ')).slice(0, 5)}));
    }""")
    return list(result)


@pytest.mark.parametrize("path", ["/", "/demo/csp"])
def test_the_demo_pages_have_no_accessibility_violation(demo: Stack, browser: Browser, path: str) -> None:
    stack = demo
    context = browser.new_context(viewport={"width": 1280, "height": 800}, bypass_csp=True)  # to inject axe
    try:
        page = context.new_page()
        page.goto(stack.url + path)
        expect(page.locator("h1")).to_be_visible()
        found = violations(page)
        assert found == [], json.dumps(found, indent=1)
        page.get_by_role("button", name="Open the chat").click()
        message = page.get_by_role("textbox", name="Message")
        message.fill("Do you have rye bread today?")
        message.press("Enter")
        expect(page.get_by_text("Do you have rye bread today?")).to_be_visible()
        expect(page.locator("button[aria-label='Helpful']").first).to_be_visible()  # the reply has ended
        found = violations(page)
        assert found == [], json.dumps(found, indent=1)
    finally:
        context.close()
