"""Errors under `/v1/openai/` in OpenAI's shape, never the house's: an OpenAI client (the SDK, LangChain) reads
`{"error": {"message", "type", "param", "code"}}` and picks its exception class from the status.

The app's one error handler renders every error; under this path its answer is translated here, so that an error
from anywhere (authentication, a body too large, a route or method the path does not have, a failure nobody
expected) keeps its status and headers (`Retry-After`, `Allow`) and only changes shape; an error of a turn that
ran names its stored conversation in `X-Persona-Conversation-Id`. A refused message
(`content_filter`) and a conflict (a conversation that has ended, or that a person has) also say
`x-should-retry: false`: the SDK's own retries would only be refused again.
"""

from __future__ import annotations

import json
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from widget_server.edges.http import ErrorJSON
from widget_server.errors import WidgetError

PREFIX = "/v1/openai/"
# The house's codes where OpenAI has its own; any other keeps the house's (a string either way).
CODES = {"persona.not_found": "model_not_found", "request.unsupported_parameter": "unsupported_parameter",
         "route.not_found": "unknown_url", "method.not_allowed": "method_not_allowed",
         "request.invalid_json": "invalid_json", "request.too_large": "request_too_large"}
ErrorHandler = Any  # Starlette's exception handler: (Request, Exception) -> Awaitable[Response]


def on_path(path: str) -> bool:
    return path.startswith(PREFIX)


def openai_error(status: int, code: str, message: str, details: dict[str, Any]) -> dict[str, Any]:
    """OpenAI's error body for an error of the house (its status, code, message and details)."""
    param = details.get("param", details.get("field"))
    if status == 401:
        type_, code = "invalid_request_error", "invalid_api_key"
    elif status == 429:
        type_, code = "requests", "rate_limit_exceeded"
    elif status >= 500:
        type_ = "server_error"
    else:
        type_ = "invalid_request_error"
        param = "model" if code == "persona.not_found" else param
    body: dict[str, Any] = {"error": {"message": message, "type": type_,
                                      "param": param if isinstance(param, str) else None,
                                      "code": CODES.get(code, code)}}
    if isinstance(details.get("persona_guardrail"), dict):
        body["persona_guardrail"] = details["persona_guardrail"]
    return body


def from_exception(exc: WidgetError) -> dict[str, Any]:
    return openai_error(exc.status_code, exc.code, exc.message, exc.details)


def openai_errors(handler: ErrorHandler) -> ErrorHandler:
    """The app's error handler, answering in OpenAI's shape under `/v1/openai/` (the house's elsewhere)."""
    async def handle(request: Request, exc: Exception) -> Response:
        response: Response = await handler(request, exc)
        if not on_path(request.url.path) or not isinstance(response, JSONResponse):
            return response
        house = json.loads(bytes(response.body)).get("error", {})
        details = house.get("details") if isinstance(house.get("details"), dict) else {}
        body = openai_error(response.status_code, str(house.get("code")), str(house.get("message")), details)
        headers = {name: response.headers[name] for name in ("retry-after", "allow") if name in response.headers}
        if house.get("code") == "content_filter" or response.status_code == 409:  # the SDK retries a 409 itself
            headers["x-should-retry"] = "false"
        if isinstance(details.get("conversation_id"), str):  # a turn that ran, and is stored, though it failed
            headers["x-persona-conversation-id"] = details["conversation_id"]
        return ErrorJSON(body, status_code=response.status_code, headers=headers)
    return handle
