"""Console pages: the Jinja2 environment (autoescaped: visitor messages and persona fields are text, never HTML),
the headers every console response carries, and console errors as pages."""

from __future__ import annotations

import json
import time
from typing import Any

from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from widget_server.edges.assets import TEMPLATES_DIR
from widget_server.edges.console.auth import context

# No inline script or style anywhere: scripts and styles come from /static; fetches and the playground's stream go
# to this server only; forms post to it only; no page of the console may be framed.
CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
       "font-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'")
HEADERS = {"content-security-policy": CSP, "x-content-type-options": "nosniff", "referrer-policy": "same-origin",
           "x-frame-options": "DENY", "cache-control": "no-store", "cross-origin-opener-policy": "same-origin"}

TEMPLATES = Environment(loader=FileSystemLoader(TEMPLATES_DIR), autoescape=select_autoescape(default=True),
                        trim_blocks=True, lstrip_blocks=True)
TEMPLATES.filters["tojson_pretty"] = lambda value: json.dumps(value, indent=2, ensure_ascii=False, default=str)

# The navigation, in order: (path, label, capability). Inbox and tests are the takeover's and the test suites'.
NAV = [("/console/", "Dashboard"), ("/console/personas", "Personas"), ("/console/policy", "Safety policy"),
       ("/console/playground", "Playground"), ("/console/transcripts", "Transcripts"),
       ("/console/inbox", "Inbox"), ("/console/tests", "Tests")]


def page(request: Request, template: str, status_code: int = 200, **values: Any) -> HTMLResponse:
    """A console page rendered from `templates/console/<template>` with the common context."""
    html = TEMPLATES.get_template(f"console/{template}").render(**context(request), nav=NAV, **values)
    return HTMLResponse(html, status_code=status_code)


def error_page(request: Request, status_code: int, message: str, body: dict[str, Any]) -> Response:
    """A console error: a page for a browser, the JSON error body for a script (fetch asks for JSON)."""
    if "text/html" not in request.headers.get("accept", "") or request.headers.get("x-csrf-token"):
        return JSONResponse(body, status_code=status_code)
    titles = {401: "Signed out", 403: "Not allowed", 404: "Not found", 429: "Too many requests"}
    return page(request, "error.html", status_code=status_code, title=titles.get(status_code, "Something went wrong"),
                message=message, status=status_code)


class ConsoleHeaders:
    """Every response under /console (pages, redirects, errors) carries the console's security headers, and
    `Server-Timing: app;dur=<ms>`: the server's time to the response's start (what `bench/console.py` reads)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not (scope["path"] == "/console" or scope["path"].startswith("/console/")):
            return await self.app(scope, receive, send)

        started = time.perf_counter()

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                present = {k.lower() for k, _ in message.get("headers", [])}
                timing = f"app;dur={(time.perf_counter() - started) * 1000:.1f}"
                message["headers"] = [*message.get("headers", []),
                                      *((k.encode(), v.encode()) for k, v in HEADERS.items()
                                        if k.encode() not in present), (b"server-timing", timing.encode())]
            await send(message)

        await self.app(scope, receive, send_with_headers)


ErrorHandler = Any  # Starlette's exception handler: (Request, Exception) -> Awaitable[Response]


def console_errors(handler: ErrorHandler) -> ErrorHandler:
    """The app's error handler, answering a console page's error as a page (its JSON body elsewhere)."""
    async def handle(request: Request, exc: Exception) -> Response:
        response: Response = await handler(request, exc)
        path = request.url.path
        if not (path == "/console" or path.startswith("/console/")) or not isinstance(response, JSONResponse):
            return response
        body = json.loads(bytes(response.body))
        message = str(body.get("error", {}).get("message", "something went wrong"))
        rendered = error_page(request, response.status_code, message, body)
        for name in ("retry-after", "allow"):
            if name in response.headers:
                rendered.headers[name] = response.headers[name]
        return rendered
    return handle
