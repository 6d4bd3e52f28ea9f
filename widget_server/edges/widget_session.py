"""`POST /v1/widget/sessions`: a browser trades a publishable key and its Origin for a 15-minute token.

Cross-origin by nature: the preflight and the answer echo the caller's Origin (no credentials, no cookie),
so the widget can read a refusal and show it; whether the origin may chat is decided by the key's allowlist
(`domain/widget_sessions.py`).
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from widget_server.domain.widget_sessions import start_session
from widget_server.edges.http import error_response, json_body, only_fields
from widget_server.edges.state import app_state
from widget_server.errors import WidgetError

FIELDS = {"key", "persona", "visitor_id", "user"}


def cors(request: Request, response: Response) -> Response:
    origin = request.headers.get("origin")
    if origin:
        response.headers["Access-Control-Allow-Origin"] = origin
        response.headers["Access-Control-Max-Age"] = "600"
    response.headers["Vary"] = "Origin"
    return response


async def preflight(request: Request) -> Response:
    response = Response(status_code=204)
    response.headers["Access-Control-Allow-Methods"] = "POST"
    response.headers["Access-Control-Allow-Headers"] = "content-type"
    return cors(request, response)


def ws_url(request: Request) -> str:
    public = app_state(request).settings.public_url
    base = public.rstrip("/") if public else str(request.base_url).rstrip("/")
    return base.replace("https://", "wss://", 1).replace("http://", "ws://", 1) + "/v1/widget/ws"


async def create_session(request: Request) -> Response:
    try:
        state = app_state(request)
        body = only_fields(await json_body(request), FIELDS, {"key", "persona"})
        address = request.client.host if request.client else "unknown"  # behind WIDGET_TRUSTED_PROXIES: theirs
        session = await start_session(state.deps.storage, state.signer, state.deps.limits,
                                      state.secret.get_secret_value(), address, body["key"],
                                      request.headers.get("origin"), body["persona"], body.get("visitor_id"),
                                      body.get("user"))
        response: Response = JSONResponse({**session, "ws_url": ws_url(request)}, status_code=201)
    except WidgetError as exc:
        response = error_response(request, exc)
    return cors(request, response)
