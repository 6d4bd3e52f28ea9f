"""`/v1/safety-policy`: the tenant's guardrail policy (JSON, or YAML with `Content-Type: application/yaml`)."""

from __future__ import annotations

from typing import Any

import yaml
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from widget_server.edges.http import json_body, read_body, tenant_of
from widget_server.edges.state import app_state
from widget_server.errors import InvalidRequest, PolicyNotFound

YAML_TYPES = ("application/yaml", "application/x-yaml", "text/yaml")


def _public(row: dict[str, Any]) -> dict[str, Any]:
    return {"policy": row["doc"], "updated_at": row["updated_at"].isoformat()}


MAX_DEPTH = 64  # a policy nests four levels; the parser recurses per level


def _shallow(raw: bytes) -> None:
    """Refuses a document nested deeper than `MAX_DEPTH` as soon as the parser's events reach it: 5,000 levels
    took the composer 0.9 s of the event loop's time (and every tenant's replies with it) only to fail."""
    depth = 0
    for event in yaml.parse(raw, Loader=yaml.SafeLoader):
        if isinstance(event, yaml.CollectionStartEvent):
            depth += 1
            if depth > MAX_DEPTH:
                raise InvalidRequest("the body is nested too deeply", code="request.invalid_yaml")
        elif isinstance(event, yaml.CollectionEndEvent):
            depth -= 1


async def _body(request: Request) -> Any:
    if request.headers.get("content-type", "").split(";")[0].strip() in YAML_TYPES:
        raw = await read_body(request)
        try:
            _shallow(raw)
            return yaml.safe_load(raw)
        except yaml.YAMLError as exc:
            raise InvalidRequest("the body is not valid YAML", code="request.invalid_yaml") from exc
        except RecursionError:  # the YAML parser recurses per level of nesting
            raise InvalidRequest("the body is nested too deeply", code="request.invalid_yaml") from None
    return await json_body(request)


async def get_policy(request: Request) -> Response:
    tenant_id = await tenant_of(request)
    row = await app_state(request).deps.storage.get_policy(tenant_id)
    if row is None:
        raise PolicyNotFound("this tenant has no safety policy")
    return JSONResponse(_public(row))


async def put_policy(request: Request) -> Response:
    tenant_id = await tenant_of(request)
    row = await app_state(request).deps.guard.save(tenant_id, await _body(request))
    return JSONResponse(_public(row))


async def delete_policy(request: Request) -> Response:
    tenant_id = await tenant_of(request)
    await app_state(request).deps.guard.delete(tenant_id)
    return Response(status_code=204)
