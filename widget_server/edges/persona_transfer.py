"""`GET /v1/personas/{id}/export` and `POST /v1/personas/import`: the persona documents of `widget-server persona
export|import` and of the console (domain.persona_files), over REST.

The export is YAML when `Accept` prefers `application/yaml` (or `text/yaml`, `application/x-yaml`), JSON when it
prefers JSON or says nothing, and 406 for an `Accept` that allows neither. The import reads YAML or JSON by its
`Content-Type` (JSON unless it names YAML), YAML as the console reads it (no aliases, errors with their line);
201 with the persona, or 409 for a slug that exists unless `?replace=true` (then 200 with the persona replaced).
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from widget_server.domain import persona_files, personas
from widget_server.edges.console import yaml_text
from widget_server.edges.http import json_body, query, read_body, tenant_of
from widget_server.edges.query_params import Param, declare
from widget_server.edges.state import app_state
from widget_server.errors import InvalidRequest, NotAcceptable

YAML_TYPES = ("application/yaml", "text/yaml", "application/x-yaml")
SERVED = ("application/json", *YAML_TYPES)  # in order of preference when the client's q-values tie
IMPORT = declare(Param("replace", {"enum": ["true", "false"], "default": "false"},
                       "true: a persona with the document's slug (or its name's) is replaced; else that is a 409"))


def _ranges(accept: str) -> list[tuple[str, float]]:
    out = []
    for part in accept.split(","):
        media, *params = (p.strip() for p in part.split(";"))
        q = 1.0
        for param in params:
            name, _, value = param.partition("=")
            if name.strip().lower() == "q":
                try:
                    q = float(value)
                except ValueError:
                    q = 0.0
        if media:
            out.append((media.lower(), q if 0 <= q <= 1 else 0.0))
    return out


def negotiate(accept: str) -> str:
    """The served type `accept` prefers (its most specific range decides each type's q), or a 406."""
    if not accept.strip():
        return SERVED[0]
    ranges = _ranges(accept)

    def quality(media: str) -> float:
        kind = media.split("/")[0]
        for pattern in (media, f"{kind}/*", "*/*"):
            found = [q for r, q in ranges if r == pattern]
            if found:
                return max(found)
        return 0.0
    best = max(SERVED, key=lambda m: (quality(m), -SERVED.index(m)))
    if quality(best) <= 0:
        raise NotAcceptable(f"this export is served as {', '.join(SERVED)}; Accept allows none of them",
                            details={"accept": accept[:200], "available": list(SERVED)})
    return best


async def export_persona(request: Request) -> Response:
    tenant_id = await tenant_of(request)
    media = negotiate(request.headers.get("accept", ""))
    row = await personas.get(app_state(request).deps.storage, tenant_id, request.path_params["id"])
    doc = persona_files.export_doc(row)
    if media in YAML_TYPES:
        return Response(persona_files.to_yaml(doc), media_type=f"{media}; charset=utf-8")
    return JSONResponse(doc)


async def _document(request: Request) -> object:
    if request.headers.get("content-type", "").split(";")[0].strip().lower() not in YAML_TYPES:
        return await json_body(request)
    try:
        text = (await read_body(request)).decode("utf-8-sig")
    except UnicodeDecodeError:
        raise yaml_text.InvalidYaml("the YAML is not UTF-8 text") from None
    return yaml_text.parse(text).doc


async def import_persona(request: Request) -> Response:
    tenant_id = await tenant_of(request)
    doc = await _document(request)
    if not isinstance(doc, dict):
        raise InvalidRequest("the document must be a mapping of a persona's fields (name, greeting, …)")
    replace = query(request).get("replace", "false")
    if replace not in ("true", "false"):
        raise InvalidRequest("replace is true or false", code="query.invalid", details={"param": "replace"})
    deps = app_state(request).deps
    persona, created = await persona_files.import_doc(deps.storage, tenant_id, doc, deps.sealer,
                                                      replace=replace == "true")
    if not created:
        deps.hub.changed("persona", [tenant_id, persona["id"]])  # every node reads its topics again
    return JSONResponse(persona, status_code=201 if created else 200,
                        headers={"Location": f"/v1/personas/{persona['id']}"})

