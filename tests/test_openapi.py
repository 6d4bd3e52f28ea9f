"""`GET /openapi.json`: a valid OpenAPI 3.1 document that describes every route the app serves, and no other."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from jsonschema import Draft202012Validator, ValidationError
from openapi_spec_validator import OpenAPIV31SpecValidator, validate
from starlette.routing import WebSocketRoute

from tests.conftest import Stack
from widget_server.edges.http import Resource
from widget_server.edges.routes import routes


@pytest.fixture
def spec(stack: Stack) -> dict[str, Any]:
    r = httpx.get(f"{stack.url}/openapi.json")  # no key: the document is public
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("application/json")
    return r.json()  # type: ignore[no-any-return]


def served() -> dict[str, set[str]]:
    """Path → HTTP methods of the app's operations (the static mount, CORS preflights and a WebSocket path's
    answer to plain HTTP aside)."""
    out: dict[str, set[str]] = {}
    for route in routes():
        if isinstance(route, Resource):
            out.setdefault(route.path, set()).update(
                m.lower() for m, op in route.operations.items() if m != "OPTIONS" and op.documented)
    return {path: methods for path, methods in out.items() if methods}


def test_the_document_is_valid_openapi_3_1(spec: dict[str, Any]) -> None:
    assert spec["openapi"].startswith("3.1")
    validate(spec, cls=OpenAPIV31SpecValidator)


def test_every_route_is_described_with_its_methods(spec: dict[str, Any]) -> None:
    missing = {path: sorted(methods - set(spec["paths"].get(path, {})))
               for path, methods in served().items() if methods - set(spec["paths"].get(path, {}))}
    assert missing == {}


def test_websockets_are_described_apart_from_the_http_operations(spec: dict[str, Any]) -> None:
    sockets = [route.path for route in routes() if isinstance(route, WebSocketRoute)]
    assert sockets and all(spec["paths"][path]["x-websocket"]["protocol"] == "widget/1" for path in sockets)
    assert all("get" not in spec["paths"][path] for path in sockets)  # schemathesis would call it over HTTP


def test_nothing_is_described_that_is_not_served(spec: dict[str, Any]) -> None:
    routes_ = served()
    verbs = {"get", "put", "post", "delete", "patch", "options", "head", "trace"}
    extra = {path: sorted((set(item) & verbs) - routes_.get(path, set())) for path, item in spec["paths"].items()}
    assert {p: m for p, m in extra.items() if m} == {}


def test_the_persona_schema_matches_what_the_api_accepts(spec: dict[str, Any], stack: Stack) -> None:
    body = spec["components"]["schemas"]["PersonaBody"]
    assert body["required"] == ["name"] and body["additionalProperties"] is False
    r = httpx.post(f"{stack.url}/v1/personas", json={"name": "Doc"}, headers=stack.auth)
    assert set(r.json()) - {"id", "created_at", "updated_at"} == set(body["properties"])


def test_every_operation_documents_the_error_shape(spec: dict[str, Any]) -> None:
    error = spec["components"]["schemas"]["Error"]["properties"]["error"]
    assert set(error["required"]) == {"code", "message", "type", "request_id", "details"}
    for path, item in spec["paths"].items():
        if path.startswith("/v1/") and path != "/v1/widget/ws":
            for method, op in item.items():
                if method != "parameters":
                    assert "400" in op["responses"] or "401" in op["responses"], (path, method)


def conforms(spec: dict[str, Any], name: str, value: Any) -> None:
    """`value` is valid against the document's schema `name` (its $refs resolved within the document)."""
    Draft202012Validator({"$ref": f"#/components/schemas/{name}", "components": spec["components"]}).validate(value)


def test_a_persona_as_answered_matches_the_documented_answer(spec: dict[str, Any], stack: Stack) -> None:
    made = httpx.post(f"{stack.url}/v1/personas", json={"name": "Doc", "topics": {"denied": [
        {"id": "medical", "examples": ["what dose should I take"]}]}}, headers=stack.auth,
        timeout=120)  # a topic's examples are embedded at once: the first loads the model (seconds on a busy CI)
    assert made.status_code == 201, made.text
    url = f"{stack.url}/v1/personas/{made.json()['id']}"
    patched = httpx.patch(url, json={"greeting": "Hi", "provider": {"temperature": None}}, headers=stack.auth)
    conforms(spec, "PersonaPatch", {"greeting": "Hi", "provider": {"temperature": None}})
    for answer in (made.json(), httpx.get(url, headers=stack.auth).json(), patched.json()):
        conforms(spec, "Persona", answer)  # PersonaBody, which forbids id and the timestamps, did not
    with pytest.raises(ValidationError):
        conforms(spec, "PersonaBody", made.json())
    conforms(spec, "PersonaList", httpx.get(f"{stack.url}/v1/personas", headers=stack.auth).json())


