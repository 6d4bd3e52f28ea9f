"""`/v1/test-personas`: the simulated visitors of test suites, CRUD, tenant-scoped (issue 15)."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from widget_server.domain.people_groups import from_person
from widget_server.domain.testing import personas
from widget_server.edges.http import json_body, query, tenant_of
from widget_server.edges.query_params import Limit, declare, string
from widget_server.edges.state import app_state

LIST_LIMIT = Limit(default=100, most=200)
LIST = declare(LIST_LIMIT.param, string("cursor", "next_cursor of the previous page"))


async def list_test_personas(request: Request) -> Response:
    tenant_id = await tenant_of(request)
    params = query(request)
    storage = app_state(request).deps.storage
    return JSONResponse(await personas.page(storage, tenant_id, after=params.get("cursor"),
                                            limit=LIST_LIMIT.of(params)))


async def create_test_persona(request: Request) -> Response:
    tenant_id = await tenant_of(request)
    made = await personas.create(app_state(request).deps.storage, tenant_id, await json_body(request))
    return JSONResponse(made, status_code=201, headers={"Location": f"/v1/test-personas/{made['id']}"})


async def get_test_persona(request: Request) -> Response:
    tenant_id = await tenant_of(request)
    return JSONResponse(await personas.get(app_state(request).deps.storage, tenant_id, request.path_params["id"]))


async def replace_test_persona(request: Request) -> Response:
    tenant_id = await tenant_of(request)
    storage = app_state(request).deps.storage
    return JSONResponse(await personas.replace(storage, tenant_id, request.path_params["id"],
                                               await json_body(request)))


async def delete_test_persona(request: Request) -> Response:
    tenant_id = await tenant_of(request)
    await personas.delete(app_state(request).deps.storage, tenant_id, request.path_params["id"])
    return Response(status_code=204)


async def create_from_person(request: Request) -> Response:
    """A generated person (a seed, or a group's persona) as a test persona, its system prompt written from it."""
    tenant_id = await tenant_of(request)
    made = await from_person.create(app_state(request).deps.storage, tenant_id, await json_body(request))
    return JSONResponse(made, status_code=201, headers={"Location": f"/v1/test-personas/{made['id']}"})
