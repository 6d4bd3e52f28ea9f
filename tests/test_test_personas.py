"""`/v1/test-personas` (issue 15) over a real server on SQLite and PostgreSQL: every status the issue names, the
error body, validation of headers, tenant isolation, a race for one name, and generated bodies."""

from __future__ import annotations

import json
import secrets
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import Stack
from tests.support.errors import assert_error

FIELDS = {"id", "name", "description", "system_prompt", "headers", "goal", "max_turns", "avatar_url", "imageUrl",
          "created_at", "updated_at"}


@pytest.fixture
def db_stack(stack_factory: Callable[..., Stack], db_url: str) -> Stack:
    return stack_factory(database_url=db_url)


def name() -> str:
    return f"Visitor {secrets.token_hex(4)}"


def body(**fields: Any) -> dict[str, Any]:
    return {"name": name(), "description": "A cyclist in Lyon who writes in French.",
            "system_prompt": "You are a visitor of a bike shop. Write short messages in French.",
            "headers": {"Accept-Language": "fr-FR,fr;q=0.9", "User-Agent": "suite/1.0"},
            "goal": "Get a refund for a broken helmet", "max_turns": 6, **fields}


class Api:
    def __init__(self, stack: Stack, sk: str | None = None) -> None:
        self.base = f"{stack.url}/v1/test-personas"
        self.headers = {"Authorization": f"Bearer {sk or stack.sk}"}

    def post(self, doc: Any) -> httpx.Response:
        return httpx.post(self.base, json=doc, headers=self.headers)

    def get(self, ref: str = "", **params: Any) -> httpx.Response:
        return httpx.get(f"{self.base}/{ref}" if ref else self.base, params=params, headers=self.headers)

    def put(self, ref: str, doc: Any) -> httpx.Response:
        return httpx.put(f"{self.base}/{ref}", json=doc, headers=self.headers)

    def delete(self, ref: str) -> httpx.Response:
        return httpx.delete(f"{self.base}/{ref}", headers=self.headers)

    def made(self, **fields: Any) -> dict[str, Any]:
        r = self.post(body(**fields))
        assert r.status_code == 201, r.text
        return r.json()  # type: ignore[no-any-return]


def fields_named(err: dict[str, Any]) -> set[str]:
    return {e["field"] for e in err["details"].get("errors", [])}


# the statuses of the issue, one by one


def test_post_answers_201_with_location_and_the_test_persona(db_stack: Stack) -> None:
    api, doc = Api(db_stack), body()
    r = api.post(doc)
    assert r.status_code == 201, r.text
    made = r.json()
    assert set(made) == FIELDS and made["id"].startswith("tper_")
    assert {k: made[k] for k in doc} == doc
    assert made["created_at"] == made["updated_at"]
    assert r.headers["location"] == f"/v1/test-personas/{made['id']}"
    again = httpx.get(db_stack.url + r.headers["location"], headers=api.headers)
    assert again.status_code == 200 and again.json() == made


def test_post_with_only_a_name_fills_the_defaults(db_stack: Stack) -> None:
    r = Api(db_stack).post({"name": "  Lone visitor  "})
    assert r.status_code == 201, r.text
    made = r.json()
    assert made["name"] == "Lone visitor"  # trimmed
    assert (made["description"], made["system_prompt"], made["headers"], made["goal"], made["max_turns"]) == (
        "", "", {}, "", 10)


def test_post_without_a_name_is_a_400_naming_it(db_stack: Stack) -> None:
    doc = body()
    del doc["name"]
    err = assert_error(Api(db_stack).post(doc), 400, "request.invalid", "invalid_request")
    assert err["message"] == "missing field: name" and fields_named(err) == {"name"}


@pytest.mark.parametrize("doc, field", [([], "(body)"), ("x", "(body)"), ({"name": "a", "mood": "cross"}, "mood")])
def test_a_body_of_the_wrong_shape_is_a_400(db_stack: Stack, doc: Any, field: str) -> None:
    err = assert_error(Api(db_stack).post(doc), 400, "request.invalid")
    assert field == "(body)" or fields_named(err) == {field}


def test_post_of_a_name_that_exists_is_a_409_whatever_its_case(db_stack: Stack) -> None:
    api = Api(db_stack)
    first = api.made()
    for same in (first["name"], first["name"].upper(), f"  {first['name'].lower()} "):
        err = assert_error(api.post(body(name=same)), 409, "test_persona.name_taken", "conflict")
        assert err["details"] == {"name": same.strip()}
    assert [p["id"] for p in api.get().json()["data"]] == [first["id"]]


