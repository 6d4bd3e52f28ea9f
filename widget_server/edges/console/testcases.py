"""The console's Tests page (`/console/tests`) and the test cases the playground saves.

A case is written in the suite format the test-suite runner reads (issue 15): a `name` and its `turns`, each a
`visitor` message and what to `expect` of the turn. The playground records what it observed as the expectations
(`observed`), so a saved exchange replays as a regression test; the page lists the cases by persona, shows each
as YAML, downloads one case or a persona's cases as a suite file, and deletes them; it runs a persona's cases
(or a pasted suite file) through the suite engine, like `POST /v1/test-runs`, and shows each run: every case's
transcript with its decisions, what failed, and what changed since the previous run of the same suite.
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
from widget_server.domain.testing import engine
from widget_server.domain.testing.suite import Case
from widget_server.edges.console.auth import console_page, user_of
from widget_server.edges.console.render import page
from widget_server.edges.state import app_state
from widget_server.edges.test_runs import follow
from widget_server.errors import InvalidRequest, NotFound
from widget_server.ids import new_id

STOPS = ("refuse", "block", "escalate")
EXCERPT = 120  # how much of a reply a saved case expects it to contain
RECENT_RUNS = 20  # the runs the Tests page lists


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
    runs = await app_state(request).deps.storage.test_runs.list(user_of(request).tenant_id, limit=RECENT_RUNS)
    return page(request, "tests.html", title="Tests", groups=listed, deleted=deleted, runs=runs)


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
    return _download(dump(engine.saved_suite(persona, [r["doc"] for r in rows])), f"{persona['slug']}.suite.yaml")


def _changes(current: dict[str, Any] | None, previous: dict[str, Any] | None) -> list[dict[str, str]]:
    """What changed since the previous run of the same suite: each case whose outcome differs (new, gone)."""
    if not current or not previous:
        return []
    now_ = {c["name"]: c["status"] for c in current.get("cases", [])}
    before = {c["name"]: c["status"] for c in previous.get("cases", [])}
    out = [{"name": n, "before": before.get(n, "new"), "now": st} for n, st in now_.items() if before.get(n) != st]
    return out + [{"name": n, "before": st, "now": "gone"} for n, st in before.items() if n not in now_]


async def _start(request: Request, suite_doc: Any) -> Response:
    user = user_of(request)
    suite_ = engine.checked(suite_doc)
    row = await app_state(request).test_runs.start(user.tenant_id, suite_, {"repeat": 1, "only": None},
                                                   source="console", created_by=user.user_id)
    return RedirectResponse(f"/console/tests/runs/{row['id']}", status_code=303)


@console_page("read", write="converse")
async def run_saved(request: Request) -> Response:
    """Run the cases saved for a persona, as one suite."""
    user = user_of(request)
    persona = (await _personas(request)).get(str(request.path_params["persona_id"])[:40])
    rows = await app_state(request).deps.storage.console.list_test_cases(user.tenant_id, persona["id"]) \
        if persona else []
    if persona is None or not rows:
        raise NotFound("no test cases for this persona")
    return await _start(request, engine.saved_suite(persona, [r["doc"] for r in rows]))


@console_page("read", write="converse")
async def run_pasted(request: Request) -> Response:
    """Run a suite file pasted (or uploaded) on the Tests page."""
    form = await request.form()
    text = form.get("suite")
    if not isinstance(text, str) or not text.strip():
        raise InvalidRequest("paste a suite file (YAML) to run", details={"errors": [
            {"field": "suite", "message": "required"}]})
    return await _start(request, text)


async def _run_of(request: Request) -> dict[str, Any]:
    row = await app_state(request).test_runs.get(user_of(request).tenant_id, str(request.path_params["run_id"])[:80])
    if row is None:
        raise NotFound("no such test run")
    return row


@console_page("read")
async def run_page(request: Request) -> Response:
    row = await _run_of(request)
    store = app_state(request).deps.storage.test_runs
    earlier = [r for r in await store.list(row["tenant_id"], limit=50, before=row["created_at"])
               if r["suite_name"] == row["suite_name"] and r["status"] in ("passed", "failed")]
    previous = await store.get(row["tenant_id"], earlier[0]["id"]) if earlier else None
    return page(request, "tests_run.html", title=f"Test run: {row['suite_name']}", run=row,
                result=row.get("result") or {}, previous=previous,
                changes=_changes(row.get("result"), (previous or {}).get("result")))


@console_page("read")
async def run_events(request: Request) -> Response:
    request.path_params["id"] = request.path_params["run_id"]
    return await follow(request, user_of(request).tenant_id)


@console_page("read", write="converse")
async def delete(request: Request) -> Response:
    row = await _case(request)
    await app_state(request).deps.storage.console.delete_test_case(row["tenant_id"], row["id"])
    return RedirectResponse("/console/tests?deleted=1", status_code=303)


ROUTES: list[BaseRoute] = [
    Route("/console/tests", index, methods=["GET"]),
    Route("/console/tests/run", run_pasted, methods=["POST"]),
    Route("/console/tests/run/{persona_id}", run_saved, methods=["POST"]),
    Route("/console/tests/runs/{run_id}", run_page, methods=["GET"]),
    Route("/console/tests/runs/{run_id}/events", run_events, methods=["GET"]),
    Route("/console/tests/suite/{persona_id}.yaml", suite, methods=["GET"]),
    Route("/console/tests/{case_id}.yaml", download, methods=["GET"]),  # before the page, which would take it
    Route("/console/tests/{case_id}", show, methods=["GET"]),
    Route("/console/tests/{case_id}/delete", delete, methods=["POST"]),
]
