"""Personas: strict validation of what tenants send, and the stored shape."""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import ConfigDict, Field, ValidationError, field_validator

from widget_server.backends.storage import DuplicateError, Storage
from widget_server.clock import now
from widget_server.domain.guardrails.policy import INTEGRAL, Topics
from widget_server.domain.guardrails.tenant_guard import compile_persona_topics, off_loop
from widget_server.domain.sealed import Sealer
from widget_server.errors import InvalidRequest, PersonaInvalid, PersonaNotFound, SlugTaken
from widget_server.ids import new_id
from widget_server.text import StorableText

SLUG = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,62}[a-z0-9])?$")
MAX_PERSONAS = 500  # per tenant


class Strict(StorableText):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True, strict=True)  # no "2" for 2, no false for 0


class ProviderSettings(Strict):
    kind: Literal["local", "openai"] | None = None
    model: str | None = Field(None, max_length=200)
    base_url: str | None = Field(None, max_length=500)
    temperature: float = Field(0.7, ge=0, le=2)
    max_tokens: Annotated[int, Field(ge=1, le=8192), INTEGRAL] | None = None
    api_key: str | None = Field(None, max_length=500, description=(
        "write-only: the key of the persona's own endpoint (base_url), stored sealed and never shown again (read "
        "back as null; api_key_set says whether one is stored). The server's own key never goes to base_url."))
    api_key_set: bool = Field(False, description="read-only: whether an api_key is stored (ignored when written)")


class PersonaBody(Strict):
    """A full persona as a tenant writes it (POST and PUT)."""

    name: str = Field(min_length=1, max_length=100)
    slug: str | None = None
    description: str = Field("", max_length=2000)
    system_prompt: str = Field("", max_length=20000)
    greeting: str = Field("", max_length=2000)
    starters: list[Annotated[str, Field(max_length=200)]] = Field(default_factory=list, max_length=8)
    avatar_url: str | None = Field(None, max_length=500)
    language: str = Field("en", max_length=16)
    provider: ProviderSettings = Field(default_factory=ProviderSettings)
    topics: Topics = Field(default_factory=Topics)  # the policy's own topic schema: one model for both

    @field_validator("slug")
    @classmethod
    def _slug(cls, value: str | None) -> str | None:
        if value is not None and not SLUG.match(value):
            raise ValueError("lowercase letters, digits and inner dashes, at most 64 characters")
        return value

    @field_validator("avatar_url")
    @classmethod
    def _avatar(cls, value: str | None) -> str | None:
        if value and not re.match(r"^https?://", value):
            raise ValueError("must be an http or https URL")
        return value or None


def slugify(name: str) -> str:
    slug = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")[:64].strip("-")
    return slug or "persona"


def _errors(exc: ValidationError) -> dict[str, Any]:
    fields = [
        {"field": ".".join(str(p) for p in err["loc"]) or "(body)", "message": err["msg"], "type": err["type"]}
        for err in exc.errors()
    ]
    return {"errors": fields}


def merge_patch(target: Any, patch: Any) -> Any:
    """JSON Merge Patch (RFC 7386): objects merge key by key, `null` removes a key (back to its default)."""
    if not isinstance(patch, dict):
        return patch
    out = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            out.pop(key, None)
        else:
            out[key] = merge_patch(out.get(key), value)
    return out


def parse(body: Any, *, partial_of: dict[str, Any] | None = None) -> PersonaBody:
    """Validate a POST/PUT body, or a PATCH body merged onto the current persona: 400 for its shape (not an
    object, an unknown or missing field), 422 `persona.invalid` for a value refused, naming the field."""
    if not isinstance(body, dict):
        raise InvalidRequest("the body must be a JSON object")
    if partial_of is not None:
        unknown = sorted(set(body) - set(PersonaBody.model_fields))
        if unknown:
            raise InvalidRequest(f"unknown field: {unknown[0]}", details={"errors": [
                {"field": f, "message": "Extra inputs are not permitted", "type": "extra_forbidden"} for f in unknown
            ]})
        body = merge_patch(partial_of, body)
    try:
        persona = PersonaBody.model_validate(body)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "body"
        if first["type"] in ("missing", "extra_forbidden"):  # the body's shape: 400
            label = "missing field" if first["type"] == "missing" else "unknown field"
            raise InvalidRequest(f"{label}: {where}", details=_errors(exc)) from exc
        raise PersonaInvalid(f"invalid field: {where}", details=_errors(exc)) from exc  # a value refused: 422
    return persona


