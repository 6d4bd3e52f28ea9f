"""The demo pages: what the snippet looks like, with the real widget embedded for the demo persona.

`/` embeds it as any site would; `/demo/csp` serves the same page under a strict Content-Security-Policy (no
'unsafe-inline', no 'unsafe-eval'), which the widget works under.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response

from widget_server.edges.assets import TEMPLATES_DIR
from widget_server.edges.state import app_state

TEMPLATES = Environment(loader=FileSystemLoader(TEMPLATES_DIR), autoescape=select_autoescape(default=True))
STRICT_CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' https: data:; "
              "connect-src 'self' ws: wss:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'")


def demo_config(data_dir: Path) -> dict[str, Any] | None:
    path = Path(data_dir) / "demo.json"
    return json.loads(path.read_text()) if path.exists() else None


def _render(request: Request, strict: bool) -> str:
    demo = demo_config(app_state(request).settings.data_dir)
    origin = str(request.base_url).rstrip("/")
    return TEMPLATES.get_template("index.html").render(demo=demo, origin=origin, strict=strict, csp=STRICT_CSP)


async def home(request: Request) -> Response:
    return HTMLResponse(_render(request, strict=False))


async def demo_csp(request: Request) -> Response:
    return HTMLResponse(_render(request, strict=True), headers={"Content-Security-Policy": STRICT_CSP})
