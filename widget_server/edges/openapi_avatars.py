"""The avatar operations of the OpenAPI document (issue 17): generate-image for personas and test personas, and
the public image URLs. The attribute vocabularies come from the model the endpoints validate with."""

from __future__ import annotations

import copy
from typing import Any

from widget_server.domain.avatars.attributes import AvatarAttributes
from widget_server.domain.avatars.service import SOURCES
from widget_server.edges.openapi_components import REF, STRING, TIME, Schema, obj, ref
from widget_server.settings import Settings

Operations = dict[tuple[str, str], Any]
ERROR = {"$ref": "#/components/responses/Error"}


def avatar_schemas(settings: Settings) -> dict[str, Schema]:
    """The bodies and answers; `source` lists openai only where the server names an images endpoint."""
    attrs = AvatarAttributes.model_json_schema(ref_template=REF)
    attrs["description"] = ("A portrait's attributes, in PersonaGen's field names (`physical`, with `gender` and "
                            "`age` of `demographics`) and value vocabularies.")
    body = copy.deepcopy(attrs)
    sources = list(SOURCES) if settings.images_base_url else ["svg"]
    body["properties"]["source"] = {"enum": sources, "default": "svg", "description": (
        "svg: drawn here, offline (the default); openai: the server's images endpoint, when it names one "
        "(WIDGET_IMAGES_BASE_URL; else 400 avatar.source_unavailable)")}
    body["properties"]["person"] = {"type": "object", "description": (
        "a generated person (PersonaGen's `data`, as GET /v1/persona answers it): its `demographics` and `physical` "
        "attributes are drawn, its other fields ignored; a flat attribute given beside it wins")}
    body["required"] = []
    body["description"] = ("The attributes to draw (each optional: a missing one is derived from the persona's id, "
                           "the same every time); a value outside its vocabulary is a 400 avatar.invalid_attribute.")
    avatar = obj(id=STRING, url={"type": "string", "format": "uri", "description": "public: no key needed"},
                 media_type={"enum": ["image/svg+xml", "image/png"]},
                 sha256={"type": "string", "pattern": "^[0-9a-f]{64}$"},
                 bytes={"type": "integer", "minimum": 1}, attributes=ref("AvatarAttributes"), created_at=TIME)
    return {"AvatarAttributes": attrs, "GenerateImageBody": body, "Avatar": avatar,
            "PersonaAvatar": obj(avatar=ref("Avatar"), persona=ref("Persona")),
            "TestPersonaAvatar": obj(avatar=ref("Avatar"), persona=ref("TestPersona")),
            "GroupPersonaAvatar": obj(avatar=ref("Avatar"), persona=ref("GroupPersona"))}


def _generate(what: str, answer: str, field: str = "avatar_url") -> dict[str, Any]:
    made = {"content": {"application/json": {"schema": ref(answer)}}}
    return {
        "summary": f"Draw the {what}'s avatar (a deterministic SVG portrait), store it in place of the previous one "
                   f"and set the {what}'s {field} to its public URL (201: its first avatar; 200: replaced)",
        "requestBody": {"required": False, "content": {"application/json": {"schema": ref("GenerateImageBody")}}},
        "responses": {"200": {"description": "Replaced", **made}, "201": {"description": "Created", **made},
                      **{str(code): ERROR for code in (400, 401, 404, 413, 502)}},
    }


def _image(media_type: str) -> dict[str, Any]:
    return {
        "summary": f"A generated avatar ({media_type}); public, as an <img> sends no key. Cached for a year "
                   "(a regenerated avatar has a new URL), ETag the SHA-256, Cross-Origin-Resource-Policy: "
                   "cross-origin",
        "security": [],
        "responses": {"200": {"description": "OK", "content": {media_type: {"schema": {**STRING,
                                                                                     "format": "binary"}}}},
                      "304": {"description": "Not modified (If-None-Match)"}, "400": ERROR, "404": ERROR},
    }


def avatar_operations() -> Operations:
    return {
        ("/v1/personas/{id}/generate-image", "post"): _generate("persona", "PersonaAvatar"),
        ("/v1/test-personas/{id}/generate-image", "post"): _generate("test persona", "TestPersonaAvatar"),
        ("/v1/projects/{project_id}/persona-groups/{group_id}/personas/{persona_id}/generate-image", "post"): _generate(
            "group persona", "GroupPersonaAvatar", "image_url"),
        ("/avatars/{id}.svg", "get"): _image("image/svg+xml"),
        ("/avatars/{id}.png", "get"): _image("image/png"),
    }
