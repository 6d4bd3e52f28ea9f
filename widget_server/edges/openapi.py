"""`GET /openapi.json`: an OpenAPI 3.1 description of every route the app serves, made from its route list.

Clients are generated from this document and `schemathesis` checks the server against it (tests/test_schemathesis.py),
so it has to be exact: each operation's query parameters come from its route's declaration (the one the router
checks requests against), bodies and answers from `openapi_components`, and each operation lists every status it
can answer. Rules a JSON Schema cannot state (a `to` later than `from`, a webhook host that resolves to a public
address, a pattern that RE2 compiles) are said in the descriptions, and answered with the documented 400 or 422.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route, WebSocketRoute

from widget_server import __version__
from widget_server.domain.analytics.retention import MAX_DAYS
from widget_server.edges.http import Resource
from widget_server.edges.mcp_http import PATH_ITEM as MCP_PATH_ITEM
from widget_server.edges.mcp_http import McpEndpoint
from widget_server.edges.openapi_avatars import avatar_operations, avatar_schemas
from widget_server.edges.openapi_components import (
    STRING,
    Schema,
    error,
    event_schemas,
    key_schemas,
    obj,
    persona_schemas,
    policy_schemas,
    ref,
    request_schemas,
    response_schemas,
    test_persona_schemas,
    test_run_schemas,
)
from widget_server.edges.openapi_headers import error_response, shared
from widget_server.edges.openapi_openai import openai_operations, openai_schemas
from widget_server.edges.openapi_people import people_operations, people_schemas
from widget_server.edges.openapi_persona_groups import persona_group_operations, persona_group_schemas
from widget_server.edges.openapi_prompt_jobs import prompt_job_operations, prompt_job_schemas
from widget_server.edges.query_params import NO_NUL
from widget_server.edges.state import app_state
from widget_server.settings import Settings

PROJECT_ID = "^[A-Za-z0-9_-]{1,64}$"  # domain/people_groups/groups.PROJECT_ID
PUBLIC: list[Any] = []  # the operations that need no secret key
HTML = {"text/html": {"schema": STRING}}
TRANSFER = ("application/json", "application/yaml", "text/yaml")  # a persona document's media types


def _json(schema: Schema, description: str = "OK", **extra: Any) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}, **extra}


def _errors(*codes: int) -> dict[str, Any]:
    return {str(code): {"$ref": "#/components/responses/Error"} for code in codes}


def _created(schema: Schema, what: str) -> dict[str, Any]:
    return _json(schema, "Created", headers={"Location": {
        "description": f"the new {what}'s URL", "required": True, "schema": STRING}})


DELETED = {"204": {"description": "Deleted"}}
READ = (400, 401)  # every /v1 operation: an unknown query parameter, no or a wrong key
FOUND = (*READ, 404)  # …and a path naming something that is not there
WRITE = (413,)  # a body over 1 MiB


def _op(summary: str, responses: dict[str, Any], errors: Sequence[int], body: Schema | None = None,
        *, body_required: bool = True, **extra: Any) -> dict[str, Any]:
    op: dict[str, Any] = {"summary": summary, "responses": {**responses, **_errors(*errors)}, **extra}
    if body is not None:
        op["requestBody"] = {"required": body_required, "content": {"application/json": {"schema": body}}}
    return op


Operations = dict[tuple[str, str], Any]  # (path, method) → the operation's description


def _pages() -> Operations:
    script = {"text/javascript": {"schema": STRING}}
    return {
        ("/", "get"): {"summary": "The demo page (HTML; the query string is ignored)", "security": PUBLIC,
                       "responses": {"200": {"description": "OK", "content": HTML}}},
        ("/demo/csp", "get"): {"summary": "The demo page under a strict Content-Security-Policy (HTML)",
                               "security": PUBLIC, "responses": {"200": {"description": "OK", "content": HTML}}},
        ("/embed.js", "get"): {
            "summary": "The embeddable widget script (strong ETag, gzip when accepted; the query string is ignored, "
                       "so ?v=2 busts a cache)", "security": PUBLIC,
            "responses": {"200": {"description": "OK", "content": script},
                          "304": {"description": "Not modified (If-None-Match)"},
                          "404": {"description": "This server has no widget script", "content": script}}},
        ("/health", "get"): {"summary": "Storage and provider status", "security": PUBLIC, "responses": {
            "200": _json(ref("Health")), "503": _json(ref("Health"), "Storage unavailable"), **_errors(400)}},
        ("/openapi.json", "get"): {"summary": "This document", "security": PUBLIC,
                                   "responses": {"200": _json({"type": "object"}), **_errors(400)}},
        ("/metrics", "get"): {
            "summary": "Prometheus metrics (bearer WIDGET_METRICS_TOKEN when set)", "security": PUBLIC,
            "responses": {"200": {"description": "OK", "content": {"text/plain": {"schema": STRING}}},
                          **_errors(400, 401, 403)}},
    }


def _personas() -> Operations:
    persona, body, persona_ref = _json(ref("Persona")), ref("PersonaBody"), ref("Persona")
    writes = (*FOUND, 409, *WRITE, 422, 503)  # 409 slug taken; 422 persona.invalid; 503 topics need a model
    patch = {"required": True, "content": {"application/merge-patch+json": {"schema": ref("PersonaPatch")},
                                           "application/json": {"schema": ref("PersonaPatch")}}}
    sse = {"description": "Server-Sent Events, each a frame of the widget protocol as JSON (DESIGN.md)",
           "content": {"text/event-stream": {"schema": ref("PromptEvent")}}}
    return {
        ("/v1/personas", "get"): _op("List personas", {"200": _json(ref("PersonaList"))}, READ),
        ("/v1/personas", "post"): _op("Create a persona", {"201": _created(ref("Persona"), "persona")},
                                      [e for e in writes if e != 404], body),
        ("/v1/personas/{id}", "get"): _op("Get a persona", {"200": persona}, FOUND),
        ("/v1/personas/{id}/export", "get"): _op(
            "A persona as the document `widget-server persona export` prints: YAML when Accept prefers "
            "application/yaml or text/yaml, else JSON (406 for an Accept that allows neither); no api_key",
            {"200": {"description": "OK", "content": {t: {"schema": ref("PersonaFile")} for t in TRANSFER}}},
            (*FOUND, 406)),
        ("/v1/personas/import", "post"): {**_op(
            "Create a persona from an exported document (YAML with Content-Type application/yaml or text/yaml, "
            "else JSON), as `widget-server persona import` does. 409 when its slug (or its name's) exists, unless "
            "replace=true, which replaces that persona (200)",
            {"201": _created(persona_ref, "persona"), "200": _json(persona_ref, "Replaced")},
            [e for e in writes if e != 404]), "requestBody": {"required": True, "content": {
                t: {"schema": body} for t in TRANSFER}}},
        ("/v1/personas/{id}", "put"): _op("Replace a persona", {"200": persona}, writes, body),
        ("/v1/personas/{id}", "patch"): {**_op("Change some fields of a persona", {"200": persona}, writes),
                                         "requestBody": patch},
        ("/v1/personas/{id}", "delete"): _op("Delete a persona", DELETED, FOUND),
        ("/v1/personas/{id}/prompt", "post"): _op(
            "One reply as JSON (422 provider.refused: a model or endpoint this server does not allow; 409 "
            "conversation.closed, or conversation.taken_over while a person has it)",
            {"200": _json(ref("PromptAnswer"))}, (*FOUND, 409, *WRITE, 422, 502, 504), ref("Prompt")),
        ("/v1/personas/{id}/prompt/stream", "post"): _op(
            "One reply as Server-Sent Events (409: the conversation is closed, or a person has it)", {"200": sse},
            (*FOUND, 409, *WRITE), ref("Prompt")),
    }


def _test_personas() -> Operations:
    one, body = _json(ref("TestPersona")), ref("TestPersonaBody")
    writes = (*FOUND, 409, *WRITE, 422)  # 409 the name is taken; 422 test_persona.invalid
    return {
        ("/v1/test-personas", "get"): _op("List test personas (simulated visitors), oldest first",
                                          {"200": _json(ref("TestPersonaList"))}, READ),
        ("/v1/test-personas", "post"): _op(
            "Create a test persona (400: name missing; 409: a test persona with that name exists)",
            {"201": _created(ref("TestPersona"), "test persona")}, [e for e in writes if e != 404], body),
        ("/v1/test-personas/{id}", "get"): _op("Get a test persona", {"200": one}, FOUND),
        ("/v1/test-personas/{id}", "put"): _op(
            "Replace a test persona (409: renamed onto another's name)", {"200": one}, writes, body),
        ("/v1/test-personas/{id}", "delete"): _op("Delete a test persona", DELETED, FOUND),
    }


def _conversations() -> Operations:
    return {
        ("/v1/conversations", "get"): _op("List conversations, newest first",
                                          {"200": _json(ref("ConversationPage"))}, READ),
        ("/v1/conversations/{id}", "get"): _op("A conversation with its messages",
                                               {"200": _json(ref("ConversationDetail"))}, FOUND),
        ("/v1/conversations/{id}/claim", "post"): _op(
            "An agent takes an escalated conversation: the visitor's widget shows them joining; the persona stays "
            "silent (409 conversation.claimed naming the agent who has it, or conversation.not_escalated)",
            {"200": _json(ref("Conversation"))}, (*FOUND, 409, *WRITE), ref("Claim")),
        ("/v1/conversations/{id}/messages", "post"): _op(
            "The agent holding the conversation writes to the visitor (`agent.message` in the widget), or with "
            "internal an agents-only note (409 conversation.claimed or conversation.not_claimed)",
            {"201": _json(ref("Message"))}, (*FOUND, 409, *WRITE), ref("AgentMessage")),
        ("/v1/conversations/{id}/release", "post"): _op(
            "The agent lets go: the conversation waits for a person again (409 unless this agent holds it)",
            {"200": _json(ref("Conversation"))}, (*FOUND, 409, *WRITE), ref("Claim")),
        ("/v1/conversations/{id}/resolve", "post"): _op(
            "Hand an escalated or claimed conversation back to the bot, the agents' messages in its history (409 "
            "unless it is escalated or claimed, or, when an agent is named, held by another)",
            {"200": _json(ref("Conversation"))}, (*FOUND, 409, *WRITE), ref("Resolve"), body_required=False),
        ("/v1/conversations/{id}/close", "post"): _op(
            "End the conversation; the visitor's widget is told, and a message to it is refused with 409 "
            "conversation.closed (409 when it has ended already, or, when an agent is named, another holds it)",
            {"200": _json(ref("Conversation"))}, (*FOUND, 409, *WRITE), ref("Close"), body_required=False),
    }


def _analytics() -> Operations:
    export = {"description": "A streamed file in schema widget_server.events/1, or widget_server.conversations/1 "
                             "with level=conversation (the X-Export-Schema header says which)",
              "content": {t: {"schema": STRING} for t in
                          ("application/x-ndjson", "text/csv", "application/vnd.apache.parquet")}}
    return {
        ("/v1/analytics/events", "get"): _op("Events, oldest first, with a keyset cursor (to later than from)",
                                             {"200": _json(ref("EventPage"))}, READ),
        ("/v1/analytics/export", "get"): _op(
            "Export events (or conversations) as a streamed file (to later than from; no type at "
            "level=conversation)", {"200": export}, (*READ, 503)),
        ("/v1/analytics/summary", "get"): _op("Aggregates: per day, time to first token, guardrails, feedback "
                                              "(to later than from)", {"200": _json(ref("Summary"))}, (*READ, 503)),
        ("/v1/analytics/visitors/{visitor_id}", "delete"): _op(
            "Erase a visitor: events, conversations, messages, feedback; returns the counts",
            {"200": _json(ref("Erasure"))}, (*READ, 503)),
        ("/v1/analytics/retention", "get"): _op("The tenant's retention period", {"200": _json(ref("Retention"))},
                                                READ),
        ("/v1/analytics/retention", "put"): _op(
            "Set the retention period in days (null: the server's default)", {"200": _json(ref("Retention"))},
            (*READ, *WRITE), obj(retention_days={"type": ["integer", "null"], "minimum": 1, "maximum": MAX_DAYS})),
    }


def _webhooks() -> Operations:
    return {
        ("/v1/webhooks", "get"): _op("List webhooks", {"200": _json(ref("WebhookList"))}, READ),
        ("/v1/webhooks", "post"): _op(
            "Create a webhook; the signing secret is in this response only. 409: at most 20 per tenant; 422: a URL "
            "whose host is not, or does not resolve only to, public addresses",
            {"201": _created(ref("WebhookCreated"), "webhook")}, (*READ, 409, *WRITE, 422), ref("WebhookBody")),
        ("/v1/webhooks/{id}", "delete"): _op("Delete a webhook", DELETED, FOUND),
        ("/v1/webhooks/{id}/attempts", "get"): _op("Delivery attempts, newest first",
                                                   {"200": _json(ref("AttemptPage"))}, FOUND),
    }


def _keys() -> Operations:
    return {
        ("/v1/keys", "get"): _op("The tenant's keys, active and ended (never the keys themselves)",
                                 {"200": _json(ref("KeyList"))}, READ),
        ("/v1/keys", "post"): _op("Make a key; it is in this response only (a publishable key needs its origins)",
                                  {"201": _created(ref("KeyCreated"), "key")}, (*READ, *WRITE, 404),
                                  ref("KeyBody")),
        ("/v1/keys/{id}", "delete"): _op("Revoke a key now (409: the last secret key, or a key that has ended)",
                                         DELETED, (*FOUND, 409)),
        ("/v1/keys/{id}/rotate", "post"): _op(
            "A new key like this one (in this response only); the old one works grace_s seconds more",
            {"201": _created(ref("KeyCreated"), "key")}, (*FOUND, 409, *WRITE), ref("KeyRotate"),
            body_required=False),
        ("/v1/identity", "get"): _op("Identity verification: required or not, a secret set or not",
                                     {"200": _json(ref("Identity"))}, FOUND),
        ("/v1/identity", "put"): _op("Require a verified user for every widget session, or not (409: no secret yet)",
                                     {"200": _json(ref("Identity"))}, (*FOUND, 409, *WRITE), ref("IdentityBody")),
        ("/v1/identity/rotate", "post"): _op(
            "A new identity secret, in this response only; the previous one stops verifying at once",
            {"201": _json(ref("IdentitySecret"), "Created")}, (*FOUND, *WRITE), ref("Empty"), body_required=False),
    }


def _policy_and_widget() -> Operations:
    policy = {"required": True, "content": {"application/json": {"schema": ref("Policy")},
                                            "application/yaml": {"schema": ref("Policy")}}}
    return {
        ("/v1/safety-policy", "get"): _op("The tenant's guardrail policy", {"200": _json(ref("PolicyDocument"))},
                                          FOUND),
        ("/v1/safety-policy", "put"): {**_op(
            "Create or replace the guardrail policy (JSON, or YAML with Content-Type application/yaml). 422 "
            "policy.invalid names the field, also for what a schema cannot say: a regex RE2 does not compile, a "
            "pattern on output that can match more than 256 characters (RE2-only syntax such as \\x{41} counts as "
            "unbounded), a rule id used twice",
            {"200": _json(ref("PolicyDocument"))}, (*READ, *WRITE, 422, 503)), "requestBody": policy},
        ("/v1/safety-policy", "delete"): _op("Delete the guardrail policy", DELETED, FOUND),
        ("/v1/widget/sessions", "post"): _op(
            "Start a widget session (browser, publishable key, checked Origin)",
            {"201": _json(ref("WidgetSession"), "Created")}, (*FOUND, 403, *WRITE, 429), ref("WidgetSessionBody"),
            security=PUBLIC),
    }


def _test_runs() -> Operations:
    run = _json(ref("TestRun"))
    sse = {"description": "Server-Sent Events: `run` (the run as stored), `progress` per case, `done`; then the "
                          "stream ends (at once for a run that has ended)",
           "content": {"text/event-stream": {"schema": ref("TestRunEvent")}}}
    return {
        ("/v1/test-suites/schema", "get"): {
            "summary": "The JSON Schema of a test suite file (no key needed)", "security": PUBLIC,
            "responses": {"200": _json({"type": "object"}), **_errors(400)}},
        ("/v1/test-runs", "get"): _op("The tenant's test runs, newest first (without their results)",
                                      {"200": _json(ref("TestRunPage"))}, READ),
        ("/v1/test-runs", "post"): _op(
            "Run a persona test suite in the background: the suite document (or its YAML), or a persona whose "
            "saved test cases make the suite (404 when it has none). 202 with the run; 400 names the suite's field",
            {"202": {**_json(ref("TestRun"), "Accepted"), "headers": {"Location": {
                "description": "the run's URL", "required": True, "schema": STRING}}}},
            (*FOUND, *WRITE), ref("TestRunBody")),
        ("/v1/test-runs/{id}", "get"): _op("A test run: its state and, once it ended, every case's result",
                                           {"200": run}, FOUND),
        ("/v1/test-runs/{id}/events", "get"): _op("Follow a test run as it goes", {"200": sse}, FOUND),
    }


WEBSOCKETS = {"/v1/widget/ws": {
    "summary": "WebSocket of the widget protocol v1 (see DESIGN.md)",
    "description": "Not an HTTP operation: connect with a WebSocket client; the first frame is hello with the token "
                   "of POST /v1/widget/sessions. A plain HTTP GET is answered 426 Upgrade Required, other methods 405.",
    "x-websocket": {"protocol": "widget/1", "first_frame": "hello", "max_frame_bytes": 16384},
}}


def operations() -> Operations:
    """Every operation's description, by path and method; the query parameters come from the routes."""
    return {**_pages(), **_personas(), **_test_personas(), **_conversations(), **_analytics(), **_webhooks(),
            **_keys(), **_policy_and_widget(), **_test_runs(), **openai_operations(), **avatar_operations(),
            **prompt_job_operations(_op, _json, FOUND, READ, WRITE), **people_operations(),
            **persona_group_operations()}


