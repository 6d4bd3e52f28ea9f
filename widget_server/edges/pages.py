"""The demo page: what the snippet looks like, and a live test chat with the demo persona."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response

TEMPLATES = Environment(
    loader=FileSystemLoader(Path(__file__).resolve().parent.parent / "templates"),
    autoescape=select_autoescape(default=True),
)
STATIC_DIR = Path(__file__).resolve().parents[2] / "static"


def demo_config(data_dir: Path) -> dict[str, Any] | None:
    path = Path(data_dir) / "demo.json"
    return json.loads(path.read_text()) if path.exists() else None


async def home(request: Request) -> Response:
    demo = demo_config(request.state.settings.data_dir)
    origin = str(request.base_url).rstrip("/")
    html = TEMPLATES.get_template("index.html").render(demo=demo, origin=origin)
    csp = "default-src 'self'; connect-src 'self' ws: wss:; style-src 'self'; img-src 'self' https: data:"
    return HTMLResponse(html, headers={"Content-Security-Policy": csp})
