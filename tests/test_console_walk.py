"""Every console route, walked from the route list (so a new route is walked too): signed out, it sends a browser
to sign in (or answers 401 to a POST); a user of another tenant gets 404 for anything of this tenant's and finds
none of it on its own pages; a viewer gets 403 on every change; a POST without the CSRF token is 403."""

from __future__ import annotations

import json
import re
from typing import Any

import httpx
import pytest

from tests.conftest import Stack
from tests.support.console import Console, token_for
from widget_server.edges.console import routes

MARK = "Zanzibar-Quokka-7"  # a name found on this tenant's pages and nowhere else
OPEN = {"/console/login"}  # the sign-in form: the one route with no session
READ_POSTS = {"/console/logout", "/console/policy/check"}  # POSTs every role may send (they change nothing stored)
STREAMS = {"/console/inbox/events"}  # Server-Sent Events that last as long as the page (no id in the path)


def console_routes() -> list[tuple[str, str]]:
    return sorted((method, r.path) for r in routes() for method in (r.methods or set()) - {"HEAD"}
                  if r.path not in OPEN)


def fill(path: str, ids: dict[str, str]) -> str:
    def one(match: re.Match[str]) -> str:
        name = match.group(1)
        key = "conversation" if path.startswith(("/console/transcripts/", "/console/inbox/")) else (
            "case" if name == "case_id" else "run" if name == "run_id" else "persona")
        return ids[key]
    return re.sub(r"\{(\w+)\}", one, path)


@pytest.fixture
def tenant_a(console: Console) -> dict[str, Any]:
    """This tenant's persona, a conversation with it, and a saved test case."""
    stack: Stack = console.stack
    slug = stack.persona(name=MARK)
    persona = httpx.get(f"{stack.url}/v1/personas/{slug}", headers=stack.auth).json()
    ready, _ = stack.turn(slug, f"Hello from {MARK}")
    owner = console.signed_in("owner")
    r = owner.post("/console/playground/cases", headers={"X-CSRF-Token": token_for(owner)},
                   content=json.dumps({"persona": persona["id"], "name": MARK, "turns": [{"visitor": "hi"}]}))
    assert r.status_code == 201, r.text
    run = httpx.post(f"{stack.url}/v1/test-runs", headers=stack.auth, json={"persona": slug})
    assert run.status_code == 202, run.text
    return {"persona": persona["id"], "slug": slug, "conversation": ready["conversation_id"], "case": r.json()["id"],
            "run": run.json()["id"]}


def test_every_route_is_walked_by_this_file() -> None:
    params = {name for _, path in console_routes() for name in re.findall(r"\{(\w+)\}", path)}
    assert params <= {"id", "persona_id", "case_id", "run_id"}, params  # a new kind of id: teach `fill` where it is


def test_signed_out_every_page_sends_to_sign_in_and_every_post_is_401(console: Console,
                                                                      tenant_a: dict[str, Any]) -> None:
    client = console.client()
    for method, path in console_routes():
        url = fill(path, tenant_a)
        r = client.request(method, url, data={"csrf": "x"} if method == "POST" else None)
        if path == "/console":
            assert r.status_code == 308, url
        elif method == "GET":
            assert r.status_code == 303 and r.headers["location"].startswith("/console/login?next="), url
        else:
            assert r.status_code == 401, (url, r.status_code)


def test_another_tenant_gets_404_for_everything_of_this_one_and_sees_none_of_it(console: Console,
                                                                                tenant_a: dict[str, Any]) -> None:
    other = console.stack.tenant()
    intruder = console.signed_in("owner", tenant_id=other["tenant_id"])
    token = token_for(intruder)
    for method, path in console_routes():
        url = fill(path, tenant_a)
        if "{" in path:
            r = intruder.request(method, url, data={"csrf": token} if method == "POST" else None)
            assert r.status_code == 404, (method, url, r.status_code)
        elif method == "GET" and path in STREAMS:  # endless: read up to the stream's `ready`
            with intruder.stream("GET", url, headers={"Accept": "text/event-stream"}) as r:
                assert r.status_code == 200, (url, r.status_code)
                seen = ""
                for line in r.iter_lines():
                    seen += line + "\n"
                    if line == "event: ready":
                        break
            assert MARK not in seen and tenant_a["conversation"] not in seen, url
        elif method == "GET":
            r = intruder.get(url)
            if path == "/console/inbox/next":  # the longest waiting of its own tenant's (none: the inbox)
                assert r.status_code == 303 and r.headers["location"] == "/console/inbox", r.headers
                continue
            assert r.status_code in (200, 308), (url, r.status_code)
            assert MARK not in r.text and tenant_a["slug"] not in r.text and tenant_a["persona"] not in r.text, url
    for query in (f"persona={tenant_a['persona']}", f"persona={tenant_a['slug']}"):  # asked for by name: still not
        for page in ("/console/playground", "/console/transcripts", "/console/"):
            r = intruder.get(f"{page}?{query}")
            assert MARK not in r.text and r.status_code in (200, 400, 404), (page, query, r.status_code)
    owner = console.signed_in("owner")  # and this tenant's things are all still there
    assert MARK in owner.get(f"/console/personas/{tenant_a['persona']}").text
    assert owner.get(f"/console/tests/{tenant_a['case']}").status_code == 200


def test_a_viewer_gets_403_on_every_change_and_nothing_changes(console: Console, tenant_a: dict[str, Any]) -> None:
    viewer = console.signed_in("viewer")
    token = token_for(viewer)
    posts = [(m, p) for m, p in console_routes() if m == "POST" and p not in READ_POSTS]
    assert len(posts) >= 8
    for _, path in posts:
        url = fill(path, tenant_a)
        r = viewer.post(url, data={"csrf": token, "name": "changed", "slug": "changed", "yaml": "x: 1"})
        assert r.status_code == 403, (url, r.status_code, r.text[:200])
        assert "cannot do this" in r.text
    owner = console.signed_in("owner")
    assert MARK in owner.get(f"/console/personas/{tenant_a['persona']}").text
    assert owner.get(f"/console/tests/{tenant_a['case']}").status_code == 200


def test_every_post_without_the_csrf_token_is_403(console: Console, tenant_a: dict[str, Any]) -> None:
    owner = console.signed_in("owner")
    for method, path in console_routes():
        if method != "POST":
            continue
        r = owner.post(fill(path, tenant_a), data={"name": "changed"})
        assert r.status_code == 403, (path, r.status_code)
    assert MARK in owner.get(f"/console/personas/{tenant_a['persona']}").text
