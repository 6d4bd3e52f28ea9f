"""Query parameters (edges/query_params.py): each route declares the ones it reads; any other name is a 400
`query.invalid` naming it, on every endpoint; the OpenAPI document lists exactly the declared ones; and the values
a parameter's schema admits are exactly the values the server takes."""

from __future__ import annotations

import base64
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.conftest import Stack
from widget_server.domain.analytics.query import CURSOR_PATTERN, TIME_PATTERN, decode_cursor, parse_limit, parse_time
from widget_server.edges.http import Resource
from widget_server.edges.routes import routes
from widget_server.errors import InvalidRequest


@pytest.fixture
def db_stack(stack_factory: Callable[..., Stack], db_url: str) -> Stack:
    return stack_factory(database_url=db_url)


def get(stack: Stack, path: str, **params: Any) -> httpx.Response:
    return httpx.get(f"{stack.url}{path}", params=params, headers=stack.auth)


def assert_query_invalid(r: httpx.Response, param: str) -> dict[str, Any]:
    assert r.status_code == 400, r.text
    error: dict[str, Any] = r.json()["error"]
    assert error["code"] == "query.invalid" and error["details"] == {"param": param}, error
    return error


def test_a_misspelt_filter_is_refused_rather_than_ignored(stack: Stack) -> None:
    persona = stack.persona()
    httpx.post(f"{stack.url}/v1/personas/{persona}/prompt", json={"message": "hi", "visitor_id": "v-1"},
               headers=stack.auth, timeout=30)
    httpx.post(f"{stack.url}/v1/personas/{persona}/prompt", json={"message": "hi", "visitor_id": "v-2"},
               headers=stack.auth, timeout=30)
    stack.wait_events(lambda got: {e["visitor_id"] for e in got} == {"v-1", "v-2"})
    error = assert_query_invalid(get(stack, "/v1/analytics/events", visitor_id="v-1"), "visitor_id")
    assert "visitor" in error["message"].split("reads ", 1)[1]  # the names it does read
    assert {e["visitor_id"] for e in stack.events(visitor="v-1")} == {"v-1"}  # the real filter filters
    assert_query_invalid(get(stack, "/v1/analytics/export", level="event", visitr="v-1"), "visitr")
    assert_query_invalid(get(stack, "/v1/analytics/summary", type="error"), "type")  # the summary counts all


@pytest.mark.parametrize("path", [
    "/health", "/openapi.json", "/metrics", "/v1/personas", "/v1/personas/nobody", "/v1/conversations",
    "/v1/analytics/retention", "/v1/webhooks", "/v1/safety-policy", "/v1/widget/ws"])
def test_every_api_endpoint_refuses_an_unknown_query_parameter(stack: Stack, path: str) -> None:
    assert_query_invalid(get(stack, path, verbose="1"), "verbose")


def test_a_parameter_given_twice_is_refused_and_an_empty_one_is_left_out(stack: Stack) -> None:
    twice = httpx.get(f"{stack.url}/v1/analytics/events?limit=1&limit=2", headers=stack.auth)
    assert_query_invalid(twice, "limit")
    types = httpx.get(f"{stack.url}/v1/analytics/events?type=error&type=widget.opened", headers=stack.auth)
    assert "commas" in assert_query_invalid(types, "type")["message"]
    blank = get(stack, "/v1/analytics/events", type="", persona="", visitor="", limit="", cursor="", **{"from": ""})
    assert blank.status_code == 200, blank.text
    assert get(stack, "/v1/conversations", limit="", cursor="").status_code == 200


def test_a_nul_character_in_a_query_value_or_a_path_is_a_400_on_every_database(db_stack: Stack) -> None:
    assert_query_invalid(get(db_stack, "/v1/analytics/summary", conversation="a\x00b"), "conversation")
    assert_query_invalid(get(db_stack, "/v1/conversations", persona="\x00"), "persona")
    for method, path in (("GET", "/v1/personas/a%00b"), ("DELETE", "/v1/analytics/visitors/a%00b"),
                         ("POST", "/v1/conversations/a%00/resolve")):
        r = httpx.request(method, db_stack.url + path, headers=db_stack.auth)
        assert r.status_code == 400 and r.json()["error"]["code"] == "request.invalid", (path, r.text)  # was 500


def test_pages_and_the_embed_script_ignore_their_query_string(stack: Stack) -> None:
    assert httpx.get(f"{stack.url}/embed.js", params={"v": "2"}).status_code == 200  # a site busting its cache
    assert httpx.get(f"{stack.url}/", params={"utm_source": "mail"}).status_code == 200


def test_the_document_lists_exactly_the_parameters_each_route_declares(stack: Stack) -> None:
    paths = httpx.get(f"{stack.url}/openapi.json").json()["paths"]
    for route in routes():
        if not isinstance(route, Resource):
            continue
        for method, op in route.operations.items():
            if op.documented and method != "OPTIONS":
                listed = [p["name"] for p in paths[route.path][method.lower()].get("parameters", [])
                          if p["in"] == "query"]  # (a header an operation reads is documented beside them)
                assert listed == list(op.query.names), (route.path, method)


@pytest.mark.parametrize("value", ["+5", " 5", "5 ", "\u0665", "5_0", "1e2", "0", "1001", "9" * 5000])
def test_a_limit_is_decimal_digits_within_its_bounds(value: str) -> None:
    with pytest.raises(InvalidRequest):
        parse_limit(value, most=1000)
    assert parse_limit("0007", most=1000) == 7


@given(st.from_regex(TIME_PATTERN, fullmatch=True))
def test_every_time_the_document_admits_is_read(value: str) -> None:
    assert parse_time("from", value).tzinfo is not None


@pytest.mark.parametrize("value", ["2026-02-29", "2026-04-31", "0000-01-01", "20260101", "2026-W01-1",
                                   "2026-01-01T10", "2026-01-01 10:00", "2026-01-01T24:00", "2026-01-01T10:00+24:00",
                                   "2026-01-01\n", "\u0662026-01-01"])
def test_a_time_the_document_does_not_admit_is_refused(value: str) -> None:
    with pytest.raises(InvalidRequest):
        parse_time("from", value)


def test_times_at_the_edges_of_the_calendar_are_read() -> None:
    assert parse_time("from", "0001-01-01T00:00:00+01:00").year == 1  # before year 1 in UTC: the first instant
    assert parse_time("to", "9999-12-31T23:00:00-05:00").year == 9999
    assert parse_time("from", "2024-02-29t10:00:00.123456789z").microsecond == 123456


@given(st.from_regex(CURSOR_PATTERN, fullmatch=True))
def test_every_cursor_the_document_admits_is_one_the_api_can_return(cursor: str) -> None:
    raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
    assert raw[:3] == b"e1:" and raw[3:].isdigit() and int(raw[3:]) == decode_cursor(cursor)


@pytest.mark.parametrize("cursor", ["ZTE6MTIz!!", "ZTE6MTIz\n", "ZTE6", "ZTE6YWJj", "eHg6MTIz", "ZTE6MTIzNA=="])
def test_a_cursor_the_api_did_not_return_is_refused(cursor: str) -> None:
    with pytest.raises(InvalidRequest):
        decode_cursor(cursor)


def test_the_analytics_filters_refuse_an_empty_event_type_between_commas(stack: Stack) -> None:
    assert_query_invalid(get(stack, "/v1/analytics/events", type="error,,widget.opened"), "type")
    assert get(stack, "/v1/analytics/events", type="error,widget.opened").status_code == 200
