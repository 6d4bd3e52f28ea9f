"""`POST /v1/widget/sessions`: a browser trades a publishable key and its Origin for a 15-minute token.

Cross-origin by nature: the preflight and the answer echo the caller's Origin (no credentials, no cookie),
so the widget can read a refusal and show it; whether the origin may chat is decided by the key's allowlist.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from widget_server.domain import personas, tenants
from widget_server.domain.tenants import SessionClaims
from widget_server.edges.http import deps, error_response, json_body, only_fields
from widget_server.errors import AuthError, InvalidRequest, OriginNotAllowed, WidgetError
from widget_server.ids import new_id

FIELDS = {"key", "persona", "visitor_id", "user"}


def cors(request: Request, response: Response) -> Response:
    origin = request.headers.get("origin")
    if origin:
        response.headers["Access-Control-Allow-Origin"] = origin
        response.headers["Access-Control-Max-Age"] = "600"
    response.headers["Vary"] = "Origin"
    return response


async def preflight(request: Request) -> Response:
    response = Response(status_code=204)
    response.headers["Access-Control-Allow-Methods"] = "POST"
    response.headers["Access-Control-Allow-Headers"] = "content-type"
    return cors(request, response)


def ws_url(request: Request) -> str:
    public = request.state.settings.public_url
    base = public.rstrip("/") if public else str(request.base_url).rstrip("/")
    return base.replace("https://", "wss://", 1).replace("http://", "ws://", 1) + "/v1/widget/ws"


def _visitor_id(value: Any) -> str:
    if value is None:
        return new_id("vis")
    if not isinstance(value, str) or not 1 <= len(value) <= 80 or not value.isprintable():
        raise InvalidRequest("visitor_id must be a printable string of 1 to 80 characters")
    return value


async def create_session(request: Request) -> Response:
    try:
        return cors(request, await _create(request))
    except WidgetError as exc:
        return cors(request, error_response(request, exc))


async def _create(request: Request) -> Response:
    d, signer = deps(request), request.state.signer
    body = only_fields(await json_body(request), FIELDS, {"key", "persona"})
    key = await tenants.authenticate_publishable(d.storage, body["key"])
    origin = request.headers.get("origin")
    if not tenants.origin_allowed(origin, key["origins"]):
        raise OriginNotAllowed(f"origin {origin or '(none)'} is not allowed for this key",
                               details={"origin": origin})
    tenant_id = key["tenant_id"]
    persona = await personas.get(d.storage, tenant_id, str(body["persona"]))
    user_id = await _verified_user(d.storage, tenant_id, body.get("user"))
    claims = SessionClaims(tenant_id, persona["id"], tenants.normalize_origin_rule(origin or ""),
                           _visitor_id(body.get("visitor_id")), user_id)
    token = signer.sign(claims)
    expires = datetime.now(UTC) + timedelta(seconds=signer.max_age_s)
    return JSONResponse({
        "token": token, "expires_at": expires.isoformat(), "ws_url": ws_url(request),
        "visitor_id": claims.visitor_id, "persona": personas.widget_view(persona),
    }, status_code=201)


async def _verified_user(storage: Any, tenant_id: str, user: Any) -> str | None:
    tenant = await storage.get_tenant(tenant_id)
    if user is None:
        if tenant and tenant["require_identity"]:
            raise AuthError("this site requires a verified user", code="auth.identity_required")
        return None
    if not isinstance(user, dict) or not isinstance(user.get("id"), str):
        raise InvalidRequest("user must be an object with a string id")
    secret = tenant["identity_secret"] if tenant else None
    if secret:
        if not tenants.identity_ok(secret, user["id"], str(user.get("hash", ""))):
            raise AuthError("user hash does not match", code="auth.identity_invalid")
        return str(user["id"])
    return None  # without an identity secret a claimed user id is not trusted
