"""The one error body of DESIGN.md, checked the same way by every test."""

from __future__ import annotations

from typing import Any

import httpx


def assert_error(r: httpx.Response, status: int, code: str | None = None, type_: str | None = None) -> dict[str, Any]:
    """The one error body of DESIGN.md, with the request id of the response header."""
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/json")
    body = r.json()
    assert set(body) == {"error"}
    err = body["error"]
    assert set(err) == {"code", "message", "type", "request_id", "details"}
    assert isinstance(err["message"], str) and err["message"]
    assert isinstance(err["details"], dict)
    assert err["request_id"].startswith("req_") and err["request_id"] == r.headers["x-request-id"]
    if code is not None:
        assert err["code"] == code
    if type_ is not None:
        assert err["type"] == type_
    return err  # type: ignore[no-any-return]