def test_other_answers_match_their_documented_schemas(spec: dict[str, Any], stack: Stack) -> None:
    slug = stack.persona()
    answer = httpx.post(f"{stack.url}/v1/personas/{slug}/prompt", json={"message": "hello"}, headers=stack.auth,
                        timeout=30).json()
    conforms(spec, "PromptAnswer", answer)
    with httpx.stream("POST", f"{stack.url}/v1/personas/{slug}/prompt/stream", json={"message": "hello"},
                      headers=stack.auth, timeout=30) as r:
        blocks = [b for b in r.read().decode().split("\n\n") if b]
    for block in blocks:  # schemathesis reads each event as {"event", "data"}
        conforms(spec, "PromptEvent", dict(line.split(": ", 1) for line in block.splitlines()))
    stack.wait_events(lambda got: len(got) >= 6)
    conforms(spec, "EventPage", httpx.get(f"{stack.url}/v1/analytics/events", headers=stack.auth).json())
    conforms(spec, "Summary", httpx.get(f"{stack.url}/v1/analytics/summary", headers=stack.auth).json())
    page = httpx.get(f"{stack.url}/v1/conversations", headers=stack.auth).json()
    conforms(spec, "ConversationPage", page)
    one = httpx.get(f"{stack.url}/v1/conversations/{page['data'][0]['id']}", headers=stack.auth).json()
    conforms(spec, "ConversationDetail", one)
    conforms(spec, "Health", httpx.get(f"{stack.url}/health").json())


@pytest.mark.parametrize(("method", "path", "body", "status"), [
    ("put", "/v1/personas/{slug}", {"name": "Taken", "slug": "taken"}, 409),
    ("patch", "/v1/personas/{slug}", {"slug": "taken"}, 409),
    ("put", "/v1/personas/{slug}", {"name": "Bad", "slug": "Not A Slug"}, 422),
    ("post", "/v1/personas", {"name": "Bad", "avatar_url": "ftp://x"}, 422),
    ("post", "/v1/personas", "x" * (1024 * 1024 + 1), 413),
    ("put", "/v1/analytics/retention", "x" * (1024 * 1024 + 1), 413),
    ("get", "/v1/analytics/events?verbose=1", None, 400),
])
def test_each_status_an_operation_answers_is_documented(spec: dict[str, Any], stack: Stack, method: str, path: str,
                                                        body: Any, status: int) -> None:
    stack.persona(slug="taken")
    slug = stack.persona()
    content = {"content": body} if isinstance(body, str) else {"json": body} if body is not None else {}
    r = httpx.request(method.upper(), stack.url + path.format(slug=slug), headers=stack.auth, **content)
    assert r.status_code == status, r.text
    documented = spec["paths"][path.split("?")[0].replace("{slug}", "{id}")][method]["responses"]
    assert str(status) in documented


@pytest.mark.parametrize(("body", "field"), [
    ({"name": "P", "provider": {"temperature": False}}, "provider.temperature"),  # pydantic made false 0.0
    ({"name": "P", "provider": {"max_tokens": "5"}}, "provider.max_tokens"),  # …and "5" 5
    ({"name": "   "}, "name"),
])
def test_a_value_the_document_refuses_is_refused(spec: dict[str, Any], stack: Stack, body: Any, field: str) -> None:
    with pytest.raises(ValidationError):
        conforms(spec, "PersonaBody", body)
    r = httpx.post(f"{stack.url}/v1/personas", json=body, headers=stack.auth)
    assert r.status_code == 422 and r.json()["error"]["details"]["errors"][0]["field"] == field, r.text


def test_a_value_the_document_admits_is_taken(spec: dict[str, Any], stack: Stack) -> None:
    body = {"name": "P", "provider": {"max_tokens": 5.0}}  # 5.0 is an integer to JSON Schema
    conforms(spec, "PersonaBody", body)
    r = httpx.post(f"{stack.url}/v1/personas", json=body, headers=stack.auth)
    assert r.status_code == 201 and r.json()["provider"]["max_tokens"] == 5, r.text
    retention = httpx.put(f"{stack.url}/v1/analytics/retention", json={"retention_days": 30.0}, headers=stack.auth)
    assert retention.status_code == 200 and retention.json()["retention_days"] == 30, retention.text
    policy = httpx.put(f"{stack.url}/v1/safety-policy", json={"version": 1.0, "escalation": {"on_request": 0}},
                       headers=stack.auth)
    assert policy.status_code == 422 and policy.json()["error"]["details"]["errors"][0]["field"] == \
        "escalation.on_request"  # 0 is not a boolean (it used to be read as false)
