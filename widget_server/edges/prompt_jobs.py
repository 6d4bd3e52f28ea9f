"""`/v1/personas/{id}/prompt/jobs` and `/v1/prompt/jobs…`: a prompt run in the background (202 at once; read the
job, or get it POSTed to a `callback_url`), and `/v1/prompt/sessions`: the conversations of the API's channels."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from widget_server.domain.chat import sessions
from widget_server.domain.prompt_jobs import jobs
from widget_server.domain.prompt_jobs.shape import public
from widget_server.edges.http import json_body, only_fields, query, request_id, tenant_of
from widget_server.edges.query_params import Limit, Param, declare
from widget_server.edges.state import app_state

FIELDS = {"message", "conversation_id", "visitor_id", "callback_url"}
JOB_LIMIT = Limit(default=20, most=100)
JOBS = declare(JOB_LIMIT.param, Param("cursor", {"type": "string", "pattern": jobs.CURSOR},
                                      "next_cursor of the previous page"))
SESSION_LIMIT = Limit(default=20, most=100)
SESSIONS = declare(SESSION_LIMIT.param, Param("cursor", {"type": "string", "pattern": sessions.CURSOR},
                                              "next_cursor of the previous page"),
                   Param("channel", {"enum": list(sessions.API_CHANNELS)},
                         "only this channel's (api: REST and SSE prompts and jobs; openai)"))


async def create_job(request: Request) -> Response:
    tenant_id = await tenant_of(request)
    body = only_fields(await json_body(request), FIELDS, {"message"})
    row, secret = await jobs.submit(app_state(request).prompt_jobs, tenant_id, request.path_params["id"][:80],
                                    body, request_id(request))
    out = public(row)
    if secret is not None:
        out["callback_secret"] = secret  # shown this once: it verifies the callback's Widget-Signature
    return JSONResponse(out, status_code=202, headers={"Location": f"/v1/prompt/jobs/{row['id']}"})


async def get_job(request: Request) -> Response:
    tenant_id = await tenant_of(request)
    return JSONResponse(public(await jobs.get(app_state(request).prompt_jobs, tenant_id, request.path_params["id"])))


async def cancel_job(request: Request) -> Response:
    tenant_id = await tenant_of(request)
    row = await jobs.cancel(app_state(request).prompt_jobs, tenant_id, request.path_params["id"])
    # 200 once it ended cancelled; 202 while another node stops it (it ends cancelled within a lease's third)
    return JSONResponse(public(row), status_code=200 if row["status"] == "cancelled" else 202)


async def list_jobs(request: Request) -> Response:
    tenant_id = await tenant_of(request)
    params = query(request)
    rows, cursor = await jobs.page(app_state(request).prompt_jobs, tenant_id, JOB_LIMIT.of(params),
                                   params.get("cursor"))
    return JSONResponse({"data": [public(r) for r in rows], "next_cursor": cursor})


async def list_sessions(request: Request) -> Response:
    tenant_id = await tenant_of(request)
    params = query(request)
    data, cursor = await sessions.page(app_state(request).deps.storage, tenant_id, limit=SESSION_LIMIT.of(params),
                                       cursor=params.get("cursor"), channel=params.get("channel"))
    return JSONResponse({"data": data, "next_cursor": cursor})
