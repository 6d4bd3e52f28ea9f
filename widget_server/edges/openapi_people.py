"""`GET /v1/persona` in the OpenAPI document: PersonaGen's envelope, its error shape and codes. The schema of
`data` is read off a generated persona, so the document cannot drift from what the generator makes (every
persona has the same fields and types; the rules' test holds it)."""

from __future__ import annotations

from typing import Any

from widget_server.domain import people
from widget_server.edges.openapi_components import NULLABLE_STRING, STRING, Schema, obj, ref
from widget_server.edges.openapi_headers import RATE_LIMIT

CODES = {400: "INVALID_REQUEST: a bad seed, version or X-Demo, or an unknown query parameter (param names it)",
         401: "INVALID_API_KEY (no key and no X-Demo: true, or a malformed key) or API_KEY_NOT_FOUND (no active "
              "secret key has it)",
         429: "RATE_LIMIT_EXCEEDED (demo mode: 10 an hour per client address) or API_KEY_LIMIT_EXCEEDED (the key's "
              "monthly quota; error.usage says when it resets)",
         500: "GENERATION_FAILED"}

def _schema_of(value: Any) -> Schema:
    if isinstance(value, dict):
        return obj(**{k: _schema_of(v) for k, v in value.items()})
    if isinstance(value, list):
        return {"type": "array", "items": STRING}
    if isinstance(value, bool):
        return {"type": "boolean"}
    if isinstance(value, int):
        return {"type": "integer"}
    if isinstance(value, float):
        return {"type": "number"}
    return STRING


def people_schemas() -> dict[str, Schema]:
    usage = obj(requests_remaining={"type": ["integer", "null"], "minimum": 0},
                reset_date={"type": ["string", "null"], "format": "date-time"})
    metadata = obj(id=STRING, version={"const": "1.0"}, generator_version={"enum": list(people.VERSIONS)},
                   generated_at={"type": "string", "format": "date-time"}, seed=STRING, usage=usage)
    error = obj(["code", "message"], code={"enum": ["INVALID_REQUEST", "INVALID_API_KEY", "API_KEY_NOT_FOUND",
                                                    "RATE_LIMIT_EXCEEDED", "API_KEY_LIMIT_EXCEEDED",
                                                    "GENERATION_FAILED"]},
                message=STRING, param=STRING, usage=usage)
    return {"PersonaGenPersona": obj(success={"const": True}, data=_schema_of(people.generate("schema")),
                                     metadata=metadata),
            "PersonaGenError": obj(success={"const": False}, error=error, request_id=NULLABLE_STRING)}


def people_operations() -> dict[tuple[str, str], Any]:
    demo = {"name": "X-Demo", "in": "header", "required": False, "schema": {"enum": ["true", "false"]},
            "description": "true, without a key: demo mode, 10 requests an hour per client address"}
    errors = {str(code): {"description": text, "content": {"application/json": {"schema": ref("PersonaGenError")}},
                          **({"headers": {"Retry-After": {"description": "seconds until a request would be allowed",
                                                          "schema": STRING}}} if code == 429 else {})}
              for code, text in CODES.items()}
    return {("/v1/persona", "get"): {
        "summary": "A generated person (PersonaGen's contract): the same seed and version always give the same "
                   "persona; without a seed one is drawn and returned in metadata.seed",
        "tags": ["people"], "parameters": [demo], "security": [{"apiKey": []}, {"bearer": []}, {}],
        "responses": {"200": {"description": "OK (RateLimit headers: the key's persona_quota, or persona_demo)",
                              "headers": RATE_LIMIT,
                              "content": {"application/json": {"schema": ref("PersonaGenPersona")}}}, **errors}}}
