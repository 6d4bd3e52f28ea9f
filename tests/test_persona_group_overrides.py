"""Overriding a group persona's fields (issue 17): `PATCH …/personas/{persona_id}` is a merge patch of the member's
overrides, laid over the generated person on every read (the row keeps seed + version + overrides, not a copy);
null removes one; unknown or refused fields are a 400 naming them; overrides travel with promote to the library,
into another project's group, and into a test persona made from the member. SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import Stack
from tests.support.errors import assert_error
from tests.support.groups import Api
from tests.test_persona_groups import _documented, _stored
from widget_server.domain import people
from widget_server.domain.people_groups.view import describe

SCENARIO = {"full_name": "Rosa Delgado", "occupation": "night-shift nurse", "location": "Austin, TX",
            "trusted_brands": ["Harvest & Co."], "languages": ["spanish", "english"], "price_sensitivity": "high"}


@pytest.fixture
def db_stack(stack_factory: Callable[..., Stack], db_url: str) -> Stack:
    return stack_factory(database_url=db_url)


def _member(api: Api, seed: str = "ov") -> tuple[str, dict[str, Any]]:
    group = api.made(seed=seed, size=2)
    member = api.members(group)[0]
    return f"{api.groups()}/{group['id']}/personas/{member['id']}", member


def test_a_patch_is_laid_over_the_generated_person_and_only_the_overrides_are_stored(db_stack: Stack) -> None:
    api = Api(db_stack)
    path, member = _member(api)
    r = api.call("PATCH", path, SCENARIO)
    assert r.status_code == 200, r.text
    generated = describe("ov:0", people.CURRENT)
    assert r.json() == {**member, **SCENARIO}
    assert api.call("GET", path).json() == r.json()
    assert api.call("GET", path.rsplit("/", 1)[0]).json()["data"][0] == r.json()
    assert {k: r.json()[k] for k in ("age", "gender", "income_level", "motivations")} == {
        k: generated[k] for k in ("age", "gender", "income_level", "motivations")}
    row = asyncio.run(_stored(db_stack.settings.resolved_database_url, member["id"]))
    assert (row["seed"], row["version"], row["overrides"]) == ("ov:0", people.CURRENT, SCENARIO)


def test_null_removes_an_override_and_a_field_left_out_stays(db_stack: Stack) -> None:
    api = Api(db_stack)
    path, member = _member(api)
    api.call("PATCH", path, SCENARIO)
    r = api.call("PATCH", path, {"full_name": None, "occupation": "  paramedic  ", "trusted_brands": []})
    assert r.status_code == 200, r.text
    assert r.json()["full_name"] == member["full_name"]  # the generated name again
    assert (r.json()["occupation"], r.json()["trusted_brands"], r.json()["location"]) == ("paramedic", [],
                                                                                          "Austin, TX")
    assert api.call("PATCH", path, {}).json() == r.json()
    cleared = api.call("PATCH", path, dict.fromkeys(SCENARIO | {"occupation": 1, "trusted_brands": 1})).json()
    assert cleared == member


@pytest.mark.parametrize("doc, field", [
    ({"age": 30}, "age"), ({"gender": "female"}, "gender"), ({"income_level": "High"}, "income_level"),
    ({"nickname": "Ro"}, "nickname"), ({"full_name": ""}, "full_name"), ({"full_name": "   "}, "full_name"),
    ({"full_name": 7}, "full_name"), ({"full_name": "a\x00b"}, "full_name"), ({"full_name": "x" * 101}, "full_name"),
    ({"location": "Austin"}, "location"), ({"location": "Austin, ZZ"}, "location"),
    ({"location": "Austin, tx"}, "location"), ({"location": ", TX"}, "location"),
    ({"location": "A, B, TX"}, "location"),
    ({"personality_traits": ["calm", "warm"]}, "personality_traits"),
    ({"personality_traits": ["a", "b", "c", "d", "e", "f"]}, "personality_traits"),
    ({"price_sensitivity": "extreme"}, "price_sensitivity"), ({"languages": ["klingon"]}, "languages.0"),
    ({"languages": []}, "languages"), ({"motivations": "saving time"}, "motivations"),
])
def test_a_field_refused_is_a_400_naming_it_and_changes_nothing(stack: Stack, doc: dict[str, Any],
                                                                 field: str) -> None:
    api = Api(stack)
    path, member = _member(api)
    err = assert_error(api.call("PATCH", path, {**doc, "occupation": "baker"}), 400, "request.invalid")
    assert any(e["field"].startswith(field) for e in err["details"]["errors"]), err
    assert api.call("GET", path).json() == member


def test_a_body_not_an_object_is_a_400_and_unknown_members_404(db_stack: Stack) -> None:
    api = Api(db_stack)
    path, member = _member(api)
    for body in ("[]", '"x"', "null", "{"):
        r = httpx.patch(path, content=body, timeout=30,
                        headers={**api.headers, "Content-Type": "application/json"})
        assert_error(r, 400)
    group_path = path.rsplit("/", 1)[0]
    assert_error(api.call("PATCH", f"{group_path}/gper_nope", {"occupation": "x"}), 404,
                 "persona_group.persona_not_found")
    assert_error(api.call("PATCH", f"{api.groups()}/pgrp_nope/personas/{member['id']}", {}), 404,
                 "persona_group.not_found")
    theirs = Api(db_stack, db_stack.tenant()["sk"], project=api.project)
    assert_error(theirs.call("PATCH", path, {"occupation": "spy"}), 404)
    assert api.call("GET", path).json() == member


def test_overrides_travel_with_promote_and_into_another_projects_group(db_stack: Stack) -> None:
    api = Api(db_stack)
    path, _ = _member(api)
    api.call("PATCH", path, SCENARIO)
    lib = api.call("POST", f"{path}/promote").json()
    assert {k: lib[k] for k in SCENARIO} == SCENARIO
    api.call("PATCH", path, {"full_name": "Changed Later"})  # the library keeps what was promoted
    assert api.call("GET", f"/v1/library/personas/{lib['id']}").json()["full_name"] == "Rosa Delgado"
    other = Api(db_stack, project="elsewhere")
    target = other.made(seed="t", size=1)
    added = other.call("POST", f"{other.groups()}/{target['id']}/personas", {"library_persona_id": lib["id"]}).json()
    assert {k: added[k] for k in SCENARIO} == SCENARIO and added["library_persona_id"] == lib["id"]


def test_overrides_travel_into_a_test_persona_made_from_the_member(db_stack: Stack) -> None:
    api = Api(db_stack)
    path, member = _member(api)
    api.call("PATCH", path, {**SCENARIO, "distrusted_brands": ["ValuMart"]})
    group_id = path.split("/persona-groups/")[1].split("/")[0]
    ref = {"project_id": api.project, "group_id": group_id, "persona_id": member["id"]}
    r = api.call("POST", "/v1/test-personas/from-person", {"group_persona": ref})
    assert r.status_code == 201, r.text
    made = r.json()
    assert made["name"] == "Rosa Delgado"
    assert made["system_prompt"].startswith(f"You are Rosa Delgado, {member['age']}, a night-shift nurse from "
                                            "Austin, TX.")
    assert "trust brands like Harvest & Co. and distrust ValuMart" in made["system_prompt"]
    assert "Spanish or English, as Rosa would type" in made["system_prompt"]
    assert made["headers"]["Accept-Language"] == "es, en-US;q=0.9"


def test_two_patches_at_once_of_different_fields_both_hold(db_stack: Stack) -> None:
    api = Api(db_stack)
    path, _ = _member(api)
    fields = [{"occupation": f"job {i}"} if i % 2 else {"motivations": [f"reason {i}"]} for i in range(8)]
    with ThreadPoolExecutor(4) as pool:
        answers = list(pool.map(lambda doc: api.call("PATCH", path, doc), fields))
    assert [a.status_code for a in answers] == [200] * 8
    final = api.call("GET", path).json()
    assert final["occupation"].startswith("job ") and final["motivations"][0].startswith("reason ")


JSON = st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=12),
                    lambda inner: st.lists(inner, max_size=6) | st.dictionaries(st.text(max_size=8), inner,
                                                                                max_size=3), max_leaves=8)
TEXTS = st.text(max_size=12) | st.sampled_from(["Austin, TX", " Reno, NV ", "X, ZZ", ", TX", "A,B, TX", "  "])
BODIES = st.fixed_dictionaries({}, optional={
    "full_name": TEXTS | JSON, "location": TEXTS | JSON, "price_sensitivity": st.sampled_from(["low", "x"]) | JSON,
    "personality_traits": st.lists(TEXTS, max_size=6) | JSON, "languages": st.lists(
        st.sampled_from(["english", "thai", "elvish"]), max_size=6) | JSON, "age": JSON}) | JSON


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(doc=BODIES)
def test_the_document_and_the_server_agree_on_override_bodies(stack: Stack, doc: Any) -> None:
    """Any body: a 200 when the document admits it, else a clear 400 (never a 5xx), and a refused one changes
    nothing."""
    api = Api(stack, project="hypothesis-overrides")
    path, member = _member(api, seed="hyp")
    admitted = _documented(stack, "GroupPersonaOverrides").is_valid(doc)
    r = httpx.patch(path, content=json.dumps(doc), timeout=60,
                    headers={**api.headers, "Content-Type": "application/json"})
    assert (r.status_code == 200) == admitted, (doc, r.text)
    if r.status_code != 200:
        assert_error(r, 400)
        assert api.call("GET", path).json() == member
