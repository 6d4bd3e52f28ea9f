"""Only configured host names are served: the Host header is reflected into the demo page's script URL and the
session's `ws_url` (when `WIDGET_PUBLIC_URL` is unset), so a forged one must not get that far.

`WIDGET_ALLOWED_HOSTS` lists them (comma-separated; `*.example.com` for subdomains, `*` for any); by default the
host of `WIDGET_PUBLIC_URL`, else the loopback names the server answers to out of the box. Any other Host gets a
400 in the usual error body (a socket is refused before it opens).
"""

from __future__ import annotations

from starlette._utils import parse_host_header
from starlette.datastructures import Headers
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from widget_server.errors import InvalidRequest


def matches(host: str, patterns: list[str]) -> bool:
    return any(p == "*" or host == p or (p.startswith("*.") and host.endswith(p[1:])) for p in patterns)


class TrustedHosts:
    def __init__(self, app: ASGIApp, allowed: list[str]) -> None:
        self.app = app
        self.allowed = [p.lower().strip("[]") for p in allowed]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            return await self.app(scope, receive, send)
        parsed = parse_host_header(Headers(scope=scope).get("host"))
        if parsed is not None and matches(parsed.host.lower().strip("[]"), self.allowed):
            return await self.app(scope, receive, send)
        if scope["type"] == "websocket":
            await send({"type": "websocket.close", "code": 1008, "reason": "host not allowed"})
            return
        err = InvalidRequest("this host name is not served here (WIDGET_ALLOWED_HOSTS)", code="request.bad_host")
        request_id = str(scope.get("state", {}).get("request_id", "req_unknown"))
        await JSONResponse(err.body(request_id), status_code=400)(scope, receive, send)
