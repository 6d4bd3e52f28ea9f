"""Persona groups in a project (issue 17): a seed and a size (and optional filters) make a group's members.

Member i is the person of seed f"{group_seed}:{i}"; with filters, i counts on (0, 1, 2, ...) past the people who do
not fit until `size` fit, so the same seed, size and filters give the same members. The members are stored as
seed + generator version + overrides, and what is served is computed from the generator each time.

A project is the client's own id (1-64 of [A-Za-z0-9_-]) within its tenant: nothing creates or lists projects.
Statuses: 400 for a body or a value refused (naming the field), 400 `persona_group.filters_too_narrow` when the
filters let too few people through, 404 `persona_group.not_found` / `persona_group.persona_not_found`.
"""

from __future__ import annotations

import asyncio
import re
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from widget_server.backends.storage import Storage
from widget_server.clock import now
from widget_server.domain import people
from widget_server.domain.guardrails.policy import INTEGRAL
from widget_server.domain.people_groups import overrides, paging
from widget_server.domain.people_groups.places import state_named
from widget_server.domain.people_groups.view import describe
from widget_server.errors import InvalidRequest, NotFound
from widget_server.ids import new_id
from widget_server.text import StorableText

PROJECT_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}\Z")
ATTEMPTS_PER_MEMBER = 200
MAX_ATTEMPTS = 20_000  # ~4 s of generation (0.2 ms a person), off the event loop
MAX_SIZE = 500
Age = Annotated[int, Field(ge=0, le=120), INTEGRAL]


class GroupNotFound(NotFound):
    code = "persona_group.not_found"


class GroupPersonaNotFound(NotFound):
    code = "persona_group.persona_not_found"


class PersonaGroupFilters(StorableText):
    model_config = ConfigDict(extra="forbid", strict=True)

    age_min: Age | None = None
    age_max: Age | None = None
    locations: list[Annotated[str, Field(min_length=1, max_length=40)]] | None = Field(None, max_length=60)
    languages: list[Annotated[str, Field(min_length=1, max_length=40)]] | None = Field(None, max_length=20)

    @field_validator("locations")
    @classmethod
    def _states(cls, value: list[str] | None) -> list[str] | None:
        if value is None:
            return None
        states = [state_named(v) for v in value]
        for given, state in zip(value, states, strict=True):
            if state is None:
                raise ValueError(f"{given[:40]!r} is not a US state (a postal code like TX or a name like Texas)")
        return sorted({s for s in states if s})

    @field_validator("languages")
    @classmethod
    def _languages(cls, value: list[str] | None) -> list[str] | None:
        return None if value is None else sorted({"_".join(v.lower().split()) for v in value})

    def admits(self, person: dict[str, Any]) -> bool:
        demo = person["demographics"]
        return ((self.age_min is None or demo["age"] >= self.age_min)
                and (self.age_max is None or demo["age"] <= self.age_max)
                and (not self.locations or demo["location"] in self.locations)
                and (not self.languages or bool(set(self.languages) & set(demo["languages"]))))


class GroupBody(StorableText):
    model_config = ConfigDict(extra="forbid", strict=True, str_strip_whitespace=True)

    name: str = Field(min_length=1, max_length=200)
    seed: str = Field(min_length=1, max_length=200)
    size: Annotated[int, Field(ge=1, le=MAX_SIZE), INTEGRAL]
    generator_version: str | None = Field(None, max_length=20)
    filters: PersonaGroupFilters = Field(default_factory=PersonaGroupFilters)


def validate(model: type[BaseModel], body: Any) -> Any:
    """A body as `model`, or a 400 naming every field refused."""
    if not isinstance(body, dict):
        raise InvalidRequest("the body must be a JSON object")
    try:
        return model.model_validate(body)
    except ValidationError as exc:
        errors = [{"field": ".".join(str(p) for p in e["loc"]) or "(body)",
                   "message": e["msg"].removeprefix("Value error, "), "type": e["type"]}
                  for e in exc.errors(include_url=False)]
        raise InvalidRequest(f"invalid field: {errors[0]['field']}", details={"errors": errors}) from exc


def project(project_id: str) -> str:
    if not PROJECT_ID.match(project_id):
        raise InvalidRequest("a project id is 1-64 characters of A-Z, a-z, 0-9, _ and -",
                             details={"errors": [{"field": "project_id", "message": "1-64 of [A-Za-z0-9_-]"}]})
    return project_id


def member_seeds(seed: str, size: int, filters: PersonaGroupFilters, version: str) -> list[str]:
    """The seeds of the first `size` people of this group's sequence that the filters admit."""
    found: list[str] = []
    attempts = min(ATTEMPTS_PER_MEMBER * size, MAX_ATTEMPTS)
    for i in range(attempts):
        candidate = f"{seed}:{i}"
        if filters.admits(people.generate(candidate, version)):
            found.append(candidate)
            if len(found) == size:
                return found
    raise InvalidRequest(f"the filters admit {len(found)} of the first {attempts} people, fewer than size {size}: "
                         "widen them", code="persona_group.filters_too_narrow",
                         details={"found": len(found), "size": size, "attempts": attempts})


