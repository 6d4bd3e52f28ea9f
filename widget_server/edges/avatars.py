"""generate-image for personas and test personas, and `/avatars/{id}.svg`, the stored image served to any origin.

The image is public by design (an <img> on a customer's site cannot send a key): its id is unguessable, and it
changes with every regeneration, so a URL's bytes never change and may be cached for a year (`immutable`), with
the SHA-256 as ETag for the revalidations some caches still send. The headers let another origin show it as an
<img> (`Cross-Origin-Resource-Policy: cross-origin`, `Access-Control-Allow-Origin: *`, no credentials involved)
and keep it inert when opened as a document: `default-src 'none'` allows no script, fetch or frame, and
`style-src 'unsafe-inline'` only what an SVG's own inline styles need (ours uses presentation attributes alone);
`nosniff` makes a browser trust the media type and nothing else."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from widget_server.domain.avatars import service
from widget_server.edges.http import json_body, tenant_of
from widget_server.edges.state import app_state

IMAGE_HEADERS = {
    "Cache-Control": "public, max-age=31536000, immutable",
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'",
    "X-Content-Type-Options": "nosniff",
    "Cross-Origin-Resource-Policy": "cross-origin",
    "Access-Control-Allow-Origin": "*",
}


def base_url(request: Request) -> str:
    public = app_state(request).settings.public_url
    return public.rstrip("/") if public else str(request.base_url).rstrip("/")


async def generate_persona_image(request: Request) -> Response:
    tenant_id = await tenant_of(request)
    state = app_state(request)
    created, made = await service.for_persona(state.deps.storage, tenant_id, request.path_params["id"],
                                              await json_body(request, optional=True), base_url(request),
                                              state.images)
    return JSONResponse(made, status_code=201 if created else 200)


async def generate_test_persona_image(request: Request) -> Response:
    tenant_id = await tenant_of(request)
    state = app_state(request)
    created, made = await service.for_test_persona(state.deps.storage, tenant_id, request.path_params["id"],
                                                   await json_body(request, optional=True), base_url(request),
                                                   state.images)
    return JSONResponse(made, status_code=201 if created else 200)


async def generate_group_persona_image(request: Request) -> Response:
    tenant_id = await tenant_of(request)
    state, params = app_state(request), request.path_params
    where = (params["project_id"], params["group_id"], params["persona_id"])
    created, made = await service.for_group_persona(state.deps.storage, tenant_id, where,
                                                    await json_body(request, optional=True), base_url(request),
                                                    state.images)
    return JSONResponse(made, status_code=201 if created else 200)


async def _serve(request: Request, extension: str) -> Response:
    row = await service.image(app_state(request).deps.storage, request.path_params["id"], extension)
    etag = f'"{row["sha256"]}"'
    headers = {**IMAGE_HEADERS, "ETag": etag}
    asked = request.headers.get("if-none-match", "")
    if etag in (tag.strip().removeprefix("W/") for tag in asked.split(",")) or asked.strip() == "*":
        return Response(status_code=304, headers=headers)
    return Response(row["data"], media_type=row["media_type"], headers=headers)


async def avatar_svg(request: Request) -> Response:
    return await _serve(request, "svg")


async def avatar_png(request: Request) -> Response:
    return await _serve(request, "png")
