"""`/v1/projects/{project_id}/persona-groups…` and `/v1/library/personas…` (issue 17), tenant-scoped: another
tenant's group, persona or library persona is a 404 like one that does not exist."""

from __future__ import annotations

import asyncio

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from widget_server.backends.storage import Storage
from widget_server.domain.avatars import service
from widget_server.domain.people_groups import groups, library, paging
from widget_server.edges.avatars import base_url
from widget_server.edges.http import json_body, query, tenant_of
from widget_server.edges.query_params import Limit, Param, Query, declare
from widget_server.edges.state import app_state

LIST_LIMIT = Limit(default=100, most=200)  # 200 members computed from their seeds: ~40 ms off the event loop


def _list(pattern: str) -> Query:
    return declare(LIST_LIMIT.param, Param("cursor", {"type": "string", "pattern": pattern},
                                           "next_cursor of the previous page"))


GROUPS, MEMBERS, LIBRARY = (_list(paging.GROUP_CURSOR), _list(paging.MEMBER_CURSOR), _list(paging.LIBRARY_CURSOR))


async def _context(request: Request) -> tuple[Storage, str, str]:
    tenant_id = await tenant_of(request)
    return app_state(request).deps.storage, tenant_id, request.path_params["project_id"]


async def create_group(request: Request) -> Response:
    storage, tenant_id, project_id = await _context(request)
    made = await groups.create(storage, tenant_id, project_id, await json_body(request))
    return JSONResponse(made, status_code=201,
                        headers={"Location": f"/v1/projects/{project_id}/persona-groups/{made['id']}"})


async def list_groups(request: Request) -> Response:
    storage, tenant_id, project_id = await _context(request)
    params = query(request)
    return JSONResponse(await groups.groups(storage, tenant_id, project_id, cursor=params.get("cursor"),
                                            limit=LIST_LIMIT.of(params)))


async def get_group(request: Request) -> Response:
    storage, tenant_id, project_id = await _context(request)
    row = await groups.group(storage, tenant_id, project_id, request.path_params["group_id"])
    return JSONResponse(groups.group_public(row))


async def list_members(request: Request) -> Response:
    storage, tenant_id, project_id = await _context(request)
    params = query(request)
    rows, after = await groups.members(storage, tenant_id, project_id, request.path_params["group_id"],
                                       cursor=params.get("cursor"), limit=LIST_LIMIT.of(params))
    urls = await service.image_urls(storage, tenant_id, base_url(request), [r["id"] for r in rows])
    data = await asyncio.to_thread(lambda: [groups.member_public(r, urls.get(r["id"])) for r in rows])
    return JSONResponse({"data": data, "next_cursor": after})


async def add_member(request: Request) -> Response:
    storage, tenant_id, project_id = await _context(request)
    made = await library.add_to_group(storage, tenant_id, project_id, request.path_params["group_id"],
                                      await json_body(request))
    return JSONResponse(made, status_code=201)


async def delete_members(request: Request) -> Response:
    storage, tenant_id, project_id = await _context(request)
    await groups.delete_members(storage, tenant_id, project_id, request.path_params["group_id"])
    return Response(status_code=204)


async def get_member(request: Request) -> Response:
    storage, tenant_id, project_id = await _context(request)
    row = await groups.member_of(storage, tenant_id, project_id, request.path_params["group_id"],
                                 request.path_params["persona_id"])
    urls = await service.image_urls(storage, tenant_id, base_url(request), [row["id"]])
    return JSONResponse(groups.member_public(row, urls.get(row["id"])))


async def override_member(request: Request) -> Response:
    storage, tenant_id, project_id = await _context(request)
    row = await groups.override(storage, tenant_id, project_id, request.path_params["group_id"],
                                request.path_params["persona_id"], await json_body(request))
    urls = await service.image_urls(storage, tenant_id, base_url(request), [row["id"]])
    return JSONResponse(groups.member_public(row, urls.get(row["id"])))


async def delete_member(request: Request) -> Response:
    storage, tenant_id, project_id = await _context(request)
    await groups.delete_members(storage, tenant_id, project_id, request.path_params["group_id"],
                                request.path_params["persona_id"])
    return Response(status_code=204)


async def promote_member(request: Request) -> Response:
    storage, tenant_id, project_id = await _context(request)
    made = await library.promote(storage, tenant_id, project_id, request.path_params["group_id"],
                                 request.path_params["persona_id"])
    return JSONResponse(made, status_code=201, headers={"Location": f"/v1/library/personas/{made['id']}"})


async def list_library(request: Request) -> Response:
    tenant_id = await tenant_of(request)
    params = query(request)
    return JSONResponse(await library.listing(app_state(request).deps.storage, tenant_id, cursor=params.get("cursor"),
                                              limit=LIST_LIMIT.of(params)))


async def get_library_persona(request: Request) -> Response:
    tenant_id = await tenant_of(request)
    return JSONResponse(await library.get(app_state(request).deps.storage, tenant_id, request.path_params["id"]))


async def delete_library_persona(request: Request) -> Response:
    tenant_id = await tenant_of(request)
    await library.delete(app_state(request).deps.storage, tenant_id, request.path_params["id"])
    return Response(status_code=204)
