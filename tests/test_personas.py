"""`/v1/personas` over a real server on SQLite and PostgreSQL: CRUD, the error body, auth and tenant isolation."""

from __future__ import annotations

import json
import secrets
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from tests.conftest import Stack
from tests.support.errors import assert_error


@pytest.fixture
def db_stack(stack_factory: Callable[..., Stack], db_url: str) -> Stack:
    return stack_factory(database_url=db_url)


def slug() -> str:
    return f"s-{secrets.token_hex(4)}"


def full_body(**fields: Any) -> dict[str, Any]:
    return {
        "name": "Ada", "slug": slug(), "description": "A guide.", "system_prompt": "You are Ada.",
        "greeting": "Hello!", "starters": ["Hours?", "Menu?"], "avatar_url": "https://cdn.example/ada.png",
        "language": "fr", "provider": {"kind": "openai", "model": "echo", "temperature": 0.2, "max_tokens": 99},
        "topics": {"allowed": [{"id": "bread", "description": "bread", "examples": ["rye?"]}],
                   "denied": [], "off_topic": "allow"},
        **fields,
    }


def fields_named(err: dict[str, Any]) -> set[str]:
    return {e["field"] for e in err["details"].get("errors", [])}


class Api:
    def __init__(self, stack: Stack, sk: str | None = None) -> None:
        self.base = f"{stack.url}/v1/personas"
        self.headers = {"Authorization": f"Bearer {sk or stack.sk}"}

    def post(self, body: Any) -> httpx.Response:
        return httpx.post(self.base, json=body, headers=self.headers)

    def get(self, ref: str = "") -> httpx.Response:
        return httpx.get(f"{self.base}/{ref}" if ref else self.base, headers=self.headers)

    def patch(self, ref: str, body: Any) -> httpx.Response:
        return httpx.patch(f"{self.base}/{ref}", json=body, headers=self.headers)

    def put(self, ref: str, body: Any) -> httpx.Response:
        return httpx.put(f"{self.base}/{ref}", json=body, headers=self.headers)

    def delete(self, ref: str) -> httpx.Response:
        return httpx.delete(f"{self.base}/{ref}", headers=self.headers)


# CRUD


def test_create_answers_201_with_location_and_the_persona(db_stack: Stack) -> None:
    api = Api(db_stack)
    body = full_body()
    r = api.post(body)
    assert r.status_code == 201, r.text
    made = r.json()
    assert made["id"].startswith("per_") and made["slug"] == body["slug"]
    for name in ("name", "description", "system_prompt", "greeting", "starters", "avatar_url", "language"):
        assert made[name] == body[name], name
    assert made["provider"] == {**body["provider"], "base_url": None, "api_key": None, "api_key_set": False}
    assert made["topics"]["off_topic"] == "allow" and made["topics"]["allowed"][0]["id"] == "bread"
    assert r.headers["location"] == f"/v1/personas/{made['id']}"
    again = httpx.get(db_stack.url + r.headers["location"], headers=api.headers)
    assert again.status_code == 200 and again.json() == made


def test_create_with_only_a_name_fills_defaults_and_a_slug(db_stack: Stack) -> None:
    name = f"Bob The Baker {secrets.token_hex(2)}"
    r = Api(db_stack).post({"name": name})
    assert r.status_code == 201, r.text
    made = r.json()
    assert made["slug"] == name.lower().replace(" ", "-")
    assert made["starters"] == [] and made["greeting"] == "" and made["language"] == "en"
    assert made["avatar_url"] is None


def test_get_by_id_and_by_slug_give_the_same_persona(db_stack: Stack) -> None:
    api = Api(db_stack)
    made = api.post(full_body()).json()
    by_id, by_slug = api.get(made["id"]), api.get(made["slug"])
    assert by_id.status_code == by_slug.status_code == 200
    assert by_id.json() == by_slug.json() == made


def test_list_shows_the_tenants_personas(db_stack: Stack) -> None:
    api = Api(db_stack)
    assert api.get().json() == {"data": [], "next_cursor": None}
    first, second = api.post(full_body(name="One")).json(), api.post(full_body(name="Two")).json()
    r = api.get()
    assert r.status_code == 200
    assert sorted(p["id"] for p in r.json()["data"]) == sorted([first["id"], second["id"]])
    assert {p["name"] for p in r.json()["data"]} == {"One", "Two"}


def test_patch_changes_one_field_and_keeps_the_others(db_stack: Stack) -> None:
    api = Api(db_stack)
    made = api.post(full_body()).json()
    r = api.patch(made["slug"], {"greeting": "Bonjour!"})
    assert r.status_code == 200, r.text
    changed = r.json()
    assert changed["greeting"] == "Bonjour!"
    for name in ("id", "slug", "name", "description", "system_prompt", "starters", "avatar_url", "language",
                 "provider", "topics", "created_at"):
        assert changed[name] == made[name], name
    assert api.get(made["id"]).json() == changed


