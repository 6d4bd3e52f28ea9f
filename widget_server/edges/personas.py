"""`/v1/personas`: CRUD, tenant-scoped; `{id}` is the id or the slug."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from widget_server.domain import personas
from widget_server.edges.http import json_body, query, tenant_of
from widget_server.edges.query_params import Limit, declare, string
from widget_server.edges.state import app_state

LIST_LIMIT = Limit(default=100, most=200)
LIST = declare(LIST_LIMIT.param, string("cursor", "next_cursor of the previous page"))


async def list_personas(request: Request) -> Response:
    """Oldest first, a page at a time (a tenant may have up to 500): `next_cursor` until the last page."""
    tenant_id = await tenant_of(request)
    params = query(request)
    limit = LIST_LIMIT.of(params)
    rows = await app_state(request).deps.storage.list_personas(tenant_id, after=params.get("cursor"), limit=limit + 1)
    page = rows[:limit]
    return JSONResponse({"data": [personas.to_public(r) for r in page],
                         "next_cursor": page[-1]["id"] if len(rows) > limit else None})


async def create_persona(request: Request) -> Response:
    tenant_id = await tenant_of(request)
    d = app_state(request).deps
    persona = await personas.create(d.storage, tenant_id, await json_body(request), d.sealer)
    return JSONResponse(persona, status_code=201, headers={"Location": f"/v1/personas/{persona['id']}"})


async def get_persona(request: Request) -> Response:
    tenant_id = await tenant_of(request)
    row = await personas.get(app_state(request).deps.storage, tenant_id, request.path_params["id"])
    return JSONResponse(personas.to_public(row))


async def replace_persona(request: Request) -> Response:
    tenant_id = await tenant_of(request)
    partial = request.method == "PATCH"
    body = await json_body(request)
    d = app_state(request).deps
    persona = await personas.replace(d.storage, tenant_id, request.path_params["id"], body, partial=partial,
                                     sealer=d.sealer)
    d.hub.changed("persona", [tenant_id, persona["id"]])  # every node reads its topics again
    return JSONResponse(persona)


async def delete_persona(request: Request) -> Response:
    tenant_id = await tenant_of(request)
    deps = app_state(request).deps
    deps.hub.persona_deleted(tenant_id, await personas.delete(deps.storage, tenant_id, request.path_params["id"]))
    return Response(status_code=204)
