"""Paging the lists of persona groups (issue 17): a project's groups, a group's personas and the tenant library are
keyset pages (`limit`, `cursor` = the previous page's `next_cursor`), on SQLite and PostgreSQL; every row is seen
once across the pages, also when rows are added while a client pages; a bad cursor or limit is a clear 400."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from tests.conftest import Stack
from tests.support.errors import assert_error
from tests.support.groups import Api


@pytest.fixture
def db_stack(stack_factory: Callable[..., Stack], db_url: str) -> Stack:
    return stack_factory(database_url=db_url)


def _ids(rows: list[dict[str, Any]]) -> list[str]:
    return [r["id"] for r in rows]


def test_every_member_of_a_large_group_is_seen_exactly_once_across_pages(db_stack: Stack) -> None:
    api = Api(db_stack)
    group = api.made(seed="many", size=500)
    first = api.call("GET", f"{api.groups()}/{group['id']}/personas").json()
    assert len(first["data"]) == 100 and first["next_cursor"] == first["data"][-1]["id"]  # the default page
    paged = api.all_members(group, limit=37)
    assert len(paged) == 500 and len(set(_ids(paged))) == 500
    assert _ids(paged) == sorted(_ids(paged))  # oldest first: member i of the seed is the i-th
    assert [m["full_name"] for m in paged[:100]] == [m["full_name"] for m in first["data"]]
    whole = api.all_members(group, limit=200)
    assert whole == paged


def test_a_member_added_while_paging_is_seen_once_at_the_end(db_stack: Stack) -> None:
    api = Api(db_stack)
    source = api.made(seed="src", size=1)
    lib = api.call("POST", f"{api.groups()}/{source['id']}/personas/{api.members(source)[0]['id']}/promote").json()
    group = api.made(seed="grow", size=5)
    base = f"{api.groups()}/{group['id']}/personas"
    page = api.call("GET", f"{base}?limit=3").json()
    added = api.call("POST", base, {"library_persona_id": lib["id"]}).json()
    rest = api.call("GET", f"{base}?limit=3&cursor={page['next_cursor']}").json()
    assert _ids(rest["data"]) == _ids(api.members(group)[3:6]) and rest["data"][-1]["id"] == added["id"]
    assert rest["next_cursor"] is None
    assert sorted(_ids(page["data"] + rest["data"])) == sorted(set(_ids(page["data"] + rest["data"])))


def test_groups_and_the_library_page_too(db_stack: Stack) -> None:
    api = Api(db_stack)
    made = [api.made(seed=f"g{i}", size=1, name=f"Group {i}") for i in range(7)]
    assert api.every(api.groups(), limit=3) == made
    assert api.every(api.groups(), limit=7) == made
    other = Api(db_stack)  # another project of the same tenant: its own list
    assert other.call("GET", other.groups()).json() == {"data": [], "next_cursor": None}
    libs = [api.call("POST", f"{api.groups()}/{g['id']}/personas/{api.members(g)[0]['id']}/promote").json()
            for g in made[:5]]
    assert api.every("/v1/library/personas", limit=2) == libs
    theirs = Api(db_stack, db_stack.tenant()["sk"], project=api.project)
    cursor = api.call("GET", f"{api.groups()}?limit=1").json()["next_cursor"]
    assert theirs.call("GET", f"{api.groups()}?limit=1&cursor={cursor}").json() == {"data": [], "next_cursor": None}
    assert theirs.every("/v1/library/personas", limit=2) == []


@pytest.mark.parametrize("query, param", [
    ("limit=0", "limit"), ("limit=201", "limit"), ("limit=abc", "limit"), ("limit=-1", "limit"),
    ("cursor=nope", "cursor"), ("cursor=pgrp_00000000000000000000000000", "cursor"),  # a group's id, not a member's
    ("cursor=gper_0000'%20OR%201=1", "cursor"), ("cursor=gper_%00", "cursor"), ("after=gper_0", "after"),
    ("limit=2&limit=3", "limit"),
])
def test_a_bad_cursor_or_limit_on_members_is_a_clear_400(db_stack: Stack, query: str, param: str) -> None:
    api = Api(db_stack)
    group = api.made(size=2)
    good = api.call("GET", f"{api.groups()}/{group['id']}/personas?limit=1").json()  # the same list, paged right
    assert len(good["data"]) == 1 and good["next_cursor"] == good["data"][0]["id"]
    err = assert_error(api.call("GET", f"{api.groups()}/{group['id']}/personas?{query}"), 400, "query.invalid")
    assert err["details"]["param"] == param


@pytest.mark.parametrize("path", ["groups", "/v1/library/personas"])
def test_a_cursor_of_another_list_is_a_400_on_groups_and_the_library(stack: Stack, path: str) -> None:
    api = Api(stack)
    url = api.groups() if path == "groups" else path
    assert api.call("GET", f"{url}?limit=1").json() == {"data": [], "next_cursor": None}
    for query in ("cursor=gper_00000000000000000000000000", "limit=0", "cursor=x"):
        err = assert_error(api.call("GET", f"{url}?{query}"), 400, "query.invalid")
        assert err["details"]["param"] == query.split("=")[0]
