"""What every operation of the API shares in the OpenAPI document, added in one place to each: the rate-limit
headers of its answers (edges/ratelimit_headers.py), the 429 of the tenant's `api` limit, and on each POST
authenticated by a secret key the `Idempotency-Key` header (edges/idempotency.py) with its 409 and 422."""

from __future__ import annotations

from typing import Any

from widget_server.domain.idempotency import MAX_KEY
from widget_server.edges.openapi_components import STRING, ref

RATE_LIMIT = {
    "RateLimit-Policy": {"description": 'the limits this request was counted against: "name";q=quota;w=window '
                                        "seconds (draft-ietf-httpapi-ratelimit-headers)", "schema": STRING},
    "RateLimit": {"description": 'each limit\'s state: "name";r=remaining;t=seconds until one more is allowed',
                  "schema": STRING},
}
RETRY_AFTER = {"Retry-After": {"description": "seconds until the limit named in details.limit allows a request",
                               "schema": STRING}}
IDEMPOTENCY_KEY = {
    "name": "Idempotency-Key", "in": "header", "required": False,
    "schema": {"type": "string", "minLength": 1, "maxLength": MAX_KEY},
    "description": "draft-ietf-httpapi-idempotency-key-header: the same key with the same request (method, path, "
                   "query, body) within 24 h returns the first answer again (with Idempotent-Replayed: true) "
                   "without running again; with another request, a 422 idempotency.key_reused; while the first "
                   "still runs, a 409 idempotency.in_flight. Keys are per tenant. Server errors, 429s and streamed "
                   "answers (text/event-stream) are not kept: a retry runs again. Empty or over 255 characters: 400 "
                   "idempotency.invalid_key (a quoted structured-field string is read without its quotes)."}
HOUSE_ERROR = {"$ref": "#/components/responses/Error"}
OPENAI_WHY = {409: "Idempotency-Key still in flight (or, for a turn, the conversation has ended or a person has "
                   "it)", 422: "Idempotency-Key used for another request (or a model or endpoint not allowed)",
              429: "Rate limited (rate_limit_exceeded)"}


def _error(path: str, code: int) -> dict[str, Any]:
    if not path.startswith("/v1/openai/"):
        return HOUSE_ERROR
    return {"description": OPENAI_WHY[code], "content": {"application/json": {"schema": ref("OpenAIError")}},
            **({"headers": RETRY_AFTER} if code == 429 else {})}


def shared(path: str, method: str, op: dict[str, Any]) -> dict[str, Any]:
    """`op` with what every operation of the API has (nothing for the pages, or for a browser's call)."""
    if not path.startswith("/v1/") or op.get("security") == []:
        return op
    responses = dict(op["responses"])
    for status, response in responses.items():
        if "$ref" not in response and status.startswith(("2", "4")):
            responses[status] = {**response, "headers": {**response.get("headers", {}), **RATE_LIMIT}}
    codes = (429, 409, 422) if method == "post" else (429,)
    for code in codes:
        responses.setdefault(str(code), _error(path, code))
    out = {**op, "responses": responses}
    if method == "post":
        out["parameters"] = [*op.get("parameters", []), IDEMPOTENCY_KEY]
    return out


def error_response(schema: dict[str, Any]) -> dict[str, Any]:
    """The house's error answer: its body, and the headers a 429 (and any answer after a limit) carries."""
    return {"description": "An error in the shape of DESIGN.md", "content": {"application/json": {"schema": schema}},
            "headers": {**RATE_LIMIT, **RETRY_AFTER}}
