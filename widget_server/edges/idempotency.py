"""`Idempotency-Key` on every POST of the API, in one place: an ASGI middleware around the routes.

It reads the body (to fingerprint the request), authenticates the secret key (keys are per tenant), and either
replays the stored answer (status, headers, body, and `Idempotent-Replayed: true`) without calling the endpoint,
or runs the endpoint and stores what it answered. What is not stored, so that a retry runs again: a server error
(5xx), a 429, and a stream (`text/event-stream`: prompt/stream, a chat completion with `stream: true`), whose key
is released as the stream starts. A POST without a secret key (the widget's session call, made by browsers with
the publishable key) is passed on with its key unread: its endpoint authenticates it as always.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from widget_server.domain.idempotency import Idempotency, Stored, fingerprint, parse_key
from widget_server.edges.http import MAX_BODY, on_error, secret_key, tenant_of
from widget_server.edges.openai_errors import openai_errors
from widget_server.edges.state import app_state
from widget_server.errors import AuthError, WidgetError

HEADER = "idempotency-key"
SKIPPED = frozenset({"content-length", "date", "server"})  # made again for the replay


def _wanted(scope: Scope) -> bool:
    return scope["type"] == "http" and scope["method"] == "POST" and scope["path"].startswith("/v1/") and any(
        name == b"idempotency-key" for name, _ in scope["headers"])


class IdempotencyKeys:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.render = openai_errors(on_error)  # an error in the shape its path answers with

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if not _wanted(scope):
            return await self.app(scope, receive, send)
        request = Request(scope, receive)
        try:
            key = parse_key(request.headers[HEADER])
            if secret_key(request) is None:
                return await self.app(scope, receive, send)
            try:
                tenant_id = await tenant_of(request)
            except AuthError:  # the endpoint answers the 401 in its own words
                return await self.app(scope, receive, send)
            body, complete = await _body(receive)
            if body is None:  # the client went away mid-body: nothing to run, nothing to keep
                return None
            replay = _replaying(body, receive)
            if not complete:  # too large to keep: the endpoint answers its 413
                return await self.app(scope, replay, send)
            keys = app_state(request).idempotency
            query = scope.get("query_string", b"").decode("latin-1")
            stored = await keys.begin(tenant_id, key, fingerprint("POST", scope["path"], query, body))
        except WidgetError as exc:
            response: Response = await self.render(request, exc)
            return await response(scope, receive, send)
        if stored is not None:
            return await _replay(stored)(scope, receive, send)
        await _run(self.app, keys, tenant_id, key, scope, replay, send)


async def _body(receive: Receive) -> tuple[bytes | None, bool]:
    """The request's body (None: the client disconnected first), and whether it is all of it (within MAX_BODY)."""
    chunks, size = [], 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return None, False
        chunks.append(message.get("body", b""))
        size += len(chunks[-1])
        if size > MAX_BODY or not message.get("more_body"):
            return b"".join(chunks), not message.get("more_body")


def _replaying(body: bytes, receive: Receive) -> Receive:
    """A `receive` that gives the body read, then whatever else comes (the rest of it, a disconnect)."""
    sent = False

    async def again() -> Message:
        nonlocal sent
        if sent:
            return await receive()
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}
    return again


def _replay(stored: Stored) -> Response:
    response = Response(stored.body, status_code=stored.status)
    response.raw_headers = [*((k.encode("latin-1"), v.encode("latin-1")) for k, v in stored.headers),
                            (b"content-length", str(len(stored.body)).encode()), (b"idempotent-replayed", b"true")]
    return response


async def _run(app: ASGIApp, keys: Idempotency, tenant_id: str, key: str, scope: Scope, receive: Receive,
               send: Send) -> None:
    """Run the endpoint, passing its answer on as it goes; then store it, or release the key."""
    status, headers, chunks, streamed = 500, [], [], False

    async def keep(message: Message) -> None:
        nonlocal status, headers, streamed
        if message["type"] == "http.response.start":
            status = message["status"]
            headers = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in message.get("headers", [])
                       if k.decode("latin-1").lower() not in SKIPPED]
            streamed = any(k.lower() == "content-type" and v.startswith("text/event-stream") for k, v in headers)
            if streamed:
                await keys.release(tenant_id, key)
        elif message["type"] == "http.response.body" and not streamed:
            chunks.append(message.get("body", b""))
        await send(message)

    try:
        await app(scope, receive, keep)
    except BaseException:
        if not streamed:
            await keys.release(tenant_id, key)
        raise
    if streamed:
        return
    if status >= 500 or status == 429:
        await keys.release(tenant_id, key)
    else:
        await keys.finish(tenant_id, key, Stored(status, headers, b"".join(chunks)))
