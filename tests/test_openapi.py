"""`GET /openapi.json`: a valid OpenAPI 3.1 document that describes every route the app serves, and no other."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from openapi_spec_validator import OpenAPIV31SpecValidator, validate
from starlette.routing import Mount, Route, WebSocketRoute

from tests.conftest import Stack
from widget_server.edges.routes import routes


@pytest.fixture
def spec(stack: Stack) -> dict[str, Any]:
    r = httpx.get(f"{stack.url}/openapi.json")  # no key: the document is public
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("application/json")
    return r.json()  # type: ignore[no-any-return]


def served() -> dict[str, set[str]]:
    """Path → HTTP methods of the app's routes (the static mount and CORS preflights aside)."""
    out: dict[str, set[str]] = {}
    for route in routes():
        if isinstance(route, Mount):
            continue
        if isinstance(route, WebSocketRoute):
            out.setdefault(route.path, set()).add("get")  # the upgrade is a GET
            continue
        assert isinstance(route, Route)
        out.setdefault(route.path, set()).update(m.lower() for m in route.methods or () if m not in ("HEAD",
                                                                                                     "OPTIONS"))
    return {path: methods for path, methods in out.items() if methods}


def test_the_document_is_valid_openapi_3_1(spec: dict[str, Any]) -> None:
    assert spec["openapi"].startswith("3.1")
    validate(spec, cls=OpenAPIV31SpecValidator)


def test_every_route_is_described_with_its_methods(spec: dict[str, Any]) -> None:
    missing = {path: sorted(methods - set(spec["paths"].get(path, {})))
               for path, methods in served().items() if methods - set(spec["paths"].get(path, {}))}
    assert missing == {}


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
