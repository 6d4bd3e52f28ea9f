"""The tenant library (issue 17): a group persona promoted is kept apart from any group (seed, version and
overrides copied, id `lib_...`), and can be added to another project's group, whose new member's
`library_persona_id` traces it back. Deleting a library persona leaves the members made from it."""

from __future__ import annotations

from typing import Any

from pydantic import ConfigDict, Field

from widget_server.backends.storage import Storage
from widget_server.clock import now
from widget_server.domain.people_groups import groups, overrides, paging
from widget_server.domain.people_groups.view import describe
from widget_server.errors import NotFound
from widget_server.ids import new_id
from widget_server.text import StorableText


class LibraryPersonaNotFound(NotFound):
    code = "library_persona.not_found"


class AddBody(StorableText):
    model_config = ConfigDict(extra="forbid", strict=True)

    library_persona_id: str = Field(min_length=1, max_length=60)


def public(row: dict[str, Any]) -> dict[str, Any]:
    shown = overrides.apply(describe(row["seed"], row["version"]), row["overrides"])
    return {"id": row["id"], **shown, "seed": row["seed"], "generator_version": row["version"],
            "source": row["source"], "created_at": row["created_at"].isoformat()}


async def promote(storage: Storage, tenant_id: str, project_id: str, group_id: str,
                  persona_id: str) -> dict[str, Any]:
    member = await groups.member_of(storage, tenant_id, project_id, group_id, persona_id)
    row = {"id": new_id("lib"), "tenant_id": tenant_id, "seed": member["seed"], "version": member["version"],
           "overrides": dict(member["overrides"]), "created_at": now(),
           "source": {"project_id": project_id, "group_id": group_id, "persona_id": persona_id}}
    await storage.persona_groups.add_library(row)
    return public(row)


async def get_row(storage: Storage, tenant_id: str, persona_id: str) -> dict[str, Any]:
    row = await storage.persona_groups.library_persona(tenant_id, persona_id)
    if row is None:
        raise LibraryPersonaNotFound(f"no library persona {persona_id[:60]!r}")
    return row


async def get(storage: Storage, tenant_id: str, persona_id: str) -> dict[str, Any]:
    return public(await get_row(storage, tenant_id, persona_id))


async def listing(storage: Storage, tenant_id: str, *, cursor: str | None, limit: int) -> dict[str, Any]:
    """A page of the library, oldest first."""
    rows, after = await paging.page(lambda a, n: storage.persona_groups.library(tenant_id, after=a, limit=n), cursor,
                                    paging.LIBRARY_CURSOR, limit)
    return {"data": [public(r) for r in rows], "next_cursor": after}


async def delete(storage: Storage, tenant_id: str, persona_id: str) -> None:
    if not await storage.persona_groups.delete_library(tenant_id, persona_id):
        raise LibraryPersonaNotFound(f"no library persona {persona_id[:60]!r}")


async def add_to_group(storage: Storage, tenant_id: str, project_id: str, group_id: str, body: Any) -> dict[str, Any]:
    """A new member of the group, the library persona's seed, version and overrides, traced back to it."""
    group = await groups.group(storage, tenant_id, project_id, group_id)
    spec: AddBody = groups.validate(AddBody, body)
    lib = await get_row(storage, tenant_id, spec.library_persona_id)
    row = groups.member_row(tenant_id, group, lib["seed"], lib["version"], dict(lib["overrides"]), lib["id"])
    await storage.persona_groups.add_member(row)
    return groups.member_public(row)
