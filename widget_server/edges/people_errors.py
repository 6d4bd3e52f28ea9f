"""Errors of `GET /v1/persona` in PersonaGen's envelope, `{"success": false, "error": {"code", "message"}}`, with
its codes: the app's one error handler renders the error, and under this path its answer is translated here
(keeping the status and the `Retry-After`, `Allow` and `RateLimit-*` headers), as `openai_errors` does for
`/v1/openai/`."""

from __future__ import annotations

import json
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from widget_server.edges.http import ErrorJSON

PATH = "/v1/persona"
ErrorHandler = Any  # Starlette's exception handler: (Request, Exception) -> Awaitable[Response]


def personagen_code(status: int, house_code: str) -> str:
    if status == 401:
        return "API_KEY_NOT_FOUND" if house_code == "auth.unknown_key" else "INVALID_API_KEY"
    if status == 429:
        return "API_KEY_LIMIT_EXCEEDED" if house_code == "quota.exceeded" else "RATE_LIMIT_EXCEEDED"
    if status >= 500:
        return "GENERATION_FAILED"
    return "INVALID_REQUEST"


def people_errors(handler: ErrorHandler) -> ErrorHandler:
    """The app's error handler, answering in PersonaGen's shape under `/v1/persona` (the house's elsewhere)."""
    async def handle(request: Request, exc: Exception) -> Response:
        response: Response = await handler(request, exc)
        if request.url.path.rstrip("/") != PATH or not isinstance(response, JSONResponse):
            return response
        house = json.loads(bytes(response.body)).get("error", {})
        details = house.get("details") if isinstance(house.get("details"), dict) else {}
        error: dict[str, Any] = {"code": personagen_code(response.status_code, str(house.get("code"))),
                                 "message": str(house.get("message"))}
        if isinstance(details.get("param"), str):
            error["param"] = details["param"]
        if isinstance(details.get("usage"), dict):
            error["usage"] = details["usage"]
        headers = {name: response.headers[name] for name in ("retry-after", "allow") if name in response.headers}
        body = {"success": False, "error": error, "request_id": house.get("request_id")}
        return ErrorJSON(body, status_code=response.status_code, headers=headers)
    return handle
