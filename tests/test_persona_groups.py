"""Persona groups, their personas and the tenant library (issue 17) over a real server on SQLite and PostgreSQL:
the statuses, determinism, filters, tenant isolation, members stored as seed + version (not a copy), promotion to
the library and reuse in another project, and generated bodies (never a 5xx)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import Stack
from tests.support.errors import assert_error
from tests.support.groups import Api
from widget_server.backends.storage import open_storage
from widget_server.backends.storage.group_tables import group_personas
from widget_server.domain import people
from widget_server.domain.people_groups.view import describe

FIELDS = {"id", "full_name", "age", "gender", "occupation", "location", "income_level", "personality_traits",
          "trusted_brands", "distrusted_brands", "digital_behavior", "price_sensitivity", "motivations", "languages",
          "image_url", "library_persona_id", "created_at"}


@pytest.fixture
def db_stack(stack_factory: Callable[..., Stack], db_url: str) -> Stack:
    return stack_factory(database_url=db_url)


def test_create_is_201_with_the_group_and_its_members(db_stack: Stack) -> None:
    api = Api(db_stack)
    r = api.create(name="Texans", seed="abc", size=3)
    assert r.status_code == 201, r.text
    group = r.json()
    assert set(group) == {"id", "project_id", "name", "seed", "generator_version", "size", "filters", "created_at"}
    assert (group["project_id"], group["name"], group["size"], group["generator_version"]) == (
        api.project, "Texans", 3, people.CURRENT)
    assert r.headers["location"] == f"/v1/projects/{api.project}/persona-groups/{group['id']}"
    assert api.call("GET", r.headers["location"]).json() == group
    assert api.call("GET", api.groups()).json() == {"data": [group], "next_cursor": None}
    members = api.members(group)
    assert len(members) == 3 and all(set(m) == FIELDS for m in members)
    first = members[0]
    assert first["location"].count(", ") == 1 and len(first["location"].rsplit(", ")[1]) == 2
    assert first["income_level"] in {"Low", "Middle", "High"} and 3 <= len(first["personality_traits"]) <= 5
    assert first["image_url"] is None and first["library_persona_id"] is None
    path = f"{api.groups()}/{group['id']}/personas/{first['id']}"
    assert api.call("GET", path).json() == first


def test_the_same_seed_size_and_filters_give_the_same_members(db_stack: Stack) -> None:
    api, other = Api(db_stack), Api(db_stack)
    filters = {"age_min": 30, "age_max": 50, "locations": ["TX", "California"]}
    one, two = api.made(seed="same", size=6, filters=filters), other.made(seed="same", size=6, filters=filters)
    strip = [{k: v for k, v in m.items() if k not in ("id", "created_at")} for m in api.members(one)]
    assert strip == [{k: v for k, v in m.items() if k not in ("id", "created_at")} for m in other.members(two)]
    different = Api(db_stack).made(seed="other", size=6, filters=filters)
    assert [m["full_name"] for m in api.members(one)] != [m["full_name"] for m in api.members(different)]


def test_filters_are_kept_by_every_member(db_stack: Stack) -> None:
    api = Api(db_stack)
    group = api.made(seed="f", size=8, filters={"age_min": 25, "age_max": 45, "locations": ["tx", "new york"],
                                                "languages": ["Spanish"]})
    assert group["filters"] == {"age_min": 25, "age_max": 45, "locations": ["new_york", "texas"],
                                "languages": ["spanish"]}
    for m in api.members(group):
        assert 25 <= m["age"] <= 45 and m["location"].endswith((", TX", ", NY")) and "spanish" in m["languages"]


def test_filters_too_narrow_are_a_clear_400_and_make_no_group(db_stack: Stack) -> None:
    api = Api(db_stack)
    err = assert_error(api.create(size=3, filters={"languages": ["klingon"]}), 400,
                       "persona_group.filters_too_narrow")
    assert err["details"]["found"] == 0 and err["details"]["size"] == 3
    assert_error(api.create(size=2, filters={"age_min": 60, "age_max": 20}), 400, "persona_group.filters_too_narrow")
    assert api.call("GET", api.groups()).json() == {"data": [], "next_cursor": None}


@pytest.mark.parametrize("doc, field", [
    ({"name": "x", "seed": "s", "size": 0}, "size"), ({"name": "x", "seed": "s", "size": 501}, "size"),
    ({"name": "x", "seed": "s"}, "size"), ({"name": " ", "seed": "s", "size": 1}, "name"),
    ({"name": "x", "seed": "s", "size": 1, "filters": {"locations": ["Atlantis"]}}, "filters.locations"),
    ({"name": "x", "seed": "s", "size": 1, "filters": {"mood": "sad"}}, "filters.mood"),
    ({"name": "x", "seed": "s", "size": 1, "generator_version": "1999.1"}, None),
    ({"name": "x", "seed": "a\x00b", "size": 1}, "seed"),
])
def test_a_body_refused_is_a_400_naming_the_field(db_stack: Stack, doc: dict[str, Any], field: str | None) -> None:
    api = Api(db_stack)
    err = assert_error(api.call("POST", api.groups(), doc), 400)
    if field:
        assert field in {e["field"] for e in err["details"]["errors"]}


def test_a_bad_project_id_is_a_400_and_unknown_ids_404(db_stack: Stack) -> None:
    api = Api(db_stack)
    assert_error(api.call("GET", api.groups("bad.project")), 400, "request.invalid")
    assert_error(api.call("GET", api.groups("x" * 65)), 400, "request.invalid")
    assert_error(api.call("GET", f"{api.groups()}/pgrp_nope"), 404, "persona_group.not_found")
    assert_error(api.call("GET", f"{api.groups()}/pgrp_nope/personas"), 404, "persona_group.not_found")
    group = api.made(size=1)
    assert_error(api.call("GET", f"{api.groups()}/{group['id']}/personas/gper_nope"), 404,
                 "persona_group.persona_not_found")
    assert_error(api.call("DELETE", f"{api.groups()}/{group['id']}/personas/gper_nope"), 404,
                 "persona_group.persona_not_found")
    assert_error(api.call("GET", f"{api.groups('elsewhere')}/{group['id']}"), 404)  # a group is in its project


def test_delete_one_then_all_is_204_and_keeps_past_test_runs(db_stack: Stack) -> None:
    api = Api(db_stack)
    group = api.made(size=4)
    members = api.members(group)
    base = f"{api.groups()}/{group['id']}/personas"
    assert api.call("DELETE", f"{base}/{members[0]['id']}").status_code == 204
    assert_error(api.call("DELETE", f"{base}/{members[0]['id']}"), 404)
    assert [m["id"] for m in api.members(group)] == [m["id"] for m in members[1:]]
    runs_before = api.call("GET", "/v1/test-runs").json()
    assert api.call("DELETE", base).status_code == 204
    assert api.members(group) == [] and api.call("GET", f"{api.groups()}/{group['id']}").status_code == 200
    assert api.call("GET", "/v1/test-runs").json() == runs_before


async def _stored(url: str, persona_id: str, new_seed: str | None = None) -> dict[str, Any]:
    storage = await open_storage(url)
    try:
        async with storage.engine.begin() as conn:
            if new_seed:
                await conn.execute(sa.update(group_personas).where(group_personas.c.id == persona_id)
                                   .values(seed=new_seed))
            row = (await conn.execute(sa.select(group_personas).where(group_personas.c.id == persona_id)))
            return dict(row.mappings().one())
    finally:
        await storage.close()


def test_a_member_is_stored_as_seed_and_version_and_served_from_the_generator(db_stack: Stack) -> None:
    api = Api(db_stack)
    group = api.made(seed="stored", size=2)
    member = api.members(group)[0]
    url = db_stack.settings.resolved_database_url
    row = asyncio.run(_stored(url, member["id"]))
    assert set(row) == {"tenant_id", "project_id", "group_id", "id", "seed", "version", "overrides",
                        "library_persona_id", "created_at"}
    assert (row["seed"], row["version"], row["overrides"]) == ("stored:0", people.CURRENT, {})
    assert {k: member[k] for k in describe("stored:0", people.CURRENT)} == describe("stored:0", people.CURRENT)
    asyncio.run(_stored(url, member["id"], new_seed="elsewhere:7"))  # only the seed changes: the person follows
    served = api.call("GET", f"{api.groups()}/{group['id']}/personas/{member['id']}").json()
    assert {k: served[k] for k in describe("elsewhere:7", people.CURRENT)} == describe("elsewhere:7", people.CURRENT)
    assert served["full_name"] != member["full_name"]


def test_tenants_never_see_nor_touch_each_others_groups(db_stack: Stack) -> None:
    mine = Api(db_stack)
    theirs = Api(db_stack, db_stack.tenant()["sk"], project=mine.project)  # the same project id, another tenant
    group = mine.made(size=2)
    member = mine.members(group)[0]
    base = f"{mine.groups()}/{group['id']}"
    assert theirs.call("GET", mine.groups()).json() == {"data": [], "next_cursor": None}
    for method, path in (("GET", base), ("GET", f"{base}/personas"), ("DELETE", f"{base}/personas"),
                         ("GET", f"{base}/personas/{member['id']}"), ("DELETE", f"{base}/personas/{member['id']}"),
                         ("POST", f"{base}/personas/{member['id']}/promote")):
        assert_error(theirs.call(method, path), 404)
    lib = mine.call("POST", f"{base}/personas/{member['id']}/promote").json()
    assert theirs.call("GET", "/v1/library/personas").json() == {"data": [], "next_cursor": None}
    assert_error(theirs.call("GET", f"/v1/library/personas/{lib['id']}"), 404, "library_persona.not_found")
    assert_error(theirs.call("DELETE", f"/v1/library/personas/{lib['id']}"), 404)
    their_group = theirs.made(size=1)
    assert_error(theirs.call("POST", f"{theirs.groups()}/{their_group['id']}/personas",
                             {"library_persona_id": lib["id"]}), 404, "library_persona.not_found")
    assert len(mine.members(group)) == 2


def test_promote_to_the_library_and_reuse_in_another_project(db_stack: Stack) -> None:
    api = Api(db_stack)
    group = api.made(seed="lib", size=2)
    member = api.members(group)[1]
    r = api.call("POST", f"{api.groups()}/{group['id']}/personas/{member['id']}/promote")
    assert r.status_code == 201, r.text
    lib = r.json()
    assert lib["id"].startswith("lib_") and lib["full_name"] == member["full_name"]
    assert (lib["seed"], lib["generator_version"]) == ("lib:1", people.CURRENT)
    assert lib["source"] == {"project_id": api.project, "group_id": group["id"], "persona_id": member["id"]}
    assert api.call("GET", "/v1/library/personas").json() == {"data": [lib], "next_cursor": None}
    assert api.call("GET", f"/v1/library/personas/{lib['id']}").json() == lib
    other = Api(db_stack, project="another-project")
    target = other.made(seed="t", size=1)
    added = other.call("POST", f"{other.groups()}/{target['id']}/personas", {"library_persona_id": lib["id"]})
    assert added.status_code == 201, added.text
    assert added.json()["library_persona_id"] == lib["id"] and added.json()["full_name"] == member["full_name"]
    assert [m["library_persona_id"] for m in other.members(target)] == [None, lib["id"]]
    assert api.call("DELETE", f"/v1/library/personas/{lib['id']}").status_code == 204
    assert_error(api.call("GET", f"/v1/library/personas/{lib['id']}"), 404, "library_persona.not_found")
    assert len(other.members(target)) == 2  # the member made from it stays, still traced
    assert_error(other.call("POST", f"{other.groups()}/{target['id']}/personas", {"library_persona_id": lib["id"]}),
                 404, "library_persona.not_found")
    assert_error(other.call("POST", f"{other.groups()}/{target['id']}/personas", {"nope": 1}), 400)


JSON = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
                    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner,
                                                                                max_size=3), max_leaves=8)
FILTERS = st.fixed_dictionaries({}, optional={
    "age_min": st.integers(-5, 130) | JSON, "age_max": st.integers(-5, 130) | JSON,
    "locations": st.lists(st.sampled_from(["TX", "ca", "New York", "Atlantis"]) | st.text(max_size=5), max_size=3),
    "languages": st.lists(st.sampled_from(["english", "Spanish"]) | st.text(max_size=5), max_size=2),
    "extra": JSON}) | JSON
BODIES = st.fixed_dictionaries({}, optional={
    "name": st.text(max_size=210) | JSON, "seed": st.text(max_size=30) | JSON,
    "size": st.integers(-2, 8) | st.floats(allow_nan=False) | JSON, "filters": FILTERS,
    "generator_version": st.sampled_from(list(people.VERSIONS)) | JSON, "extra": JSON}) | JSON


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(doc=BODIES)
def test_any_body_is_a_201_or_a_clear_400_never_a_5xx(stack: Stack, doc: Any) -> None:
    api = Api(stack, project="hypothesis")
    r = httpx.post(api.groups(), content=json.dumps(doc), timeout=60,
                   headers={**api.headers, "Content-Type": "application/json"})
    if r.status_code == 201:
        group = r.json()
        assert len(api.members(group)) == group["size"] == doc["size"]
        return
    err = assert_error(r, 400)
    assert err["code"] in {"request.invalid", "persona_group.filters_too_narrow", "persona.unknown_version"}, r.text


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(doc=JSON | st.fixed_dictionaries({"library_persona_id": st.text(max_size=70) | JSON}))
def test_any_add_from_library_body_is_a_clear_4xx(stack: Stack, doc: Any) -> None:
    api = Api(stack, project="hypothesis-add")
    group = api.made(size=1)
    r = httpx.post(f"{api.groups()}/{group['id']}/personas", content=json.dumps(doc), timeout=60,
                   headers={**api.headers, "Content-Type": "application/json"})
    assert r.status_code in (400, 404), r.text
    assert_error(r, r.status_code)


# a generated person as a test persona


def test_a_seed_becomes_a_test_persona_written_from_its_attributes(db_stack: Stack) -> None:
    api = Api(db_stack)
    r = api.call("POST", "/v1/test-personas/from-person", {"seed": "visitor-1"})
    assert r.status_code == 201, r.text
    made = r.json()
    shown = describe("visitor-1", people.CURRENT)
    assert made["name"] == shown["full_name"] and made["id"].startswith("tper_")
    prompt = made["system_prompt"]
    assert prompt.startswith(f"You are {shown['full_name']}, {shown['age']}, ")
    assert f"{shown['occupation']} from {shown['location']}." in prompt and "support chat" in prompt
    assert all(t in prompt for t in shown["personality_traits"]) and "How you write:" in prompt
    assert made["description"].startswith(f"{shown['full_name']}, {shown['age']}") and "\n" not in made["description"]
    assert made["headers"]["Accept-Language"].startswith("en-US" if "english" in shown["languages"] else "")
    assert api.call("GET", r.headers["location"]).json() == made
    assert_error(api.call("POST", "/v1/test-personas/from-person", {"seed": "visitor-1"}), 409,
                 "test_persona.name_taken")
    renamed = api.call("POST", "/v1/test-personas/from-person", {"seed": "visitor-1", "name": "Second",
                                                                 "version": "2025.1"})
    assert renamed.status_code == 201 and renamed.json()["name"] == "Second"


def test_a_spanish_speaker_asks_for_spanish_too() -> None:
    from widget_server.domain.people_groups.from_person import accept_language
    assert accept_language(["english", "spanish"]) == "en-US, es;q=0.9"
    assert accept_language(["spanish"]) == "es"


def test_a_group_persona_becomes_a_test_persona(db_stack: Stack) -> None:
    api = Api(db_stack)
    group = api.made(seed="g", size=2)
    member = api.members(group)[1]
    ref = {"project_id": api.project, "group_id": group["id"], "persona_id": member["id"]}
    r = api.call("POST", "/v1/test-personas/from-person", {"group_persona": ref, "name": "From the group"})
    assert r.status_code == 201, r.text
    assert r.json()["system_prompt"].startswith(f"You are {member['full_name']}, {member['age']}, ")
    theirs = Api(db_stack, db_stack.tenant()["sk"])
    assert_error(theirs.call("POST", "/v1/test-personas/from-person", {"group_persona": ref}), 404)


@pytest.mark.parametrize("doc", [{}, {"seed": "a", "group_persona": {"project_id": "p", "group_id": "g",
                                                                       "persona_id": "x"}},
                                 {"seed": "a", "version": "0.1"}, {"seed": " "}, {"seed": "a", "mood": 1}, [],
                                 {"seed": 5}, {"seed": "a", "name": ""}])
def test_a_from_person_body_refused_is_a_400(db_stack: Stack, doc: Any) -> None:
    assert_error(Api(db_stack).call("POST", "/v1/test-personas/from-person", doc), 400)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(doc=JSON | st.fixed_dictionaries({}, optional={
    "seed": st.text(max_size=20) | JSON, "version": st.sampled_from(list(people.VERSIONS)) | JSON,
    "name": st.text(max_size=110) | JSON, "group_persona": JSON}))
def test_any_from_person_body_is_a_201_or_a_clear_4xx(stack: Stack, doc: Any) -> None:
    api = Api(stack)
    r = httpx.post(f"{stack.url}/v1/test-personas/from-person", content=json.dumps(doc), timeout=60,
                   headers={**api.headers, "Content-Type": "application/json"})
    if r.status_code == 201:
        assert api.call("DELETE", f"/v1/test-personas/{r.json()['id']}").status_code == 204
        return
    assert r.status_code in (400, 404, 409), r.text
    assert_error(r, r.status_code)


def test_a_group_persona_gets_an_avatar_drawn_from_its_person_and_image_url_points_at_it(db_stack: Stack) -> None:
    api = Api(db_stack)
    group = api.made(seed="face", size=2)
    member = api.members(group)[0]
    base = f"{api.groups()}/{group['id']}/personas/{member['id']}"
    r = api.call("POST", f"{base}/generate-image")
    assert r.status_code == 201, r.text
    avatar = r.json()["avatar"]
    physical = people.generate("face:0")["physical"]
    assert avatar["attributes"]["hair_color"] == physical["hair_color"]
    assert avatar["attributes"]["skin_tone"] == physical["skin_tone"]
    assert r.json()["persona"]["image_url"] == avatar["url"]
    assert api.call("GET", base).json()["image_url"] == avatar["url"]
    assert [m["image_url"] for m in api.members(group)] == [avatar["url"], None]
    image = httpx.get(avatar["url"])
    assert image.status_code == 200 and image.headers["content-type"] == "image/svg+xml"
    again = api.call("POST", f"{base}/generate-image")
    assert again.status_code == 200 and httpx.get(avatar["url"]).status_code == 404  # replaced
    assert api.call("DELETE", base).status_code == 204
    assert httpx.get(again.json()["avatar"]["url"]).status_code == 404  # gone with its persona
    assert_error(api.call("POST", f"{base}/generate-image"), 404, "persona_group.persona_not_found")
    theirs = Api(db_stack, db_stack.tenant()["sk"], project=api.project)
    other = api.members(group)[0]
    assert_error(theirs.call("POST", f"{api.groups()}/{group['id']}/personas/{other['id']}/generate-image"), 404)


def test_migration_0022_makes_the_tables_the_code_declares(db_url: str) -> None:
    """What the store writes to is what the migration made (columns, types, indexes), on both databases."""
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    from widget_server.backends.storage.tables import metadata

    ours = {"persona_groups", "group_personas", "library_personas"}

    async def diff() -> list[Any]:
        storage = await open_storage(db_url)
        try:
            async with storage.engine.connect() as conn:
                return await conn.run_sync(lambda sync: compare_metadata(MigrationContext.configure(sync), metadata))
        finally:
            await storage.close()

    def table_of(change: Any) -> str | None:
        item = change[0] if isinstance(change, list) else change
        for part in item[1:]:
            name = getattr(part, "name", None) if not isinstance(part, str) else part
            table = getattr(getattr(part, "table", None), "name", None)
            if table in ours or name in ours:
                return str(table or name)
        return None

    assert [c for c in asyncio.run(diff()) if table_of(c)] == []


def _documented(stack: Stack, name: str) -> Any:
    from jsonschema import Draft202012Validator

    spec = httpx.get(f"{stack.url}/openapi.json").json()
    return Draft202012Validator({"$ref": f"#/components/schemas/{name}", "components": spec["components"]})


REF_BODIES = st.fixed_dictionaries({}, optional={
    "seed": st.none() | st.sampled_from(["a", " ", ""]), "version": st.none() | st.sampled_from(["2025.1", "x"]),
    "name": st.none() | st.sampled_from(["", "Ann", " "]),
    "group_persona": st.none() | st.fixed_dictionaries({"project_id": st.sampled_from(["p", "bad.id"]),
                                                         "group_id": st.just("pgrp_x"), "persona_id": st.just("x")}),
})


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(doc=REF_BODIES)
def test_the_document_and_the_server_agree_on_from_person_bodies(stack: Stack, doc: dict[str, Any]) -> None:
    """A body the document admits is taken (201, or 404/409 for what it names); one it refuses is a 400."""
    admitted = _documented(stack, "FromPersonBody").is_valid(doc)
    r = httpx.post(f"{stack.url}/v1/test-personas/from-person", json=doc, headers=stack.auth, timeout=60)
    assert (r.status_code in (201, 404, 409)) == admitted, (doc, r.text)
    if r.status_code == 201:
        assert httpx.delete(f"{stack.url}/v1/test-personas/{r.json()['id']}", headers=stack.auth).status_code == 204
