"""The console for tests: users made in the database of a running stack, HTTP clients signed in as them, and
Chromium pages signed in through the real sign-in form.

A password hash costs 0.4 s (scrypt), so every test user shares one password hashed once per test session; each
sign-in still verifies it for real.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import functools
import re
import secrets
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from tests.conftest import Stack
from tests.support.browser import BROWSER_ARGS, CHROMIUM, needs_chromium  # noqa: F401 (what console tests import)
from widget_server.backends.storage import open_storage
from widget_server.clock import now
from widget_server.domain.console_users import hash_password
from widget_server.ids import new_id

PASSWORD = "correct horse battery staple"
AXE = Path(__file__).parent / "axe" / "node_modules" / "axe-core" / "axe.min.js"


@functools.cache
def _password_hash() -> str:
    return hash_password(PASSWORD)


async def _add_user(db_url: str, tenant_id: str, role: str, email: str) -> dict[str, Any]:
    storage = await open_storage(db_url)
    try:
        row = {"id": new_id("usr"), "tenant_id": tenant_id, "email": email, "role": role,
               "display_name": f"{role.title()} Tester", "password_hash": _password_hash(), "created_at": now()}
        await storage.console.add_user(row)
    finally:
        await storage.close()
    return row


@dataclass
class Console:
    """A stack and its console: `user(role)` makes a user of the stack's tenant (or of `tenant_id`)."""

    stack: Stack
    clients: list[httpx.Client] = field(default_factory=list)

    @property
    def url(self) -> str:
        return self.stack.url

    def user(self, role: str = "owner", tenant_id: str | None = None) -> dict[str, Any]:
        email = f"{role}-{secrets.token_hex(4)}@example.com"
        made = _add_user(self.stack.settings.resolved_database_url, tenant_id or self.stack.tenant_id, role, email)
        with concurrent.futures.ThreadPoolExecutor(1) as pool:  # its own loop: Playwright's sync API may hold this one
            return pool.submit(asyncio.run, made).result()

    def client(self) -> httpx.Client:
        c = httpx.Client(base_url=self.url, headers={"Accept": "text/html"}, follow_redirects=False, timeout=30)
        self.clients.append(c)
        return c

    def signed_in(self, role: str = "owner", tenant_id: str | None = None) -> httpx.Client:
        """An HTTP client signed in (through the form) as a new user of this role."""
        user = self.user(role, tenant_id)
        c = self.client()
        r = sign_in(c, user["email"], PASSWORD)
        assert r.status_code == 303, r.text
        return c


def csrf_of(html: str) -> str:
    found = re.search(r'name="csrf" value="([^"]*)"', html) or re.search(r'name="csrf-token" content="([^"]*)"', html)
    assert found, "the page has no CSRF token"
    return found.group(1)


def sign_in(client: httpx.Client, email: str, password: str, next_: str = "/console/") -> httpx.Response:
    form = client.get("/console/login")
    assert form.status_code == 200, form.text
    return client.post("/console/login", data={"email": email, "password": password, "csrf": csrf_of(form.text),
                                               "next": next_})


def token_for(client: httpx.Client, path: str = "/console/") -> str:
    """The CSRF token of the signed-in session (read from a page, as a browser would)."""
    r = client.get(path)
    assert r.status_code == 200, r.text
    return csrf_of(r.text)


def browser_sign_in(page: Any, url: str, email: str, password: str = PASSWORD) -> None:
    """Sign in through the form in Chromium and wait for the dashboard."""
    page.goto(url + "/console/login")
    page.get_by_label("E-mail").fill(email)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(re.compile(r".*/console/.*"))
    assert "/console/login" not in page.url, page.content()[:2000]


def axe_violations(page: Any) -> list[dict[str, Any]]:
    """axe-core's WCAG 2.1 A/AA rules and best practices over the page (it must be opened with bypass_csp)."""
    assert AXE.exists(), "axe-core is missing: scripts/test.sh installs it (npm ci --prefix tests/support/axe)"
    page.evaluate(AXE.read_text())
    result = page.evaluate("""async () => {
        const r = await axe.run(document, {runOnly: {type: 'tag',
            values: ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa', 'best-practice']}});
        return r.violations.map(v => ({id: v.id, impact: v.impact, help: v.help,
                                       nodes: v.nodes.map(n => n.target.join(' ')).slice(0, 5)}));
    }""")
    return list(result)
