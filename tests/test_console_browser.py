"""Signing in and out of the console in Chromium, under its strict CSP, and the sign-in page's accessibility."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator

import pytest
from playwright.sync_api import Browser, Page, expect, sync_playwright

from tests.support.console import BROWSER_ARGS, CHROMIUM, PASSWORD, Console, axe_violations, browser_sign_in
from tests.support.console import needs_chromium as _needs_chromium

pytestmark = _needs_chromium
expect.set_options(timeout=15_000)


@pytest.fixture
def browser() -> Iterator[Browser]:
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=BROWSER_ARGS)
        yield b
        b.close()


def csp_watch(page: Page) -> list[str]:
    """Messages of the page's console about its Content-Security-Policy (there must be none)."""
    seen: list[str] = []
    page.on("console", lambda m: seen.append(m.text) if "Content Security Policy" in m.text else None)
    return seen


def no_horizontal_scroll(page: Page) -> bool:
    return bool(page.evaluate("document.documentElement.scrollWidth <= document.documentElement.clientWidth"))


def test_sign_in_wrong_then_right_then_sign_out(console: Console, browser: Browser) -> None:
    user = console.user("agent")
    page = browser.new_page()
    csp = csp_watch(page)
    page.goto(console.url + "/console/personas")  # not signed in: the sign-in page, which comes back here
    expect(page).to_have_url(re.compile(r"/console/login\?next=%2Fconsole%2Fpersonas$"))
    page.get_by_label("E-mail").fill(user["email"])
    page.get_by_label("Password").fill("this is not it")
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("alert")).to_have_text("That e-mail and password do not match an account.")
    expect(page.get_by_label("E-mail")).to_have_value(user["email"])  # kept; the password is not
    expect(page.get_by_label("Password")).to_have_value("")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_label("Password").press("Enter")
    expect(page).to_have_url(console.url + "/console/personas")
    expect(page.get_by_role("navigation", name="Console").get_by_role("link", name="Personas")).to_have_attribute(
        "aria-current", "page")
    expect(page.get_by_text("Agent Tester")).to_be_visible()
    cookies = {c["name"]: c for c in page.context.cookies()}
    assert cookies["console_session"]["httpOnly"] and cookies["console_session"]["sameSite"] == "Strict"
    assert page.evaluate("document.cookie") == ""  # HttpOnly: no script of the page can read it
    page.get_by_role("button", name="Sign out").click()
    expect(page.get_by_role("status")).to_have_text("You have signed out.")
    page.goto(console.url + "/console/")
    expect(page).to_have_url(re.compile(r"/console/login"))
    assert csp == []


def test_the_keyboard_alone_signs_in(console: Console, browser: Browser) -> None:
    user = console.user("viewer")
    page = browser.new_page()
    page.goto(console.url + "/console/login")
    expect(page.get_by_label("E-mail")).to_be_focused()  # where the page starts
    page.keyboard.type(user["email"])
    page.keyboard.press("Tab")
    page.keyboard.type(PASSWORD)
    page.keyboard.press("Tab")
    expect(page.get_by_role("button", name="Sign in")).to_be_focused()
    outline = page.evaluate("getComputedStyle(document.activeElement).outlineStyle")
    assert outline != "none"  # the focus is visible
    page.keyboard.press("Enter")
    expect(page).to_have_url(console.url + "/console/")


@pytest.mark.parametrize("width", [1280, 390])
def test_the_sign_in_and_error_pages_pass_axe_at_every_width(console: Console, browser: Browser, width: int) -> None:
    context = browser.new_context(viewport={"width": width, "height": 800}, bypass_csp=True)  # to inject axe
    try:
        page = context.new_page()
        page.goto(console.url + "/console/login")
        page.get_by_role("button", name="Sign in").click()  # with nothing filled in: the browser says what is missing
        page.get_by_label("E-mail").fill("someone@example.com")
        page.get_by_label("Password").fill("wrong")
        page.get_by_role("button", name="Sign in").click()
        expect(page.get_by_role("alert")).to_be_visible()
        found = axe_violations(page)
        assert found == [], json.dumps(found, indent=1)
        assert no_horizontal_scroll(page)
        browser_sign_in(page, console.url, console.user("owner")["email"])
        found = axe_violations(page)
        assert found == [], json.dumps(found, indent=1)
        assert no_horizontal_scroll(page)
        page.goto(console.url + "/console/no-such-page")
        expect(page.get_by_role("heading", name="Not found")).to_be_visible()
        found = axe_violations(page)
        assert found == [], json.dumps(found, indent=1)
    finally:
        context.close()
