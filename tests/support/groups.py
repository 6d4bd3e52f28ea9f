"""A client of the persona-group API for tests: a project of its own per instance, JSON in and out."""

from __future__ import annotations

import secrets
from typing import Any

import httpx

from tests.conftest import Stack


class Api:
    def __init__(self, stack: Stack, sk: str | None = None, project: str | None = None) -> None:
        self.url = stack.url
        self.project = project or f"proj-{secrets.token_hex(3)}"
        self.headers = {"Authorization": f"Bearer {sk or stack.sk}"}

    def groups(self, project: str | None = None) -> str:
        return f"{self.url}/v1/projects/{project or self.project}/persona-groups"

    def call(self, method: str, path: str, doc: Any = None) -> httpx.Response:
        url = path if path.startswith("http") else self.url + path
        return httpx.request(method, url, headers=self.headers, timeout=60,
                             **({"json": doc} if doc is not None else {}))

    def create(self, **fields: Any) -> httpx.Response:
        return self.call("POST", self.groups(), {"name": "Shoppers", "seed": "s1", "size": 5, **fields})

    def made(self, **fields: Any) -> dict[str, Any]:
        r = self.create(**fields)
        assert r.status_code == 201, r.text
        return r.json()  # type: ignore[no-any-return]

    def members(self, group: dict[str, Any]) -> list[dict[str, Any]]:
        r = self.call("GET", f"{self.groups(group['project_id'])}/{group['id']}/personas")
        assert r.status_code == 200, r.text
        return r.json()["data"]  # type: ignore[no-any-return]

    def all_members(self, group: dict[str, Any], limit: int) -> list[dict[str, Any]]:
        """Every member, `limit` a page, following next_cursor to the end."""
        return self.every(f"{self.groups(group['project_id'])}/{group['id']}/personas", limit)

    def every(self, path: str, limit: int) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = []
        cursor: str | None = None
        for _ in range(1000):  # a bound, never reached: a loop that cannot end is a failure, not a hang
            r = self.call("GET", f"{path}?limit={limit}" + (f"&cursor={cursor}" if cursor else ""))
            assert r.status_code == 200, r.text
            page = r.json()
            assert len(page["data"]) <= limit
            found += page["data"]
            cursor = page["next_cursor"]
            if cursor is None:
                return found
            assert page["data"] and cursor == page["data"][-1]["id"]
        raise AssertionError("next_cursor never ended")
