"""`GET /metrics`: Prometheus text format, behind a bearer token when `WIDGET_METRICS_TOKEN` is set.

Without a token it answers only clients on this machine (loopback): the figures carry no tenant data, but
counts of replies, guardrail rules and connections are nobody else's business. Behind a proxy on the same
machine every client looks local: set the token there.
"""

from __future__ import annotations

import hmac

from prometheus_client import CONTENT_TYPE_LATEST
from starlette.requests import Request
from starlette.responses import Response

from widget_server.edges.state import app_state
from widget_server.errors import AuthError, MetricsForbidden

LOOPBACK = ("127.0.0.1", "::1", "localhost")


async def metrics(request: Request) -> Response:
    state = app_state(request)
    token = state.settings.metrics_token
    if token is not None:
        given = request.headers.get("authorization", "").removeprefix("Bearer ").strip()
        if not hmac.compare_digest(given.encode(), token.get_secret_value().encode()):
            raise AuthError("GET /metrics wants Authorization: Bearer <WIDGET_METRICS_TOKEN>",
                            code="auth.invalid_token")
    elif request.client is None or request.client.host not in LOOPBACK:
        raise MetricsForbidden("without WIDGET_METRICS_TOKEN, GET /metrics answers only this machine")
    return Response(state.metrics.render(), media_type=CONTENT_TYPE_LATEST)
