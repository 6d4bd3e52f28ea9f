"""Browser tests' shared parts: Chromium (Debian's, through Playwright), a second origin serving host pages that
embed the widget, the `Site` a test builds those pages with, and helpers that drive the widget in a page."""

from __future__ import annotations

import concurrent.futures
import contextlib
import html
import secrets
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import Browser, Locator, Page, expect, sync_playwright
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import Route

from tests.conftest import Stack
from tests.support.servers import serve_in_thread

CHROMIUM = "/usr/bin/chromium"
BROWSER_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                "--disable-sync", "--no-first-run", "--disable-quic"]
needs_chromium = pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="scripts/browser.sh installs Chromium")


@contextlib.contextmanager
def chromium() -> Iterator[Browser]:
    """Chromium for one test module: while Playwright's sync API runs, its event loop runs on this thread, which
    would stop other modules' fixtures from calling asyncio.run (so module-scoped fixtures, not session ones)."""
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=BROWSER_ARGS)
        yield b
        b.close()


class HostPages:
    """A second origin: serves whatever HTML (and headers) a test registers under a path."""

    def __init__(self) -> None:
        self.pages: dict[str, tuple[str, dict[str, str]]] = {}

    async def serve(self, request: Request) -> Response:
        found = self.pages.get(request.url.path)
        if found is None:
            return Response("not found", status_code=404)
        return HTMLResponse(found[0], headers=found[1])

    def app(self) -> Starlette:
        return Starlette(routes=[Route("/{path:path}", self.serve)])


@contextlib.contextmanager
def host_pages() -> Iterator[tuple[HostPages, str]]:
    """The second origin, served on a loopback port of its own: (its pages, its origin)."""
    pages = HostPages()
    with serve_in_thread(pages.app()) as url:
        yield pages, url


def off_thread(fn: Callable[..., Any], *args: Any) -> Any:
    """Run a helper that uses asyncio.run away from Playwright's own loop."""
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(fn, *args).result()


@dataclass
class Site:
    """A tenant whose publishable key allows the host origin, and helpers to build host pages."""

    stack: Stack
    host: HostPages
    origin: str
    sk: str
    pk: str
    made: list[str] = field(default_factory=list)

    def persona(self, model: str = "echo", **fields: Any) -> str:
        slug = f"p-{secrets.token_hex(4)}"
        body = {"name": fields.pop("name", "Ada"), "slug": slug, "system_prompt": "You test.",
                "greeting": "Hi! How can I help?", "provider": {"kind": "openai", "model": model}, **fields}
        r = httpx.post(f"{self.stack.url}/v1/personas", json=body, headers={"Authorization": f"Bearer {self.sk}"})
        assert r.status_code == 201, r.text
        return slug

    def conversation(self, conversation_id: str) -> dict[str, Any]:
        r = httpx.get(f"{self.stack.url}/v1/conversations/{conversation_id}",
                      headers={"Authorization": f"Bearer {self.sk}"})
        assert r.status_code == 200, r.text
        return r.json()  # type: ignore[no-any-return]

    def tag(self, persona: str, key: str | None = None, **data: str) -> str:
        attrs = "".join(f' data-{k.replace("_", "-")}="{html.escape(v)}"' for k, v in data.items())
        return (f'<script src="{self.stack.url}/embed.js" data-key="{html.escape(key or self.pk)}" '
                f'data-persona="{html.escape(persona)}"{attrs} async></script>')

    def page(self, body: str, head: str = "", headers: dict[str, str] | None = None) -> str:
        return self.document(f'<!doctype html><html lang="en"><head><meta charset="utf-8">'
                             f'<meta name="viewport" content="width=device-width, initial-scale=1"><title>Shop</title>'
                             f'{head}</head><body><h1>A shop</h1><p><a href="#top">Skip</a></p>'
                             f'<div><p>Products…</p></div>{body}</body></html>', headers)

    def document(self, doc: str, headers: dict[str, str] | None = None) -> str:
        """Serve a whole HTML document on the host origin; returns its URL."""
        path = f"/page-{secrets.token_hex(4)}"
        self.host.pages[path] = (doc, headers or {})
        return self.origin + path

    def policy(self, body: dict[str, Any]) -> None:
        r = httpx.put(f"{self.stack.url}/v1/safety-policy", json=body, headers={"Authorization": f"Bearer {self.sk}"})
        assert r.status_code == 200, r.text

    def events(self, conversation_id: str, done: Callable[[list[str]], bool]) -> list[str]:
        """The conversation's event types, in order, once `done(types)` (the writer commits a little later)."""
        got = self.stack.wait_events(lambda events: done([e["type"] for e in events]), sk=self.sk,
                                     conversation=conversation_id)
        return [e["type"] for e in sorted(got, key=lambda e: e["id"])]


def widget(page: Page, index: int = 0) -> Locator:
    return page.locator("persona-widget").nth(index)


def last_reply(w: Locator) -> Locator:
    return w.locator(".m > .r.a").last


def open_and_send(page: Page, text: str, index: int = 0) -> Locator:
    """Open the panel with the launcher, type, press Enter; returns the widget."""
    w = widget(page, index)
    w.locator("button.l").click()
    expect(w.locator("[role=dialog]")).to_be_visible()
    w.locator("textarea").fill(text)
    w.locator("textarea").press("Enter")
    expect(w.locator(".m > .r.v").last).to_have_text(text)
    return w