def test_patch_can_change_the_slug(db_stack: Stack) -> None:
    api = Api(db_stack)
    made = api.post(full_body()).json()
    new = slug()
    assert api.patch(made["id"], {"slug": new}).json()["slug"] == new
    assert api.get(new).json()["id"] == made["id"]
    assert_error(api.get(made["slug"]), 404, "persona.not_found")


def test_put_replaces_and_fields_not_given_go_back_to_defaults(db_stack: Stack) -> None:
    api = Api(db_stack)
    made = api.post(full_body()).json()
    r = api.put(made["id"], {"name": "Zed", "slug": made["slug"], "greeting": "Yo"})
    assert r.status_code == 200, r.text
    replaced = r.json()
    assert replaced["id"] == made["id"] and replaced["slug"] == made["slug"]
    assert replaced["name"] == "Zed" and replaced["greeting"] == "Yo"
    assert replaced["description"] == "" and replaced["system_prompt"] == "" and replaced["starters"] == []
    assert replaced["avatar_url"] is None and replaced["language"] == "en"
    assert replaced["provider"]["model"] is None and replaced["provider"]["kind"] is None
    assert replaced["topics"] == {"allowed": [], "denied": [], "off_topic": "refuse"}
    assert api.get(made["slug"]).json() == replaced


def test_delete_answers_204_then_the_persona_is_gone(db_stack: Stack) -> None:
    api = Api(db_stack)
    made = api.post(full_body()).json()
    r = api.delete(made["slug"])
    assert r.status_code == 204 and r.content == b""
    assert_error(api.get(made["id"]), 404, "persona.not_found", "not_found")
    assert_error(api.delete(made["id"]), 404, "persona.not_found")
    assert made["id"] not in {p["id"] for p in api.get().json()["data"]}


def test_a_deleted_slug_can_be_used_again(db_stack: Stack) -> None:
    api = Api(db_stack)
    made = api.post(full_body()).json()
    assert api.delete(made["id"]).status_code == 204
    assert api.post(full_body(slug=made["slug"])).status_code == 201


# errors


def test_missing_name_is_400_naming_the_field(db_stack: Stack) -> None:
    err = assert_error(Api(db_stack).post({"slug": slug()}), 400, "request.invalid", "invalid_request")
    assert fields_named(err) == {"name"}


@pytest.mark.parametrize("method", ["post", "put", "patch"])
def test_unknown_field_is_400_naming_the_field(db_stack: Stack, method: str) -> None:
    api = Api(db_stack)
    body = {"name": "X", "colour": "blue"}
    if method == "post":
        r = api.post(body)
    else:
        made = api.post(full_body()).json()
        r = getattr(api, method)(made["id"], body)
        assert api.get(made["id"]).json() == made  # nothing was written
    err = assert_error(r, 400, "request.invalid", "invalid_request")
    assert "colour" in fields_named(err) and "colour" in err["message"]


def test_unknown_nested_field_is_400_naming_its_path(db_stack: Stack) -> None:
    err = assert_error(Api(db_stack).post({"name": "X", "provider": {"modle": "echo"}}), 400, "request.invalid")
    assert fields_named(err) == {"provider.modle"}


@pytest.mark.parametrize("body", [{"name": ""}, {"name": "X", "slug": "Not A Slug"},
                                  {"name": "X", "starters": "hi"}, {"name": "X", "avatar_url": "javascript:x"},
                                  {"name": "X", "provider": {"temperature": 5}}])
def test_invalid_values_are_422_naming_the_field(db_stack: Stack, body: Any) -> None:
    api = Api(db_stack)
    err = assert_error(api.post(body), 422, "persona.invalid", "invalid_request")
    assert fields_named(err) and fields_named(err) <= set(body) | {f"{k}.{n}" for k, v in body.items()
                                                                    if isinstance(v, dict) for n in v}
    assert api.get().json() == {"data": [], "next_cursor": None}


def test_a_body_that_is_not_an_object_is_400(db_stack: Stack) -> None:
    api = Api(db_stack)
    assert_error(api.post(["name"]), 400, "request.invalid", "invalid_request")
    assert api.get().json() == {"data": [], "next_cursor": None}


@pytest.mark.parametrize("method", ["POST", "PUT", "PATCH"])
def test_invalid_json_is_400(db_stack: Stack, method: str) -> None:
    api = Api(db_stack)
    made = api.post(full_body()).json()
    url = api.base if method == "POST" else f"{api.base}/{made['id']}"
    r = httpx.request(method, url, content=b'{"name": "X",', headers={**api.headers,
                                                                       "content-type": "application/json"})
    assert_error(r, 400, type_="invalid_request")
    assert api.get(made["id"]).json() == made


