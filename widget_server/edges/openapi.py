"""`GET /openapi.json`: an OpenAPI 3.1 description of every endpoint, persona schemas from the pydantic models."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from widget_server import __version__
from widget_server.domain.analytics.query import FILTERS
from widget_server.domain.guardrails.policy import Policy
from widget_server.domain.personas import PersonaBody

REF = "#/components/schemas/{model}"


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: dict[str, Any], description: str = "OK") -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


ERR = {"$ref": "#/components/responses/Error"}
ERRORS = {code: {"$ref": "#/components/responses/Error"} for code in ("400", "401", "404")}
OBJ: dict[str, Any] = {"type": "object"}
ID = [{"name": "id", "in": "path", "required": True, "schema": {"type": "string"}, "description": "id or slug"}]


def _op(summary: str, responses: dict[str, Any], body: dict[str, Any] | None = None, **extra: Any) -> dict[str, Any]:
    op: dict[str, Any] = {"summary": summary, "responses": {**responses, **ERRORS}, **extra}
    if body is not None:
        op["requestBody"] = {"required": True, "content": {"application/json": {"schema": body}}}
    return op


def _prompt_body() -> dict[str, Any]:
    return {"type": "object", "additionalProperties": False, "required": ["message"], "properties": {
        "message": {"type": "string"}, "conversation_id": {"type": "string"}, "visitor_id": {"type": "string"}}}


def _paths() -> dict[str, Any]:
    persona = _json(_ref("Persona"))
    policy = _json({"type": "object", "required": ["policy", "updated_at"], "properties": {
        "policy": _ref("Policy"), "updated_at": {"type": "string", "format": "date-time"}}})
    sse = {"description": "Server-Sent Events: reply.start, reply.delta, reply.end, guardrail, error",
           "content": {"text/event-stream": {"schema": {"type": "string"}}}}
    return {
        "/": {"get": {"summary": "The demo page (HTML)", "security": [], "responses": {"200": {
            "description": "OK", "content": {"text/html": {"schema": {"type": "string"}}}}}}},
        "/demo/csp": {"get": {"summary": "The demo page under a strict Content-Security-Policy (HTML)", "security": [],
                              "responses": {"200": {"description": "OK", "content": {
                                  "text/html": {"schema": {"type": "string"}}}}}}},
        "/embed.js": {"get": {"summary": "The embeddable widget script (strong ETag, gzip when accepted)",
                              "security": [], "responses": {
                                  "200": {"description": "OK", "content": {
                                      "text/javascript": {"schema": {"type": "string"}}}},
                                  "304": {"description": "Not modified (If-None-Match)"}}}},
        "/health": {"get": {"summary": "Storage and provider status", "security": [],
                            "responses": {"200": _json(OBJ), "503": _json(OBJ, "Storage unavailable")}}},
        "/openapi.json": {"get": {"summary": "This document", "security": [], "responses": {"200": _json(OBJ)}}},
        "/metrics": {"get": {"summary": "Prometheus metrics (bearer WIDGET_METRICS_TOKEN when set)", "security": [],
                             "responses": {"200": {"description": "OK", "content": {
                                 "text/plain": {"schema": {"type": "string"}}}}, "401": ERR}}},
        "/v1/personas": {
            "get": _op("List personas", {"200": _json({"type": "object", "properties": {
                "data": {"type": "array", "items": _ref("Persona")}}})}),
            "post": _op("Create a persona", {"201": persona, "409": {"$ref": "#/components/responses/Error"}},
                        _ref("PersonaBody")),
        },
        "/v1/personas/{id}": {
            "parameters": ID,
            "get": _op("Get a persona", {"200": persona}),
            "put": _op("Replace a persona", {"200": persona}, _ref("PersonaBody")),
            "patch": _op("Change some fields of a persona", {"200": persona}, OBJ),
            "delete": _op("Delete a persona", {"204": {"description": "Deleted"}}),
        },
        "/v1/personas/{id}/prompt": {"parameters": ID, "post": _op(
            "One reply as JSON", {"200": _json(_ref("PromptAnswer")), "502": {"$ref": "#/components/responses/Error"}},
            _prompt_body())},
        "/v1/personas/{id}/prompt/stream": {"parameters": ID, "post": _op(
            "One reply as Server-Sent Events", {"200": sse}, _prompt_body())},
        "/v1/conversations": {"get": _op("List conversations, newest first", {"200": _json(OBJ)}, parameters=[
            {"name": "limit", "in": "query", "schema": {"type": "integer", "minimum": 1, "maximum": 200}},
            {"name": "cursor", "in": "query", "schema": {"type": "string"}},
            {"name": "persona", "in": "query", "schema": {"type": "string"}}])},
        "/v1/conversations/{id}": {"parameters": [{"name": "id", "in": "path", "required": True,
                                                   "schema": {"type": "string"}}],
                                   "get": _op("A conversation with its messages", {"200": _json(OBJ)})},
        "/v1/conversations/{id}/resolve": {"parameters": [{"name": "id", "in": "path", "required": True,
                                                           "schema": {"type": "string"}}],
                                           "post": _op("Hand an escalated conversation back to the bot",
                                                       {"200": _json(OBJ), "409": ERR}, {
                                                           "type": "object", "additionalProperties": False,
                                                           "properties": {"note": {"type": "string"}}})},
        **_analytics_paths(),
        "/v1/safety-policy": {
            "get": _op("The tenant's guardrail policy", {"200": policy}),
            "put": {**_op("Create or replace the guardrail policy (JSON, or YAML with Content-Type application/yaml)",
                          {"200": policy, "422": {"$ref": "#/components/responses/Error"}}, _ref("Policy")),
                    "requestBody": {"required": True, "content": {"application/json": {"schema": _ref("Policy")},
                                                                  "application/yaml": {"schema": _ref("Policy")}}}},
            "delete": _op("Delete the guardrail policy", {"204": {"description": "Deleted"}}),
        },
        "/v1/widget/sessions": {"post": {
            "summary": "Start a widget session (browser, publishable key, checked Origin)", "security": [],
            "requestBody": {"required": True, "content": {"application/json": {"schema": {
                "type": "object", "required": ["key", "persona"], "additionalProperties": False,
                "properties": {"key": {"type": "string"}, "persona": {"type": "string"},
                               "visitor_id": {"type": "string"}, "user": OBJ}}}}},
            "responses": {"201": _json(_ref("WidgetSession")), "400": {"$ref": "#/components/responses/Error"},
                          "401": {"$ref": "#/components/responses/Error"},
                          "403": {"$ref": "#/components/responses/Error"}}}},
        "/v1/widget/ws": {"get": {
            "summary": "WebSocket of the widget protocol v1 (see DESIGN.md); first frame: hello with the token",
            "security": [], "responses": {"101": {"description": "Switching protocols"}}}},
    }


def _query(*names: str) -> list[dict[str, Any]]:
    described = {
        "type": "event type; several separated by commas", "persona": "persona id or slug",
        "conversation": "conversation id", "visitor": "visitor id",
        "from": "ISO 8601 date or date-time (UTC when no zone), inclusive", "to": "the same, exclusive",
        "cursor": "next_cursor of the previous page", "limit": "page size, 1 to 1000",
        "format": "jsonl, csv or parquet", "level": "event (default) or conversation: one row per conversation",
    }
    return [{"name": n, "in": "query", "schema": {"type": "string"}, "description": described[n]} for n in names]


def _analytics_paths() -> dict[str, Any]:
    events = _json({"type": "object", "required": ["data", "next_cursor", "has_more"], "properties": {
        "data": {"type": "array", "items": _ref("Event")}, "next_cursor": {"type": "string"},
        "has_more": {"type": "boolean"}}})
    export = {"description": "A streamed file in schema widget_server.events/1, or widget_server.conversations/1 "
                             "with level=conversation (the X-Export-Schema header says which)",
              "content": {t: {"schema": {"type": "string"}} for t in
                          ("application/x-ndjson", "text/csv", "application/vnd.apache.parquet")}}
    retention_body = {"type": "object", "additionalProperties": False, "required": ["retention_days"],
                      "properties": {"retention_days": {"type": ["integer", "null"], "minimum": 1}}}
    webhook_body = {"type": "object", "additionalProperties": False, "required": ["url"], "properties": {
        "url": {"type": "string", "format": "uri"},
        "event_types": {"type": "array", "items": {"type": "string"}, "description": "default: every type"}}}
    wid = [{"name": "id", "in": "path", "required": True, "schema": {"type": "string"}}]
    return {
        "/v1/analytics/events": {"get": _op("Events, oldest first, with a keyset cursor", {"200": events},
                                            parameters=_query(*FILTERS, "cursor", "limit"))},
        "/v1/analytics/export": {"get": _op("Export events (or conversations) as a streamed file",
                                            {"200": export}, parameters=_query(*FILTERS, "format", "level"))},
        "/v1/analytics/summary": {"get": _op("Aggregates: per day, time to first token, guardrails, feedback",
                                             {"200": _json(OBJ)},
                                             parameters=_query("persona", "conversation", "visitor", "from", "to"))},
        "/v1/analytics/visitors/{visitor_id}": {
            "parameters": [{"name": "visitor_id", "in": "path", "required": True, "schema": {"type": "string"}}],
            "delete": _op("Erase a visitor: events, conversations, messages, feedback; returns the counts",
                          {"200": _json(OBJ), "503": ERR})},
        "/v1/analytics/retention": {
            "get": _op("The tenant's retention period", {"200": _json(OBJ)}),
            "put": _op("Set the retention period in days (null: the server's default)", {"200": _json(OBJ)},
                       retention_body)},
        "/v1/webhooks": {
            "get": _op("List webhooks", {"200": _json(OBJ)}),
            "post": _op("Create a webhook; the signing secret is in this response only",
                        {"201": _json(OBJ), "409": ERR, "422": ERR}, webhook_body)},
        "/v1/webhooks/{id}": {"parameters": wid,
                              "delete": _op("Delete a webhook", {"204": {"description": "Deleted"}})},
        "/v1/webhooks/{id}/attempts": {"parameters": wid, "get": _op(
            "Delivery attempts, newest first", {"200": _json(OBJ)}, parameters=_query("cursor", "limit"))},
    }


def _schemas() -> dict[str, Any]:
    body = PersonaBody.model_json_schema(ref_template=REF)
    defs = body.pop("$defs", {})
    persona = {"allOf": [_ref("PersonaBody"), {"type": "object", "required": ["id", "slug"], "properties": {
        "id": {"type": "string"}, "slug": {"type": "string"}, "created_at": {"type": "string", "format": "date-time"},
        "updated_at": {"type": "string", "format": "date-time"}}}]}
    error = {"type": "object", "required": ["error"], "properties": {"error": {
        "type": "object", "required": ["code", "message", "type", "request_id", "details"], "properties": {
            "code": {"type": "string"}, "message": {"type": "string"}, "request_id": {"type": "string"},
            "type": {"enum": ["invalid_request", "auth", "not_found", "conflict", "policy", "rate_limit",
                              "provider", "internal"]}, "details": OBJ}}}}
    answer = {"type": "object", "required": ["conversation_id", "message_id", "text", "usage", "timing"],
              "properties": {"conversation_id": {"type": "string"}, "message_id": {"type": "string"},
                             "text": {"type": "string"}, "finish_reason": {"type": "string"}, "guardrail": OBJ,
                             "usage": OBJ, "timing": OBJ}}
    session = {"type": "object", "required": ["token", "expires_at", "ws_url", "visitor_id", "persona"],
               "properties": {"token": {"type": "string"}, "expires_at": {"type": "string", "format": "date-time"},
                              "ws_url": {"type": "string"}, "visitor_id": {"type": "string"}, "persona": OBJ}}
    policy = Policy.model_json_schema(ref_template=REF)
    defs.update(policy.pop("$defs", {}))
    event = {"type": "object", "required": ["id", "ts", "tenant_id", "type", "schema_version", "attributes"],
             "properties": {"id": {"type": "string"}, "ts": {"type": "string", "format": "date-time"},
                            **{k: {"type": ["string", "null"]} for k in
                               ("tenant_id", "persona_id", "conversation_id", "visitor_id", "channel")},
                            "type": {"type": "string"}, "schema_version": {"type": "integer"}, "attributes": OBJ}}
    return {**defs, "Event": event, "Policy": policy, "PersonaBody": body, "Persona": persona, "Error": error,
            "PromptAnswer": answer, "WidgetSession": session}


def document() -> dict[str, Any]:
    return {
        "openapi": "3.1.0",
        "info": {"title": "widget_server", "version": __version__},
        "paths": _paths(),
        "components": {
            "schemas": _schemas(),
            "responses": {"Error": _json(_ref("Error"), "An error in the shape of DESIGN.md")},
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer", "description": "sk_… secret key"},
                                "apiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key"}},
        },
        "security": [{"bearer": []}, {"apiKey": []}],
    }


async def openapi(request: Request) -> Response:
    return JSONResponse(document())
