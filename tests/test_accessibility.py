"""The pages people look at pass axe-core with no violation: the demo page and its strict-CSP twin, with the
widget closed and open (axe reads into the widget's open shadow root), after a real exchange.

axe-core comes from the npm registry (tests/support/axe, installed by scripts/test.sh); Chromium is Debian's.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, expect, sync_playwright

from tests.conftest import Stack
from tests.support.console import BROWSER_ARGS, CHROMIUM
from tests.support.console import axe_violations as violations
from widget_server.edges.cli.demo import ensure_demo

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
        b = p.chromium.launch(executable_path=CHROMIUM, args=BROWSER_ARGS)
        yield b
        b.close()


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
        # the visitor's row: /demo/csp also lists the widget's events ("message: Do you have…"), and the tiny model
        # may answer with the question itself
        expect(page.locator(".r.v").get_by_text("Do you have rye bread today?", exact=True)).to_be_visible()
        expect(page.locator("button[aria-label='Helpful']").first).to_be_visible()  # the reply has ended
        found = violations(page)
        assert found == [], json.dumps(found, indent=1)
    finally:
        context.close()