def test_taken_slug_is_409(db_stack: Stack) -> None:
    api = Api(db_stack)
    first, second = api.post(full_body()).json(), api.post(full_body()).json()
    err = assert_error(api.post(full_body(slug=first["slug"])), 409, "persona.slug_taken", "conflict")
    assert first["slug"] in err["message"]
    assert_error(api.patch(second["id"], {"slug": first["slug"]}), 409, "persona.slug_taken", "conflict")
    assert_error(api.put(second["id"], {"name": "N", "slug": first["slug"]}), 409, "persona.slug_taken")
    assert api.get(second["id"]).json() == second


@pytest.mark.parametrize("method", ["GET", "PATCH", "PUT", "DELETE"])
def test_unknown_persona_is_404(db_stack: Stack, method: str) -> None:
    api = Api(db_stack)
    r = httpx.request(method, f"{api.base}/nobody-here", json={"name": "X"} if method in ("PATCH", "PUT") else None,
                      headers=api.headers)
    assert_error(r, 404, "persona.not_found", "not_found")


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer sk_not-a-real-key"},
                                     {"Authorization": "Bearer pk_wrong-kind"}, {"Authorization": "Basic abc"},
                                     {"X-API-Key": "sk_nope"}])
def test_missing_or_bad_key_is_401(db_stack: Stack, headers: dict[str, str]) -> None:
    base = f"{db_stack.url}/v1/personas"
    assert_error(httpx.get(base, headers=headers), 401, type_="auth")
    assert_error(httpx.post(base, json={"name": "X"}, headers=headers), 401, type_="auth")
    assert Api(db_stack).get().json() == {"data": [], "next_cursor": None}


def test_the_key_may_come_in_x_api_key(db_stack: Stack) -> None:
    r = httpx.post(f"{db_stack.url}/v1/personas", json={"name": "Keyed"}, headers={"X-API-Key": db_stack.sk})
    assert r.status_code == 201, r.text
    assert [p["name"] for p in Api(db_stack).get().json()["data"]] == ["Keyed"]


def test_another_tenant_cannot_see_or_touch_a_persona(db_stack: Stack) -> None:
    a = Api(db_stack)
    made = a.post(full_body()).json()
    b = Api(db_stack, db_stack.tenant()["sk"])
    for ref in (made["id"], made["slug"]):
        assert_error(b.get(ref), 404, "persona.not_found")
        assert_error(b.patch(ref, {"greeting": "pwned"}), 404, "persona.not_found")
        assert_error(b.put(ref, {"name": "pwned"}), 404, "persona.not_found")
        assert_error(b.delete(ref), 404, "persona.not_found")
        r = httpx.post(f"{b.base}/{ref}/prompt", json={"message": "hi"}, headers=b.headers)
        assert_error(r, 404, "persona.not_found")
    assert b.get().json() == {"data": [], "next_cursor": None}
    assert a.get(made["id"]).json() == made  # untouched


def test_slugs_are_unique_per_tenant_only(db_stack: Stack) -> None:
    a = Api(db_stack)
    made = a.post(full_body(name="A's")).json()
    b = Api(db_stack, db_stack.tenant()["sk"])
    r = b.post(full_body(name="B's", slug=made["slug"]))
    assert r.status_code == 201, r.text
    assert b.get(made["slug"]).json()["name"] == "B's"
    assert a.get(made["slug"]).json()["name"] == "A's"


def test_unknown_route_is_a_json_404(db_stack: Stack) -> None:
    for path in ("/v1/nothing-here", "/v1/personas/x/y/z"):
        assert_error(httpx.get(db_stack.url + path, headers=Api(db_stack).headers), 404, type_="not_found")


def test_wrong_method_is_a_json_405(db_stack: Stack) -> None:
    assert_error(httpx.delete(f"{db_stack.url}/v1/personas", headers=Api(db_stack).headers), 405,
                 type_="invalid_request")


def test_every_response_carries_a_request_id(db_stack: Stack) -> None:
    api = Api(db_stack)
    ids = {api.get().headers["x-request-id"], api.get().headers["x-request-id"]}
    assert len(ids) == 2 and all(i.startswith("req_") for i in ids)


def test_a_persona_with_conversations_can_be_deleted(db_stack: Stack) -> None:
    api = Api(db_stack)
    slug_ = db_stack.persona("echo")
    r = httpx.post(f"{api.base}/{slug_}/prompt", json={"message": "hi"}, headers=api.headers, timeout=30)
    assert r.status_code == 200, r.text
    assert api.delete(slug_).status_code == 204
    assert_error(api.get(slug_), 404, "persona.not_found")


BIG = json.dumps({"name": "Big", "system_prompt": "x" * (2 * 1024 * 1024)}).encode()


