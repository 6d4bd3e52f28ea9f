"""The console's Tests page (`/console/tests`) and the test cases the playground saves.

A case is written in the suite format the test-suite runner reads (issue 15): a `name` and its `turns`, each a
`visitor` message and what to `expect` of the turn. The playground records what it observed as the expectations
(`observed`), so a saved exchange replays as a regression test; the page lists the cases by persona, shows each
as YAML, downloads one case or a persona's cases as a suite file, and deletes them. Running suites comes with the
test-suite runner: this page is where it will show its runs.
"""

from __future__ import annotations

import re
from collections import defaultdict
from typing import Any

import yaml
from pydantic import ValidationError
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from widget_server.clock import now
from widget_server.domain.chat.conversations import check_text
from widget_server.domain.chat.turn import Reply
from widget_server.domain.testing.suite import Case
from widget_server.edges.console.auth import console_page, user_of
from widget_server.edges.console.render import page
from widget_server.edges.state import app_state
from widget_server.errors import InvalidRequest, NotFound
from widget_server.ids import new_id

STOPS = ("refuse", "block", "escalate")
EXCERPT = 120  # how much of a reply a saved case expects it to contain


def _printable(part: Any) -> str:
    """A field path's part as an error body can carry it (an unknown key may hold a lone surrogate)."""
    return str(part).encode("utf-8", "backslashreplace").decode()


def parse_case(value: Any) -> dict[str, Any]:
    """A case as the suite format has it, or a 400 naming the first field that is wrong."""
    try:
        case = Case.model_validate(value)
    except ValidationError as exc:
        found = [{"field": ".".join(_printable(p) for p in e["loc"]) or "(case)",
                  "message": e["msg"].removeprefix("Value error, "), "type": e["type"]}
                 for e in exc.errors(include_url=False)]
        raise InvalidRequest(f"invalid test case: {found[0]['field']}: {found[0]['message']}",
                             details={"errors": found}) from None
    for i, turn in enumerate(case.turns or []):
        check_text(turn.visitor, f"turns.{i}.visitor", code="request.invalid")
    check_text(case.name, "name", code="request.invalid")
    return case.model_dump(mode="json", exclude_none=True)


def _masked(reason: str) -> str:
    return reason.removeprefix("pii.")  # `pii.email` masks the entity `email`; a pattern keeps its reason


def _excerpt(text: str) -> str:
    """The start of a reply, cut at a word: what a saved case expects the reply to contain again."""
    first = text.strip().splitlines()[0].strip() if text.strip() else ""
    if len(first) <= EXCERPT:
        return first
    cut = first[:EXCERPT].rsplit(" ", 1)[0]
    return cut or first[:EXCERPT]


def observed(reply: Reply) -> dict[str, Any]:
    """What a turn did, as the expectations of a test case: refused or escalated, the stopping decision (or else
    the first mask), the entities masked, the start of the reply, how it finished, whether the model was called."""
    rules = reply.guardrails
    stop = next((g for g in rules if g["action"] in STOPS), None)
    expect: dict[str, Any] = {
        "refused": any(g["action"] in ("refuse", "block") for g in rules),
        "escalated": any(g["action"] == "escalate" for g in rules)}
    shown = stop or next((g for g in rules if g["action"] == "mask"), None)
    if shown is not None:
        expect["guardrail"] = {k: shown[k] for k in ("action", "reason", "source")}
    masked = list(dict.fromkeys(_masked(g["reason"]) for g in rules if g["action"] == "mask" and g["reason"]))
    if masked:
        expect["masked"] = masked
    if stop is None and (excerpt := _excerpt(reply.text)):
        expect["contains"] = [excerpt]
    expect["finish_reason"] = reply.finish_reason
    expect["provider_called"] = reply.provider_called
    return expect


def dump(value: Any) -> str:
    return yaml.safe_dump(value, sort_keys=False, allow_unicode=True, width=100)


async def save(request: Request, persona_id: str, case: dict[str, Any]) -> dict[str, Any]:
    """Store a validated case for the persona; the row as stored."""
    user = user_of(request)
    row = {"id": new_id("tc"), "tenant_id": user.tenant_id, "persona_id": persona_id, "name": case["name"],
           "doc": case, "created_by": user.user_id, "created_at": now()}
    await app_state(request).deps.storage.console.add_test_case(row)
    return row


async def _case(request: Request) -> dict[str, Any]:
    """The case of the path, this tenant's only (another tenant's is not found)."""
    user = user_of(request)
    case_id = request.path_params["case_id"]
    rows = await app_state(request).deps.storage.console.list_test_cases(user.tenant_id)
    found = next((r for r in rows if r["id"] == case_id), None)
    if found is None:
        raise NotFound("no such test case")
    return found


async def _personas(request: Request) -> dict[str, dict[str, Any]]:
    rows = await app_state(request).deps.storage.list_personas(user_of(request).tenant_id)
    return {r["id"]: r for r in rows}


def _download(text: str, filename: str) -> Response:
    safe = re.sub(r"[^A-Za-z0-9._-]+", "-", filename).strip("-") or "case.yaml"
    return Response(text, media_type="application/yaml",
                    headers={"Content-Disposition": f'attachment; filename="{safe}"'})


@console_page("read")
async def index(request: Request) -> Response:
    personas = await _personas(request)
    rows = await app_state(request).deps.storage.console.list_test_cases(user_of(request).tenant_id)
    groups: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for row in rows:
        groups[row["persona_id"]].append(row)
    listed: list[dict[str, Any]] = [{"id": pid, "persona": personas.get(pid), "cases": cases}
                                    for pid, cases in groups.items()]
    listed.sort(key=lambda g: (g["persona"] is None, (g["persona"] or {}).get("slug", "")))
    deleted = request.query_params.get("deleted") == "1"
    return page(request, "tests.html", title="Tests", groups=listed, deleted=deleted)


@console_page("read")
async def show(request: Request) -> Response:
    row = await _case(request)
    persona = (await _personas(request)).get(row["persona_id"])
    return page(request, "tests_case.html", title=f"Test case: {row['name']}", case=row, persona=persona,
                yaml_text=dump(row["doc"]))


@console_page("read")
async def download(request: Request) -> Response:
    row = await _case(request)
    return _download(dump(row["doc"]), f"{row['name']}.yaml")


@console_page("read")
async def suite(request: Request) -> Response:
    user = user_of(request)
    persona_id = request.path_params["persona_id"]
    persona = (await _personas(request)).get(persona_id)
    rows = await app_state(request).deps.storage.console.list_test_cases(user.tenant_id, persona_id[:40])
    if persona is None or not rows:
        raise NotFound("no test cases for this persona")
    doc = {"suite": f"{persona['doc'].get('name') or persona['slug']} (saved in the playground)",
           "persona": persona["slug"], "policy": "tenant", "cases": [r["doc"] for r in rows]}
    return _download(dump(doc), f"{persona['slug']}.suite.yaml")


@console_page("read", write="converse")
async def delete(request: Request) -> Response:
    row = await _case(request)
    await app_state(request).deps.storage.console.delete_test_case(row["tenant_id"], row["id"])
    return RedirectResponse("/console/tests?deleted=1", status_code=303)


ROUTES: list[BaseRoute] = [
    Route("/console/tests", index, methods=["GET"]),
    Route("/console/tests/suite/{persona_id}.yaml", suite, methods=["GET"]),
    Route("/console/tests/{case_id}.yaml", download, methods=["GET"]),  # before the page, which would take it
    Route("/console/tests/{case_id}", show, methods=["GET"]),
    Route("/console/tests/{case_id}/delete", delete, methods=["POST"]),
]
