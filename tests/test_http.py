"""Resources (edges/http.py): one route per path, so a method the path does not have is a 405 whose `Allow` lists
every method it does have; and a WebSocket path asked for over plain HTTP says so."""

from __future__ import annotations

import httpx
import pytest

from tests.conftest import Stack


@pytest.mark.parametrize(("path", "allow"), [
    ("/v1/safety-policy", "GET, HEAD, PUT, DELETE"),
    ("/v1/analytics/retention", "GET, HEAD, PUT"),
    ("/v1/personas/{id}", "GET, HEAD, PUT, PATCH, DELETE"),
    ("/v1/webhooks/{id}", "DELETE"),
    ("/v1/widget/sessions", "POST, OPTIONS"),
])
def test_a_method_a_path_lacks_is_a_405_listing_every_method_it_has(stack: Stack, path: str, allow: str) -> None:
    for method in ("TRACE",) if "OPTIONS" in allow else ("TRACE", "OPTIONS"):  # OPTIONS: how clients ask
        r = httpx.request(method, stack.url + path.replace("{id}", "x"), headers=stack.auth)
        assert r.status_code == 405 and r.headers["allow"] == allow, (method, r.status_code, r.headers)
        assert r.json()["error"]["code"] == "method.not_allowed"


def test_trace_on_the_websocket_path_is_405_and_a_plain_get_is_426(stack: Stack) -> None:
    trace = httpx.request("TRACE", f"{stack.url}/v1/widget/ws")
    assert trace.status_code == 405 and trace.headers["allow"] == "GET, HEAD"
    plain = httpx.get(f"{stack.url}/v1/widget/ws")
    assert plain.status_code == 426 and plain.headers["upgrade"] == "websocket"
    assert plain.json()["error"]["code"] == "request.upgrade_required"


def test_head_is_answered_as_get_without_a_body(stack: Stack) -> None:
    r = httpx.head(f"{stack.url}/v1/personas", headers=stack.auth)
    assert r.status_code == 200 and r.content == b"" and r.headers["content-type"] == "application/json"