def test_a_chunked_body_over_the_limit_is_a_json_413(db_stack: Stack) -> None:
    api = Api(db_stack)
    chunks = (BIG[i:i + 65536] for i in range(0, len(BIG), 65536))  # no Content-Length: sent chunked
    r = httpx.post(api.base, content=chunks, headers={**api.headers, "content-type": "application/json"})
    assert_error(r, 413, "request.too_large", "invalid_request")
    assert api.get().json() == {"data": [], "next_cursor": None}


def test_a_body_over_the_limit_is_a_json_413(db_stack: Stack) -> None:
    api = Api(db_stack)
    r = httpx.post(api.base, content=BIG, headers={**api.headers, "content-type": "application/json"})
    assert_error(r, 413, "request.too_large", "invalid_request")


def test_patch_merges_nested_objects_and_null_resets_a_field(stack: Stack) -> None:
    auth = stack.auth
    slug = stack.persona("echo", provider={"kind": "openai", "model": "echo", "temperature": 0.2})
    r = httpx.patch(f"{stack.url}/v1/personas/{slug}", headers=auth, json={"provider": {"model": "words-3"}})
    assert r.status_code == 200
    assert r.json()["provider"] == {"kind": "openai", "model": "words-3", "base_url": None, "temperature": 0.2,
                                    "max_tokens": None, "api_key": None, "api_key_set": False}
    r = httpx.patch(f"{stack.url}/v1/personas/{slug}", headers=auth, json={"provider": {"temperature": None}})
    assert r.json()["provider"]["temperature"] == 0.7 and r.json()["provider"]["model"] == "words-3"


@pytest.mark.parametrize(("topics", "field"), [
    ({"allowed": [{"id": "bike repair", "examples": ["fix my bike"]}]}, "topics.allowed.0.id"),
    ({"allowed": [{"id": "repair", "examples": []}]}, "topics.allowed.0.examples"),
    ({"denied": [{"id": "medical", "examples": ["dose?"], "colour": "red"}]}, "topics.denied.0.colour"),
    ({"off_topic": "ignore"}, "topics.off_topic"),
])
def test_topics_the_policy_would_refuse_are_refused_when_written(db_stack: Stack, topics: Any, field: str) -> None:
    api = Api(db_stack)
    r = api.post({"name": "X", "topics": topics})
    assert r.status_code in (400, 422), r.text
    assert field in fields_named(r.json()["error"])
    made = api.post(full_body()).json()
    r = api.patch(made["id"], {"topics": topics})
    assert r.status_code in (400, 422) and field in fields_named(r.json()["error"])
    assert api.get(made["id"]).json() == made  # nothing was written


def test_starters_are_bounded_in_number_and_length(db_stack: Stack) -> None:
    api = Api(db_stack)
    err = assert_error(api.post({"name": "X", "starters": ["s" * 201]}), 422, "persona.invalid")
    assert fields_named(err) == {"starters.0"}
    assert fields_named(assert_error(api.post({"name": "X", "starters": ["s"] * 9}), 422)) == {"starters"}


def test_a_tenant_has_a_bounded_number_of_personas(stack: Stack, monkeypatch: pytest.MonkeyPatch) -> None:
    from widget_server.domain import personas

    monkeypatch.setattr(personas, "MAX_PERSONAS", 3)  # the same check as at 500, without making 500
    api = Api(stack)
    for _ in range(3):
        assert api.post(full_body()).status_code == 201
    err = assert_error(api.post(full_body()), 422, "persona.limit_reached")
    assert err["details"]["limit"] == 3
    other = stack.tenant()
    assert Api(stack, sk=other["sk"]).post(full_body()).status_code == 201  # another tenant's count is its own


@pytest.mark.parametrize("body", [{"name": "X", "provider": {"model": "gpt\u0000x"}}, {"name": "A\ud800"},
                                  {"name": "X", "starters": ["hi\u0000"]}])
def test_text_no_database_can_hold_is_a_422_not_a_500(db_stack: Stack, body: Any) -> None:
    r = httpx.post(f"{db_stack.url}/v1/personas", content=json.dumps(body),  # escapes a lone surrogate as \ud800
                   headers={**db_stack.auth, "Content-Type": "application/json"})
    assert_error(r, 422, "persona.invalid")


def test_the_list_is_paginated(db_stack: Stack) -> None:
    api = Api(db_stack)
    made = [api.post(full_body()).json()["id"] for _ in range(3)]
    first = httpx.get(f"{db_stack.url}/v1/personas", params={"limit": 2}, headers=api.headers).json()
    assert [p["id"] for p in first["data"]] == made[:2] and first["next_cursor"] == made[1]
    rest = httpx.get(f"{db_stack.url}/v1/personas", params={"cursor": first["next_cursor"]},
                     headers=api.headers).json()
    assert [p["id"] for p in rest["data"]] == made[2:] and rest["next_cursor"] is None