def test_a_race_for_one_name_makes_one_persona_and_409s(db_stack: Stack) -> None:
    """The database's constraint decides between writers that each found the name free: never a 500."""
    api, doc = Api(db_stack), body()
    with ThreadPoolExecutor(8) as pool:
        statuses = sorted(r.status_code for r in pool.map(lambda _: api.post(doc), range(8)))
    assert statuses == [201] + [409] * 7
    assert len(api.get().json()["data"]) == 1


def test_get_one_is_200_and_an_unknown_id_404(db_stack: Stack) -> None:
    api = Api(db_stack)
    made = api.made()
    assert api.get(made["id"]).json() == made
    assert_error(api.get("tper_nobody"), 404, "test_persona.not_found", "not_found")


def test_list_is_200_oldest_first_a_page_at_a_time(db_stack: Stack) -> None:
    api = Api(db_stack)
    assert api.get().json() == {"data": [], "next_cursor": None}
    made = [api.made()["id"] for _ in range(5)]
    seen, cursor = [], None
    while True:
        page = api.get(limit=2, **({"cursor": cursor} if cursor else {})).json()
        assert len(page["data"]) <= 2
        seen += [p["id"] for p in page["data"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == made
    assert_error(api.get(limit=0), 400, "query.invalid")
    assert_error(api.get(limt=2), 400, "query.invalid")


def test_put_replaces_every_field_and_is_200(db_stack: Stack) -> None:
    api = Api(db_stack)
    made = api.made()
    r = api.put(made["id"], {"name": "Renamed", "max_turns": 3})
    assert r.status_code == 200, r.text
    changed = r.json()
    assert changed["name"] == "Renamed" and changed["max_turns"] == 3
    assert changed["headers"] == {} and changed["goal"] == "" and changed["system_prompt"] == ""  # a replacement
    assert changed["id"] == made["id"] and changed["created_at"] == made["created_at"]
    assert changed["updated_at"] >= made["updated_at"]
    assert api.get(made["id"]).json() == changed


def test_put_of_an_unknown_id_is_a_404(db_stack: Stack) -> None:
    assert_error(Api(db_stack).put("tper_nobody", body()), 404, "test_persona.not_found")


def test_put_renamed_onto_anothers_name_is_a_409_and_changes_nothing(db_stack: Stack) -> None:
    api = Api(db_stack)
    one, two = api.made(), api.made()
    assert_error(api.put(two["id"], body(name=one["name"].lower())), 409, "test_persona.name_taken")
    assert api.get(two["id"]).json() == two
    kept = api.put(two["id"], body(name=two["name"].upper()))  # its own name in another case is its own
    assert kept.status_code == 200 and kept.json()["name"] == two["name"].upper()


def test_put_without_a_name_is_a_400(db_stack: Stack) -> None:
    api = Api(db_stack)
    made = api.made()
    assert_error(api.put(made["id"], {"goal": "x"}), 400, "request.invalid")


def test_delete_is_204_then_404(db_stack: Stack) -> None:
    api = Api(db_stack)
    made = api.made()
    r = api.delete(made["id"])
    assert r.status_code == 204 and r.content == b""
    assert_error(api.get(made["id"]), 404, "test_persona.not_found")
    assert_error(api.delete(made["id"]), 404, "test_persona.not_found")
    assert api.post(body(name=made["name"])).status_code == 201  # the name is free again


# validation


@pytest.mark.parametrize("headers", [
    {"Accept Language": "fr"}, {"X-Ünicode": "1"}, {"": "x"}, {"a:b": "x"}, {"X" * 65: "x"},
    {"X-Test": "line\r\nInjected: yes"}, {"X-Test": "naïve"}, {"X-Test": " padded"}, {"X-Test": "x" * 1001},
    {"X-Test": 3}, {"Host": "evil.example"}, {"authorization": "Bearer sk_x"}, {"Sec-WebSocket-Key": "x"},
    {"X-Test": "1", "x-test": "2"}, {f"X-{i}": "v" for i in range(21)},
])
def test_a_bad_header_is_a_422_naming_headers(stack: Stack, headers: dict[str, Any]) -> None:
    err = assert_error(Api(stack).post(body(headers=headers)), 422, "test_persona.invalid")
    assert any(f.startswith("headers") for f in fields_named(err)), err


def test_header_values_may_be_empty_and_names_any_token(stack: Stack) -> None:
    headers = {"X-Empty": "", "Accept-Language": "de-CH, de;q=0.8", "x~odd!#$%&'*+.^_`|": "v"}
    assert Api(stack).made(headers=headers)["headers"] == headers


@pytest.mark.parametrize("field, value", [
    ("max_turns", 0), ("max_turns", 51), ("max_turns", "3"), ("max_turns", True), ("max_turns", 2.5),
    ("name", ""), ("name", "   "), ("name", "x" * 101), ("goal", "x" * 2001), ("description", 7),
    ("system_prompt", "nul \x00 inside"), ("headers", ["Accept-Language"]),
])
def test_a_refused_value_is_a_422_naming_the_field(stack: Stack, field: str, value: Any) -> None:
    err = assert_error(Api(stack).post(body(**{field: value})), 422, "test_persona.invalid")
    assert field in {f.split(".")[0] for f in fields_named(err)}


def test_max_turns_written_as_a_whole_float_is_the_integer(stack: Stack) -> None:
    assert Api(stack).made(max_turns=4.0)["max_turns"] == 4


def test_without_the_secret_key_every_operation_is_a_401(stack: Stack) -> None:
    made = Api(stack).made()
    for method, path in [("GET", ""), ("POST", ""), ("GET", made["id"]), ("PUT", made["id"]),
                         ("DELETE", made["id"])]:
        r = httpx.request(method, f"{stack.url}/v1/test-personas/{path}".rstrip("/"), json=body(),
                          headers={"Authorization": "Bearer sk_wrong"})
        assert_error(r, 401, type_="auth")


# tenants


def test_tenants_never_see_nor_touch_each_others_test_personas(db_stack: Stack) -> None:
    mine, theirs = Api(db_stack), Api(db_stack, db_stack.tenant()["sk"])
    made = mine.made()
    assert theirs.get().json() == {"data": [], "next_cursor": None}
    assert_error(theirs.get(made["id"]), 404, "test_persona.not_found")
    assert_error(theirs.put(made["id"], body()), 404, "test_persona.not_found")
    assert_error(theirs.delete(made["id"]), 404, "test_persona.not_found")
    same_name = theirs.post(body(name=made["name"]))  # a name is unique within a tenant only
    assert same_name.status_code == 201, same_name.text
    assert mine.get(made["id"]).json() == made
    assert [p["id"] for p in mine.get().json()["data"]] == [made["id"]]
    assert [p["id"] for p in theirs.get().json()["data"]] == [same_name.json()["id"]]


# generated bodies

JSON = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
                    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner,
                                                                                max_size=3), max_leaves=8)