def group_public(row: dict[str, Any]) -> dict[str, Any]:
    return {"id": row["id"], "project_id": row["project_id"], "name": row["name"], "seed": row["seed"],
            "generator_version": row["generator_version"], "size": row["size"], "filters": row["filters"],
            "created_at": row["created_at"].isoformat()}


def member_public(row: dict[str, Any], image_url: str | None = None) -> dict[str, Any]:
    """The member computed from its seed and version, its overrides laid over the fields they name."""
    shown = overrides.apply(describe(row["seed"], row["version"]), row["overrides"])
    return {"id": row["id"], **shown, "image_url": image_url, "library_persona_id": row["library_persona_id"],
            "created_at": row["created_at"].isoformat()}


def member_row(tenant_id: str, group: dict[str, Any], seed: str, version: str, overrides: dict[str, Any],
               library_persona_id: str | None = None) -> dict[str, Any]:
    return {"id": new_id("gper"), "tenant_id": tenant_id, "project_id": group["project_id"],
            "group_id": group["id"], "seed": seed, "version": version, "overrides": overrides,
            "library_persona_id": library_persona_id, "created_at": now()}


async def create(storage: Storage, tenant_id: str, project_id: str, body: Any) -> dict[str, Any]:
    """The group and its members, written together."""
    project(project_id)
    spec: GroupBody = validate(GroupBody, body)
    version = people.version(spec.generator_version).name
    seeds = await asyncio.to_thread(member_seeds, spec.seed, spec.size, spec.filters, version)
    group = {"id": new_id("pgrp"), "tenant_id": tenant_id, "project_id": project_id, "name": spec.name,
             "seed": spec.seed, "generator_version": version, "size": spec.size,
             "filters": spec.filters.model_dump(exclude_none=True), "created_at": now()}
    await storage.persona_groups.add_group(group, [member_row(tenant_id, group, s, version, {}) for s in seeds])
    return group_public(group)


async def group(storage: Storage, tenant_id: str, project_id: str, group_id: str) -> dict[str, Any]:
    row = await storage.persona_groups.group(tenant_id, project(project_id), group_id)
    if row is None:
        raise GroupNotFound(f"no persona group {group_id[:60]!r} in project {project_id!r}")
    return row


async def groups(storage: Storage, tenant_id: str, project_id: str, *, cursor: str | None,
                 limit: int) -> dict[str, Any]:
    """A page of the project's groups, oldest first."""
    project(project_id)
    rows, after = await paging.page(lambda a, n: storage.persona_groups.groups(tenant_id, project_id, after=a, limit=n),
                                    cursor, paging.GROUP_CURSOR, limit)
    return {"data": [group_public(r) for r in rows], "next_cursor": after}


async def members(storage: Storage, tenant_id: str, project_id: str, group_id: str, *, cursor: str | None,
                  limit: int) -> tuple[list[dict[str, Any]], str | None]:
    """A page of the stored rows of the group's personas, oldest first, and the next page's cursor (404 when the
    group is not there)."""
    await group(storage, tenant_id, project_id, group_id)
    return await paging.page(lambda a, n: storage.persona_groups.members(tenant_id, project_id, group_id, after=a,
                                                                         limit=n),
                             cursor, paging.MEMBER_CURSOR, limit)


async def member_of(storage: Storage, tenant_id: str, project_id: str, group_id: str,
                    persona_id: str) -> dict[str, Any]:
    """The stored row (seed, version, overrides), 404 when the group or the persona is not there."""
    await group(storage, tenant_id, project_id, group_id)
    row = await storage.persona_groups.member(tenant_id, project_id, group_id, persona_id)
    if row is None:
        raise GroupPersonaNotFound(f"no persona {persona_id[:60]!r} in group {group_id!r}")
    return row


async def override(storage: Storage, tenant_id: str, project_id: str, group_id: str, persona_id: str,
                   body: Any) -> dict[str, Any]:
    """PATCH a member's overrides (a merge patch: null removes one); the member's row, 404 before the body is read."""
    await member_of(storage, tenant_id, project_id, group_id, persona_id)
    patch: overrides.Overrides = validate(overrides.Overrides, body)
    row = await storage.persona_groups.change_overrides(tenant_id, project_id, group_id, persona_id,
                                                        lambda current: overrides.merged(current, patch))
    if row is None:  # deleted meanwhile
        raise GroupPersonaNotFound(f"no persona {persona_id[:60]!r} in group {group_id!r}")
    return row


async def delete_members(storage: Storage, tenant_id: str, project_id: str, group_id: str,
                         persona_id: str | None = None) -> None:
    await group(storage, tenant_id, project_id, group_id)
    gone = await storage.persona_groups.delete_members(tenant_id, project_id, group_id, persona_id)
    if persona_id is not None and not gone:
        raise GroupPersonaNotFound(f"no persona {persona_id[:60]!r} in group {group_id!r}")
