"""`/v1/webhooks`: a tenant's webhook endpoints (the signing secret is shown once, at creation) and their attempts."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from widget_server.domain.analytics import webhook_endpoints as endpoints
from widget_server.edges.http import json_body, only_fields, query, tenant_of
from widget_server.edges.query_params import Limit, Param, declare
from widget_server.edges.state import app_state

ATTEMPTS_LIMIT = Limit(default=50, most=500)
ATTEMPTS = declare(Param("cursor", {"type": "string", "pattern": endpoints.ATTEMPT_CURSOR},
                         "next_cursor of the previous page"), ATTEMPTS_LIMIT.param)


async def list_webhooks(request: Request) -> Response:
    tenant_id = await tenant_of(request)
    rows = await app_state(request).deps.storage.webhooks.for_tenant(tenant_id)
    return JSONResponse({"data": [endpoints.to_public(r) for r in rows]})


async def create_webhook(request: Request) -> Response:
    tenant_id = await tenant_of(request)
    state = app_state(request)
    body = only_fields(await json_body(request), {"url", "event_types"}, {"url"})
    made = await endpoints.create(state.deps.storage, state.webhooks, tenant_id, body["url"],
                                  body.get("event_types", ["*"]), allow_private=state.settings.webhook_allow_private)
    return JSONResponse(made, status_code=201, headers={"Location": f"/v1/webhooks/{made['id']}"})


async def delete_webhook(request: Request) -> Response:
    tenant_id = await tenant_of(request)
    await endpoints.delete(app_state(request).deps.storage, tenant_id, request.path_params["id"])
    return Response(status_code=204)


async def list_attempts(request: Request) -> Response:
    """Newest first; `cursor` is the `next_cursor` of the previous page."""
    tenant_id = await tenant_of(request)
    params = query(request)
    page = await endpoints.attempts(app_state(request).deps.storage, tenant_id, request.path_params["id"],
                                    ATTEMPTS_LIMIT.of(params), params.get("cursor"))
    return JSONResponse(page)
