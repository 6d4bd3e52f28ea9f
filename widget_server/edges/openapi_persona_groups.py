"""The OpenAPI description of persona groups, their personas and the tenant library (issue 17), merged into the
document by openapi.py. The body schemas come from the models the endpoints validate with."""

from __future__ import annotations

from typing import Any

from widget_server.domain import people
from widget_server.domain.people_groups.groups import GroupBody
from widget_server.domain.people_groups.library import AddBody
from widget_server.domain.people_groups.overrides import STATE_CODES, Overrides
from widget_server.domain.people_groups.places import STATES
from widget_server.edges.openapi_components import (
    NULLABLE_STRING,
    REF,
    STRING,
    TIME,
    TRIMMED,
    Schema,
    char_class,
    obj,
    ref,
)

Operations = dict[tuple[str, str], Any]
GROUPS = "/v1/projects/{project_id}/persona-groups"
MEMBERS = GROUPS + "/{group_id}/personas"
TEXT = {"type": "string", "pattern": "^[^\\x00]*$"}  # no database here stores a NUL
STRINGS = {"type": "array", "items": STRING}
NOT_ONLY_SPACE = f"[^{char_class(TRIMMED)}]"  # pydantic trims these


def _bodies() -> dict[str, Schema]:
    body = GroupBody.model_json_schema(ref_template=REF)
    defs = body.pop("$defs")
    for field in ("name", "seed"):  # trimmed, so not blank
        body["properties"][field]["allOf"] = [TEXT, {"pattern": NOT_ONLY_SPACE}]
    body["properties"]["generator_version"] = {"anyOf": [{"enum": list(people.VERSIONS)}, {"type": "null"}],
                                               "default": None, "description": "the current one when left out"}
    body["description"] = ("A group: `size` people drawn from `seed` (member i is the person of seed "
                           "\"{seed}:{i}\"), skipping those the filters refuse; the same body makes the same members. "
                           "400 persona_group.filters_too_narrow when the filters admit fewer than `size` people "
                           "within 200 x size (at most 20000) draws.")
    filters = defs["PersonaGroupFilters"]
    states = sorted({*STATES, *(code for code, _ in STATES.values())})
    filters["properties"]["locations"]["anyOf"][0]["items"] = {"enum": states}
    filters["description"] = ("Who may be drawn: an age range (inclusive), US states (postal codes like TX or the "
                              "generator's names like new_york), and languages (any one of them spoken, e.g. spanish)")
    add = AddBody.model_json_schema(ref_template=REF)
    add["properties"]["library_persona_id"] |= TEXT
    return {"PersonaGroupBody": body, "PersonaGroupFilters": filters, "AddLibraryPersonaBody": add,
            "FromPersonBody": _from_person(), "GroupPersonaOverrides": _overrides()}


def _overrides() -> Schema:
    """Every text trimmed, so not blank; a location "City, ST" (no comma in the city, a US postal code)."""
    body = Overrides.model_json_schema(ref_template=REF)
    for prop in body["properties"].values():
        given = prop["anyOf"][0]
        text = given.get("items", given)
        if "enum" not in text:
            text["allOf"] = [TEXT, {"pattern": NOT_ONLY_SPACE}]
    space, codes = char_class(TRIMMED), "|".join(sorted(STATE_CODES))
    body["properties"]["location"]["anyOf"][0]["allOf"] = [TEXT, {"pattern": (
        f"^[^,]*[^,{space}][^,]*, (?:{codes})[{space}]*$")}]
    body["description"] = (
        "Overrides laid over the generated person (a JSON merge patch): a field given is set, null removes its "
        "override, a field left out stays. Age, gender and income level cannot be overridden: the avatar and the "
        "generator's coherence rules read them. Surrounding whitespace is trimmed from every string.")
    return body


def _from_person() -> Schema:
    """Either a seed (and a version) or a group's persona; a name optional with either (else the person's)."""
    text = {**TEXT, "minLength": 1, "allOf": [{"pattern": NOT_ONLY_SPACE}]}
    name = {**text, "maxLength": 100, "description": "the test persona's name (default: the person's full name)"}
    ref_ = obj(project_id={"type": "string", "pattern": "^[A-Za-z0-9_-]{1,64}$"},
               group_id={**TEXT, "minLength": 1, "maxLength": 60}, persona_id={**TEXT, "minLength": 1, "maxLength": 60})
    null, name = {"type": "null"}, {"anyOf": [name, {"type": "null"}]}  # null: as if left out
    by_seed = obj(["seed"], seed={**text, "maxLength": 300}, version={"enum": [*people.VERSIONS, None]}, name=name,
                  group_persona=null)
    by_member = obj(["group_persona"], group_persona=ref_, name=name, seed=null, version=null)
    return {"oneOf": [by_seed, by_member], "description": (
        "A generated person as a test persona: the person of `seed` (and `version`), or a group's persona. Its "
        "system_prompt is written from the person's attributes, headers carry an Accept-Language from its "
        "languages; 409 test_persona.name_taken when the name exists.")}


