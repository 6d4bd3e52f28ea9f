"""Shared HTTP plumbing: request ids, the error body, resources (a path and its methods), authentication and
JSON bodies."""

from __future__ import annotations

import json
import logging
import math
import secrets
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from widget_server.domain import keys
from widget_server.edges.query_params import NONE, Query
from widget_server.edges.state import app_state
from widget_server.errors import InvalidRequest, NotFound, PayloadTooLarge, RateLimited, UpgradeRequired, WidgetError

log = logging.getLogger(__name__)
HTTP_CODES = {404: ("route.not_found", "not_found"), 405: ("method.not_allowed", "invalid_request"),
              413: ("request.too_large", "invalid_request")}


class RequestIdMiddleware:
    """Every response carries `X-Request-Id`; the error body repeats it."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            return await self.app(scope, receive, send)
        request_id = "req_" + secrets.token_hex(8)
        scope.setdefault("state", {})["request_id"] = request_id

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                message.setdefault("headers", [])
                message["headers"] = [*message["headers"], (b"x-request-id", request_id.encode())]
            await send(message)

        await self.app(scope, receive, send_with_id)


Endpoint = Callable[[Request], Awaitable[Response]]


@dataclass(frozen=True)
class Operation:
    """One method of a resource: the endpoint, and the query parameters it reads (none unless declared)."""

    endpoint: Endpoint
    query: Query = NONE
    documented: bool = True  # False: not an operation of the API (a WebSocket path's answer to plain HTTP)


class Resource(Route):
    """A path with all its methods in one route, so that a 405 lists every method the path has in `Allow` (one
    route per method made Starlette answer with the first route's methods only), and so that each method's query
    is checked before its endpoint runs. HEAD is answered as GET."""

    def __init__(self, path: str, **methods: Endpoint | Operation) -> None:
        self.operations = {verb.upper(): op if isinstance(op, Operation) else Operation(op)
                           for verb, op in methods.items()}
        super().__init__(path, self._dispatch, methods=list(self.operations))
        self.allow = ", ".join(m for verb in self.operations for m in ((verb, "HEAD") if verb == "GET" else (verb,)))

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["method"] not in self.operations and not (scope["method"] == "HEAD" and "GET" in self.operations):
            raise HTTPException(405, headers={"Allow": self.allow})  # in the order declared, the same every time
        await super().handle(scope, receive, send)

    async def _dispatch(self, request: Request) -> Response:
        op = self.operations["GET" if request.method == "HEAD" else request.method]
        for name, value in request.path_params.items():
            if "\x00" in value:  # no id has one, and PostgreSQL cannot even compare with it
                raise InvalidRequest(f"{name} contains a NUL character", details={"param": name})
        request.state.query = op.query.read(request.query_params)
        return await op.endpoint(request)


async def upgrade_required(request: Request) -> Response:
    """A WebSocket path asked for over plain HTTP: 426 says how to ask (rather than a 404 for a path that exists)."""
    err = UpgradeRequired(f"{request.url.path} is a WebSocket endpoint: connect with Upgrade: websocket")
    response = error_response(request, err)
    response.headers.update({"Upgrade": "websocket", "Connection": "Upgrade"})
    return response


def query(request: Request) -> Mapping[str, str]:
    """The declared query parameters of this request that have a value (see `query_params`)."""
    values: Mapping[str, str] = request.state.query
    return values


def request_id(request: Request) -> str:
    return str(getattr(request.state, "request_id", "req_unknown"))


class ErrorJSON(JSONResponse):
    """An error body in ASCII JSON: a message may quote what the client sent, lone surrogates included (a JSON
    string may escape one), which UTF-8 cannot encode; escaped, the body is still the JSON of the same text."""

    def render(self, content: Any) -> bytes:
        return json.dumps(content, ensure_ascii=True, separators=(",", ":")).encode("ascii")


def error_response(request: Request, exc: WidgetError) -> JSONResponse:
    headers = {}
    if isinstance(exc, RateLimited) and isinstance(exc.details.get("retry_after_s"), int | float):
        headers["Retry-After"] = str(max(1, math.ceil(exc.details["retry_after_s"])))  # whole seconds (RFC 9110)
    return ErrorJSON(exc.body(request_id(request)), status_code=exc.status_code, headers=headers)


async def on_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, WidgetError)
    return error_response(request, exc)


async def on_http_exception(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    code, type_ = HTTP_CODES.get(exc.status_code, ("request.invalid", "invalid_request"))
    err = (NotFound if exc.status_code == 404 else PayloadTooLarge if exc.status_code == 413 else InvalidRequest)(
        str(exc.detail), code=code)
    body = err.body(request_id(request))
    body["error"]["type"] = type_
    return ErrorJSON(body, status_code=exc.status_code, headers=exc.headers)


async def on_unexpected(request: Request, exc: Exception) -> Response:
    log.exception("unhandled error", extra={"request_id": request_id(request), "path": request.url.path})
    err = WidgetError("internal server error")
    return ErrorJSON(err.body(request_id(request)), status_code=500)


def secret_key(request: Request) -> str | None:
    """The secret key the request presents: a bearer token, else `X-API-Key`."""
    header = request.headers.get("authorization", "")
    return header[7:].strip() if header.lower().startswith("bearer ") else request.headers.get("x-api-key")


async def tenant_of(request: Request) -> str:
    """The tenant whose secret key the request presents (else a 401), counted against its `api` rate limit (else
    a 429). Known once per request: the idempotency layer asks before the endpoint does."""
    known = getattr(request.state, "tenant_id", None)
    if isinstance(known, str):
        return known
    deps = app_state(request).deps
    tenant_id = await keys.authenticate_secret(deps.storage, secret_key(request), deps.seen_keys)
    return await _counted(request, tenant_id)


async def _counted(request: Request, tenant_id: str) -> str:
    await app_state(request).deps.limits.enforce("api", tenant_id, "too many requests for this tenant")
    request.state.tenant_id = tenant_id
    return tenant_id


def key_seen(request: Request) -> bool:
    """Whether `tenant_and_persona` can check this request's key with its persona read (a key this node has seen
    work, not yet checked in this request)."""
    key = secret_key(request)
    return (not isinstance(getattr(request.state, "tenant_id", None), str) and key is not None
            and key.startswith("sk_") and app_state(request).deps.seen_keys.knows(key))


async def tenant_and_persona(request: Request, ref: str) -> tuple[str, dict[str, Any] | None]:
    """`tenant_of`, and the persona `ref` names (None when there is none, or when it was not read here): for a key
    this node has seen work, both in one round trip (the key checked against storage all the same)."""
    deps = app_state(request).deps
    if key_seen(request):
        found = await keys.persona_by_secret(deps.storage, deps.seen_keys, secret_key(request), ref)
        if found is not None:
            return await _counted(request, found[0]), found[1]
    return await tenant_of(request), None


MAX_BODY = 1024 * 1024


async def read_body(request: Request, limit: int = MAX_BODY) -> bytes:
    """The body, refused with a JSON 413 past `limit` whether or not Content-Length says so up front."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise PayloadTooLarge(f"the body is larger than {limit} bytes")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(f"the body is larger than {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


async def json_body(request: Request, *, optional: bool = False) -> Any:
    """The body as JSON. With `optional`, an empty body is an empty object (`null` is still not an object)."""
    raw = await read_body(request)
    if optional and not raw.strip():
        return {}
    try:
        return json.loads(raw) if raw else None
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidRequest("the body is not valid JSON", code="request.invalid_json") from exc
    except RecursionError:  # the JSON parser recurses per level of nesting
        raise InvalidRequest("the body is nested too deeply", code="request.invalid_json") from None


def only_fields(body: Any, allowed: set[str], required: set[str] = frozenset()) -> dict[str, Any]:  # type: ignore[assignment]
    """A JSON object with no unknown and no missing fields, or a 400 naming the field."""
    if not isinstance(body, dict):
        raise InvalidRequest("the body must be a JSON object")
    for name in sorted(set(body) - allowed):
        raise InvalidRequest(f"unknown field: {name}", details={"errors": [{"field": name, "message": "not allowed"}]})
    for name in sorted(required - set(body)):
        raise InvalidRequest(f"missing field: {name}", details={"errors": [{"field": name, "message": "required"}]})
    return body