def _path_parameters(path: str) -> list[dict[str, Any]]:
    names = re.findall(r"\{(\w+)\}", path)  # /avatars/{id}.svg too
    return [{"name": n, "in": "path", "required": True,
             "schema": {"type": "string", "pattern": PROJECT_ID if n == "project_id" else NO_NUL},
             "description": "id or slug" if path.startswith(("/v1/personas/", "/v1/openai/models/"))
             else f"the {n.replace('_', ' ')}"}
            for n in names]


def paths(routes: Sequence[BaseRoute]) -> dict[str, Any]:
    """The served routes' operations. A CORS preflight (OPTIONS) is the browser's, not an operation of the API."""
    described = operations()
    out: dict[str, Any] = {}
    for route in routes:
        if isinstance(route, WebSocketRoute):
            out.setdefault(route.path, {}).update(WEBSOCKETS[route.path])
        if isinstance(route, Route) and isinstance(route.endpoint, McpEndpoint):
            out[route.path] = dict(MCP_PATH_ITEM)  # described, no operation
        if not isinstance(route, Resource):
            continue
        for method, operation in route.operations.items():
            if method == "OPTIONS" or not operation.documented:
                continue
            op = dict(described[(route.path, method.lower())])
            if operation.query.params:  # (after the headers the description names, if any)
                op["parameters"] = [*op.get("parameters", []), *operation.query.openapi()]
            item = out.setdefault(route.path, {})
            if params := _path_parameters(route.path):
                item["parameters"] = params
            item[method.lower()] = shared(route.path, method.lower(), op)
    return out


def schemas(settings: Settings) -> dict[str, Any]:
    return {**persona_schemas(), **test_persona_schemas(), **policy_schemas(), **event_schemas(),
            **response_schemas(), **request_schemas(settings), **key_schemas(), **test_run_schemas(),
            **openai_schemas(), **avatar_schemas(settings), **prompt_job_schemas(settings), **people_schemas(),
            **persona_group_schemas(), "Error": error()}


def document(routes: Sequence[BaseRoute], settings: Settings) -> dict[str, Any]:
    return {
        "openapi": "3.1.0",
        "info": {"title": "widget_server", "version": __version__},
        "paths": paths(routes),
        "components": {
            "schemas": schemas(settings),
            "responses": {"Error": error_response(ref("Error"))},
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer", "description": "sk_… secret key"},
                                "apiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key"}},
        },
        "security": [{"bearer": []}, {"apiKey": []}],
    }


async def openapi(request: Request) -> Response:
    return JSONResponse(document(request.app.routes, app_state(request).settings))

