"""`GET /health`: storage, provider and analytics-writer status; 503 when storage is down."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from widget_server import __version__
from widget_server.edges.state import app_state


async def health(request: Request) -> Response:
    state = app_state(request)
    d = state.deps
    storage: dict[str, Any] = {"status": "ok", "dialect": d.storage.dialect}
    try:
        await d.storage.ping()
    except Exception as exc:  # report it, do not raise: this is the endpoint that says what is broken
        storage = {"status": "error", "dialect": d.storage.dialect, "error": type(exc).__name__}
    try:
        provider = await d.providers.health()
    except Exception as exc:
        provider = {"status": "error", "error": str(exc)}
    bus = {"status": "ok" if d.hub.bus.available else "reconnecting", "kind": d.hub.bus.kind}
    ok = storage["status"] == "ok"  # the bus away degrades (new sockets are told to try again), REST still works
    whole = ok and provider.get("status") == "ok" and bus["status"] == "ok"
    status = "ok" if whole else ("degraded" if ok else "error")
    writer = state.writer
    events = {"status": "ok" if writer.healthy else "retrying", "pending": writer.pending}
    body = {"status": status, "version": __version__, "storage": storage, "provider": provider, "events": events,
            "bus": bus}
    return JSONResponse(body, status_code=200 if ok else 503)