HEADER_NAMES = st.from_regex(r"\A[!#$%&'*+.^_`|~0-9A-Za-z-]{1,20}\Z") | st.text(max_size=10)
FIELD_VALUES = {
    "name": st.text(max_size=110) | JSON, "description": st.text(max_size=50) | JSON,
    "system_prompt": st.text(max_size=50) | JSON, "goal": st.text(max_size=50) | JSON,
    "max_turns": st.integers(-5, 60) | st.floats(allow_nan=False) | JSON,
    "headers": st.dictionaries(HEADER_NAMES, st.text(max_size=30) | JSON, max_size=4) | JSON,
}
BODIES = st.fixed_dictionaries({}, optional={**FIELD_VALUES, "extra": JSON}) | JSON


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(doc=BODIES)
def test_any_body_is_a_201_that_reads_back_or_a_clear_error(stack: Stack, doc: Any) -> None:
    api = Api(stack)
    r = httpx.post(api.base, content=json.dumps(doc), headers={**api.headers, "Content-Type": "application/json"})
    if r.status_code == 201:
        made = r.json()
        assert set(made) == FIELDS and api.get(made["id"]).json() == made
        assert made["name"] == doc["name"].strip()
        assert api.delete(made["id"]).status_code == 204
        return
    err = assert_error(r, r.status_code)
    assert (r.status_code, err["code"]) in {(400, "request.invalid"), (422, "test_persona.invalid")}, r.text
    assert err["details"]["errors"] if isinstance(doc, dict) else True