async def _enforceable(persona: PersonaBody) -> None:
    """Topics that cannot be enforced (the embedding model missing) are not stored; compiling them also warms
    the guard's cache. Off the event loop, like every compilation."""
    if persona.topics.allowed or persona.topics.denied:
        await off_loop(compile_persona_topics, persona.topics.model_dump())


def public_doc(doc: dict[str, Any]) -> dict[str, Any]:
    """The stored document as anyone with the secret key may read it: a sealed api_key is never shown."""
    provider = dict(doc.get("provider") or {})
    provider["api_key_set"] = bool(provider.get("api_key"))
    provider["api_key"] = None
    return {**doc, "provider": provider}


def to_public(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": row["id"], "slug": row["slug"], **public_doc(row["doc"]),
        "created_at": row["created_at"].isoformat(), "updated_at": row["updated_at"].isoformat(),
    }


def _doc(body: PersonaBody, sealer: Sealer | None, kept: str | None = None) -> dict[str, Any]:
    """The document to store: a new api_key sealed, or the sealed one `kept` (a PATCH that left it out)."""
    doc = body.model_dump(exclude={"slug"}, mode="json")
    provider = doc["provider"]
    provider.pop("api_key_set", None)
    key = provider.get("api_key")
    if key:
        if sealer is None:
            raise InvalidRequest("this command cannot store a provider api_key", details={"field": "provider.api_key"})
        provider["api_key"] = sealer.seal(key)
    elif kept:
        provider["api_key"] = kept
    return doc


async def create(storage: Storage, tenant_id: str, body: Any, sealer: Sealer | None = None) -> dict[str, Any]:
    persona = parse(body)
    if await storage.count_personas(tenant_id) >= MAX_PERSONAS:
        raise PersonaInvalid(f"a tenant may have at most {MAX_PERSONAS} personas; delete one first",
                             code="persona.limit_reached", details={"limit": MAX_PERSONAS})
    await _enforceable(persona)
    slug = persona.slug or slugify(persona.name)
    stamp = now()
    row = {"id": new_id("per"), "tenant_id": tenant_id, "slug": slug, "doc": _doc(persona, sealer),
           "created_at": stamp, "updated_at": stamp}
    try:
        await storage.insert_persona(row)
    except DuplicateError as exc:
        raise SlugTaken(f"slug {slug!r} is taken", details={"slug": slug}) from exc
    return to_public(row)


async def get(storage: Storage, tenant_id: str, ref: str) -> dict[str, Any]:
    row = await storage.get_persona(tenant_id, ref)
    if row is None:
        raise PersonaNotFound(f"no persona {ref!r}")
    return row


async def replace(storage: Storage, tenant_id: str, ref: str, body: Any, *, partial: bool,
                  sealer: Sealer | None = None) -> dict[str, Any]:
    """PUT replaces every field (a stored api_key too, unless the body gives it again); PATCH merges, so an
    api_key left out stays and `"api_key": null` removes it."""
    row = await get(storage, tenant_id, ref)
    provider = dict(row["doc"].get("provider") or {})
    sealed = provider.pop("api_key", None)  # never merged as text: it is kept below, or replaced, or removed
    current = {**row["doc"], "provider": provider, "slug": row["slug"]}
    persona = parse(body, partial_of=current if partial else None)
    named = isinstance(body, dict) and isinstance(body.get("provider"), dict) and "api_key" in body["provider"]
    kept = sealed if partial and not named else None
    await _enforceable(persona)
    slug = persona.slug or (row["slug"] if partial else slugify(persona.name))
    try:
        await storage.update_persona(tenant_id, row["id"], slug, _doc(persona, sealer, kept))
    except DuplicateError as exc:
        raise SlugTaken(f"slug {slug!r} is taken", details={"slug": slug}) from exc
    return to_public(await get(storage, tenant_id, row["id"]))


async def delete(storage: Storage, tenant_id: str, ref: str) -> str:
    """Delete the persona `ref` names; returns its id."""
    row = await get(storage, tenant_id, ref)
    await storage.delete_persona(tenant_id, row["id"])
    return str(row["id"])


def widget_view(row: dict[str, Any]) -> dict[str, Any]:
    """What a site visitor may see of a persona: never the system prompt."""
    doc = row["doc"]
    return {"name": doc["name"], "avatar_url": doc.get("avatar_url"), "greeting": doc.get("greeting", ""),
            "starters": doc.get("starters", [])}
