"""`/v1/keys` (a tenant's API keys: list, create, rotate, revoke) and `/v1/identity` (identity verification)."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from widget_server.domain import identity, keys
from widget_server.edges.http import json_body, only_fields, tenant_of
from widget_server.edges.state import app_state
from widget_server.errors import InvalidRequest


async def list_keys(request: Request) -> Response:
    tenant_id = await tenant_of(request)
    rows = await app_state(request).deps.storage.list_keys(tenant_id)
    return JSONResponse({"data": [keys.to_public(r) for r in rows]})


async def create_key(request: Request) -> Response:
    """201 with `key`: the only time it is shown (only its hash is stored)."""
    tenant_id = await tenant_of(request)
    body = only_fields(await json_body(request), {"kind", "origins", "persona_quota"}, {"kind"})
    if "origins" in body and body["origins"] is None:
        raise InvalidRequest("origins must be a list of origins; leave it out for a secret key",
                             details={"field": "origins"})
    key, made = await keys.create_key(app_state(request).deps.storage, tenant_id, body["kind"], body.get("origins"),
                                      body.get("persona_quota"))
    return JSONResponse({**made, "key": key}, status_code=201, headers={"Location": f"/v1/keys/{made['id']}"})


async def rotate_key(request: Request) -> Response:
    tenant_id = await tenant_of(request)
    body = only_fields(await json_body(request, optional=True), {"grace_s"})
    key, made = await keys.rotate(app_state(request).deps.storage, tenant_id, request.path_params["id"],
                                  body.get("grace_s", keys.DEFAULT_GRACE_S))
    return JSONResponse({**made, "key": key}, status_code=201, headers={"Location": f"/v1/keys/{made['id']}"})


async def revoke_key(request: Request) -> Response:
    tenant_id = await tenant_of(request)
    await keys.revoke(app_state(request).deps.storage, tenant_id, request.path_params["id"])
    return Response(status_code=204)


async def get_identity(request: Request) -> Response:
    tenant_id = await tenant_of(request)
    return JSONResponse(await identity.settings(app_state(request).deps.storage, tenant_id))


async def put_identity(request: Request) -> Response:
    tenant_id = await tenant_of(request)
    body = only_fields(await json_body(request), {"require_identity"}, {"require_identity"})
    return JSONResponse(await identity.require(app_state(request).deps.storage, tenant_id, body["require_identity"]))


async def rotate_identity(request: Request) -> Response:
    """A new identity secret, in this answer only; the previous one stops verifying at once."""
    tenant_id = await tenant_of(request)
    state = app_state(request)
    only_fields(await json_body(request, optional=True), set())
    return JSONResponse(await identity.rotate(state.deps.storage, state.secret.get_secret_value(), tenant_id),
                        status_code=201)
