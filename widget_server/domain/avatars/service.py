"""generate-image for personas and test personas: draw (or, opt-in, fetch) the portrait, store it in place of the
owner's previous one and point the owner's `avatar_url` at it, all in one transaction. The URL is absolute (the
server's public URL, else the request's base URL): the widget accepts only absolute http(s) avatar URLs, and a
persona's `avatar_url` is validated as one on every PUT, so a relative one could not be written back."""

from __future__ import annotations

import hashlib
import re
from typing import Any

from widget_server.backends.providers.images import ImagesClient
from widget_server.backends.storage import Storage
from widget_server.backends.storage.avatars import OwnerGone
from widget_server.clock import now
from widget_server.domain import people, personas
from widget_server.domain.avatars.attributes import AvatarAttributes, resolve
from widget_server.domain.avatars.svg import render
from widget_server.domain.people_groups import groups
from widget_server.domain.testing import personas as test_personas
from widget_server.errors import InvalidRequest, NotFound, PersonaNotFound
from widget_server.ids import new_unguessable_id

AVATAR_ID = re.compile(r"^av_[0-9a-z]{26}\Z")
SOURCES = ("svg", "openai")
SVG = "image/svg+xml"


class AvatarNotFound(NotFound):
    code = "avatar.not_found"


def _source(body: Any) -> tuple[str, dict[str, Any]]:
    """The body's `source` and the attributes it names (an empty body: drawn here, every attribute derived)."""
    if not isinstance(body, dict):
        raise InvalidRequest("the body must be a JSON object", code="avatar.invalid_attribute")
    given = dict(body)
    source = given.pop("source", "svg")
    if source not in SOURCES:
        raise InvalidRequest("source must be svg or openai", code="avatar.invalid_attribute",
                             details={"errors": [{"field": "source", "message": "one of svg, openai"}]})
    return str(source), given


async def draw(body: Any, seed: str, images: ImagesClient | None) -> tuple[AvatarAttributes, str, bytes]:
    """The attributes, media type and bytes of the portrait a request asks for."""
    source, given = _source(body)
    attrs = resolve(given, seed)
    if source == "svg":
        return attrs, SVG, render(attrs)
    if images is None:
        raise InvalidRequest("this server has no images endpoint (WIDGET_IMAGES_BASE_URL): use source svg",
                             code="avatar.source_unavailable")
    return attrs, "image/png", await images.paint(prompt(attrs))


def prompt(attrs: AvatarAttributes) -> str:
    """The images endpoint's prompt, written from the enum values alone (no text of the tenant's reaches it)."""
    words = {k: str(v).replace("_", " ") for k, v in attrs.model_dump().items()}
    return (f"A friendly flat-style vector avatar portrait, head and shoulders, plain pastel background: a "
            f"{attrs.age}-year-old {words['gender']} person with {words['skin_tone']} skin, {words['hair_color']} "
            f"{words['hair_texture']} hair, {words['eye_color']} eyes and a {words['face_shape']} face. No text.")


def _row(tenant_id: str, kind: str, owner_id: str, media_type: str, data: bytes) -> dict[str, Any]:
    return {"id": new_unguessable_id("av"), "tenant_id": tenant_id, "owner_kind": kind, "owner_id": owner_id,
            "media_type": media_type, "data": data, "sha256": hashlib.sha256(data).hexdigest(), "created_at": now()}


def _public(row: dict[str, Any], url: str, attrs: AvatarAttributes) -> dict[str, Any]:
    return {"id": row["id"], "url": url, "media_type": row["media_type"], "sha256": row["sha256"],
            "bytes": len(row["data"]), "attributes": attrs.model_dump(), "created_at": row["created_at"].isoformat()}


EXTENSIONS = {SVG: "svg", "image/png": "png"}


def url_of(base_url: str, row: dict[str, Any]) -> str:
    """The avatar's public URL, its extension the stored media type's."""
    return f"{base_url.rstrip('/')}/avatars/{row['id']}.{EXTENSIONS[row['media_type']]}"


async def for_persona(storage: Storage, tenant_id: str, ref: str, body: Any, base_url: str,
                      images: ImagesClient | None = None) -> tuple[bool, dict[str, Any]]:
    """Generate the persona's avatar: (whether it is its first, the avatar and the persona as now stored)."""
    persona = await personas.get(storage, tenant_id, ref)
    attrs, media_type, data = await draw(body, persona["id"], images)
    row = _row(tenant_id, "persona", persona["id"], media_type, data)
    url = url_of(base_url, row)
    try:
        replaced = await storage.avatars.put_for_persona(row, {**persona["doc"], "avatar_url": url})
    except OwnerGone as exc:
        raise PersonaNotFound(f"no persona {ref!r}") from exc
    fresh = personas.to_public(await personas.get(storage, tenant_id, persona["id"]))
    return not replaced, {"avatar": _public(row, url, attrs), "persona": fresh}


async def for_test_persona(storage: Storage, tenant_id: str, persona_id: str, body: Any, base_url: str,
                           images: ImagesClient | None = None) -> tuple[bool, dict[str, Any]]:
    """Generate the test persona's avatar (`avatar_url` and `imageUrl` in its answer from now on)."""
    await test_personas.get(storage, tenant_id, persona_id)
    attrs, media_type, data = await draw(body, persona_id, images)
    row = _row(tenant_id, "test_persona", persona_id, media_type, data)
    url = url_of(base_url, row)
    try:
        replaced = await storage.avatars.put_for_test_persona(row, url)
    except OwnerGone as exc:
        raise test_personas.TestPersonaNotFound(f"no test persona {persona_id!r}") from exc
    fresh = await test_personas.get(storage, tenant_id, persona_id)
    return not replaced, {"avatar": _public(row, url, attrs), "persona": fresh}


async def for_group_persona(storage: Storage, tenant_id: str, where: tuple[str, str, str], body: Any, base_url: str,
                            images: ImagesClient | None = None) -> tuple[bool, dict[str, Any]]:
    """Generate a group persona's avatar, drawn from the person's attributes unless the body names others."""
    project_id, group_id, persona_id = where
    member = await groups.member_of(storage, tenant_id, project_id, group_id, persona_id)
    if isinstance(body, dict) and "person" not in body:  # the person it is, unless the body says otherwise
        body = {**body, "person": people.generate(member["seed"], member["version"])}
    attrs, media_type, data = await draw(body, persona_id, images)
    row = _row(tenant_id, "group_persona", persona_id, media_type, data)
    url = url_of(base_url, row)
    try:
        replaced = await storage.avatars.put_for_group_persona(row)
    except OwnerGone as exc:
        raise groups.GroupPersonaNotFound(f"no persona {persona_id!r} in group {group_id!r}") from exc
    fresh = groups.member_public(member, url)
    return not replaced, {"avatar": _public(row, url, attrs), "persona": fresh}


async def image_urls(storage: Storage, tenant_id: str, base_url: str, owner_ids: list[str]) -> dict[str, str]:
    """The group personas' avatar URLs, by persona id (those that have one)."""
    found = await storage.avatars.of_owners(tenant_id, "group_persona", owner_ids)
    return {owner: url_of(base_url, row) for owner, row in found.items()}


async def image(storage: Storage, avatar_id: str, extension: str) -> dict[str, Any]:
    """A stored avatar by its id alone (the public URL's): 404 for an id of no avatar, of no id's form, or asked
    for under the other extension."""
    row = await storage.avatars.get(avatar_id) if AVATAR_ID.match(avatar_id) else None
    if row is None or EXTENSIONS[row["media_type"]] != extension:
        raise AvatarNotFound("no such avatar")
    return row