def persona_group_schemas() -> dict[str, Schema]:
    group = obj(id=STRING, project_id=STRING, name=STRING, seed=STRING, generator_version=STRING,
                size={"type": "integer", "minimum": 1}, filters={"type": "object"}, created_at=TIME)
    person = dict(full_name=STRING, age={"type": "integer"}, gender=STRING, occupation=STRING,
                  location={**STRING, "description": "City, ST"}, income_level={"enum": ["Low", "Middle", "High"]},
                  personality_traits={**STRINGS, "minItems": 3, "maxItems": 5}, trusted_brands=STRINGS,
                  distrusted_brands=STRINGS, digital_behavior=STRING,
                  price_sensitivity={"enum": ["low", "medium", "high"]}, motivations=STRINGS, languages=STRINGS)
    member = obj(id=STRING, **person, image_url=NULLABLE_STRING, library_persona_id=NULLABLE_STRING,
                 created_at=TIME)
    source = obj(project_id=STRING, group_id=STRING, persona_id=STRING)
    lib = obj(id=STRING, **person, seed=STRING, generator_version=STRING, source=source, created_at=TIME)
    return {**_bodies(), "PersonaGroup": group, "GroupPersona": member, "LibraryPersona": lib,
            "PersonaGroupList": _page("PersonaGroup"), "GroupPersonaList": _page("GroupPersona"),
            "LibraryPersonaList": _page("LibraryPersona")}


def _page(item: str) -> Schema:
    """One page, oldest first; next_cursor is null on the last."""
    return obj(data={"type": "array", "items": ref(item)}, next_cursor=NULLABLE_STRING)


def _answer(status: str, name: str | None, description: str = "OK") -> dict[str, Any]:
    if name is None:
        return {status: {"description": description}}
    return {status: {"description": description, "content": {"application/json": {"schema": ref(name)}}}}


def _op(summary: str, answer: dict[str, Any], errors: tuple[int, ...], body: str | None = None) -> dict[str, Any]:
    op: dict[str, Any] = {"summary": summary, "tags": ["persona groups"], "responses": {
        **answer, **{str(code): {"$ref": "#/components/responses/Error"} for code in errors}}}
    if body:
        op["requestBody"] = {"required": True, "content": {"application/json": {"schema": ref(body)}}}
    return op


def persona_group_operations() -> Operations:
    found, write = (400, 401, 404), (400, 401, 404, 413)
    return {
        (GROUPS, "post"): _op("Create a persona group in a project (a project is any id of yours: 1-64 of "
                              "[A-Za-z0-9_-])", _answer("201", "PersonaGroup", "Created"), write, "PersonaGroupBody"),
        (GROUPS, "get"): _op("The project's persona groups, oldest first, a page at a time",
                             _answer("200", "PersonaGroupList"), (400, 401)),
        (GROUPS + "/{group_id}", "get"): _op("A persona group", _answer("200", "PersonaGroup"), found),
        (MEMBERS, "get"): _op("The group's personas, computed from their seeds, oldest first, a page at a time",
                              _answer("200", "GroupPersonaList"), found),
        (MEMBERS, "post"): _op("Add a library persona to the group (its library_persona_id traces it back)",
                               _answer("201", "GroupPersona", "Created"), write, "AddLibraryPersonaBody"),
        (MEMBERS, "delete"): _op("Delete every persona of the group (past test-run results stay)",
                                 _answer("204", None, "Deleted"), found),
        (MEMBERS + "/{persona_id}", "get"): _op("A persona of the group", _answer("200", "GroupPersona"), found),
        (MEMBERS + "/{persona_id}", "patch"): _op(
            "Override fields of a persona of the group (null removes an override); the persona with them laid over",
            _answer("200", "GroupPersona"), write, "GroupPersonaOverrides"),
        (MEMBERS + "/{persona_id}", "delete"): _op("Delete a persona of the group", _answer("204", None, "Deleted"),
                                                   found),
        (MEMBERS + "/{persona_id}/promote", "post"): _op(
            "Copy the persona (seed, version, overrides) into the tenant library",
            _answer("201", "LibraryPersona", "Created"), found),
        ("/v1/test-personas/from-person", "post"): {**_op(
            "Make a test persona (simulated visitor) from a generated person in one call",
            _answer("201", "TestPersona", "Created"), (400, 401, 404, 409, 413, 422), "FromPersonBody"),
            "tags": ["test personas"]},
        ("/v1/library/personas", "get"): _op("The tenant library, oldest first, a page at a time",
                                             _answer("200", "LibraryPersonaList"), (400, 401)),
        ("/v1/library/personas/{id}", "get"): _op("A library persona", _answer("200", "LibraryPersona"), found),
        ("/v1/library/personas/{id}", "delete"): _op("Delete a library persona (group members made from it stay)",
                                                     _answer("204", None, "Deleted"), found),
    }
