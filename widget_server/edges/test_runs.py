"""`/v1/test-runs`: run a persona test suite on the server (the engine of `widget-server test`), follow it, read
its results. A run is stored per tenant; `POST` answers 202 at once and the suite runs in the background.

The body names the suite: `{"suite": {…}}` (the suite document, as `GET /v1/test-suites/schema` describes it) or
`{"persona": "slug"}` (the test cases the console saved for that persona, as one suite); `repeat` (1–10) and
`only` (a case name) as the command line's `--repeat` and `--only`; `no_judge` and `strict_judge` as `--no-judge`
and `--strict-judge`. A test persona a simulated case names must be the tenant's (a 400 names it otherwise).
`GET /v1/test-runs/{id}/events` is Server-Sent Events: `run` (the run as stored), then `progress` per case and
`done`, and the stream ends; a run that has ended gets `run` and `done` at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse

from widget_server.domain import personas
from widget_server.domain.analytics.query import TIME_PATTERN, parse_time
from widget_server.domain.testing import engine, runs, suite
from widget_server.edges.http import json_body, only_fields, query, tenant_of
from widget_server.edges.live import KEEP_ALIVE, Follower
from widget_server.edges.query_params import Limit, Param, declare
from widget_server.edges.state import app_state
from widget_server.errors import InvalidRequest, NotFound

LIST_LIMIT = Limit(default=20, most=100)
LIST = declare(LIST_LIMIT.param, Param("before", {"type": "string", "pattern": TIME_PATTERN},
                                      "runs made before this time: next_before of the previous page"))
MAX_REPEAT = 10


class RunNotFound(NotFound):
    code = "test_run.not_found"


def public(row: dict[str, Any], *, full: bool = True) -> dict[str, Any]:
    out = {"id": row["id"], "suite": row["suite_name"], "status": row["status"], "source": row["source"],
           "options": row["options"], "summary": row["summary"], "error": row["error"],
           "created_at": row["created_at"].isoformat(), "started_at": _time(row["started_at"]),
           "finished_at": _time(row["finished_at"])}
    if full:
        out["result"] = row.get("result")
    return out


def _time(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


async def _suite_of(request: Request, tenant_id: str, body: dict[str, Any]) -> dict[str, Any]:
    """The suite document the body names, checked as the command line checks a file (a 400 naming the field)."""
    if ("suite" in body) == ("persona" in body):
        raise InvalidRequest("name the suite: either suite (the document) or persona (its saved test cases)",
                             details={"errors": [{"field": "suite", "message": "suite or persona"}]})
    if "persona" in body:
        ref = body["persona"]
        if not isinstance(ref, str) or not ref:
            raise InvalidRequest("persona must be a persona's slug or id",
                                 details={"errors": [{"field": "persona", "message": "a slug or id"}]})
        persona = await personas.get(app_state(request).deps.storage, tenant_id, ref[:80])
        cases = await app_state(request).deps.storage.console.list_test_cases(tenant_id, persona["id"])
        if not cases:
            raise NotFound(f"no test cases are saved for the persona {persona['slug']!r}",
                           code="test_run.no_cases")
        return engine.saved_suite(persona, [c["doc"] for c in cases])
    if not isinstance(body["suite"], dict):
        raise InvalidRequest("suite must be the suite document, an object (widget-server test reads YAML files)",
                             details={"errors": [{"field": "suite", "message": "an object"}]})
    return engine.checked(body["suite"])


def _options(body: dict[str, Any]) -> dict[str, Any]:
    repeat = body.get("repeat", 1)
    if isinstance(repeat, float) and repeat.is_integer():
        repeat = int(repeat)  # (JSON's 2.0 is the integer 2)
    if isinstance(repeat, bool) or not isinstance(repeat, int) or not 1 <= repeat <= MAX_REPEAT:
        raise InvalidRequest(f"repeat must be a whole number from 1 to {MAX_REPEAT}",
                             details={"errors": [{"field": "repeat", "message": f"1 to {MAX_REPEAT}"}]})
    only = body.get("only")
    if "only" in body and (not isinstance(only, str) or not 0 < len(only) <= 200):
        raise InvalidRequest("only must be a case name of 1 to 200 characters",
                             details={"errors": [{"field": "only", "message": "a case name"}]})
    judge = {}
    for flag in ("no_judge", "strict_judge"):
        if not isinstance(body.get(flag, False), bool):
            raise InvalidRequest(f"{flag} must be true or false",
                                 details={"errors": [{"field": flag, "message": "true or false"}]})
        if body.get(flag):
            judge[flag] = True
    if len(judge) == 2:
        raise InvalidRequest("no_judge and strict_judge cannot both be true",
                             details={"errors": [{"field": "strict_judge", "message": "not with no_judge"}]})
    return {"repeat": repeat, "only": only, **judge}


async def suite_schema(request: Request) -> Response:
    """The JSON Schema of a suite file (editors validate and complete suites with it)."""
    return JSONResponse(suite.suite_schema(), headers={"Cache-Control": "public, max-age=3600"})


async def create_run(request: Request) -> Response:
    tenant_id = await tenant_of(request)
    body = only_fields(await json_body(request), {"suite", "persona", "repeat", "only", "no_judge", "strict_judge"})
    options = _options(body)
    suite = await _suite_of(request, tenant_id, body)
    await engine.check_visitors(app_state(request).deps.storage, tenant_id, suite)
    row = await app_state(request).test_runs.start(tenant_id, suite, options, source="api")
    return JSONResponse(public(row), status_code=202, headers={"Location": f"/v1/test-runs/{row['id']}"})


async def list_runs(request: Request) -> Response:
    tenant_id = await tenant_of(request)
    params = query(request)
    limit = LIST_LIMIT.of(params)
    before = parse_time("before", params["before"]) if "before" in params else None
    rows = await app_state(request).deps.storage.test_runs.list(tenant_id, limit=limit + 1, before=before)
    page = rows[:limit]
    return JSONResponse({"data": [public(r, full=False) for r in page],
                         "next_before": page[-1]["created_at"].isoformat() if len(rows) > limit else None})


async def _found(request: Request, tenant_id: str) -> dict[str, Any]:
    ref = str(request.path_params["id"])[:80]
    row = await app_state(request).test_runs.get(tenant_id, ref)
    if row is None:
        raise RunNotFound(f"no test run {ref!r}")
    return row


async def get_run(request: Request) -> Response:
    return JSONResponse(public(await _found(request, await tenant_of(request))))


class _Tap:
    def __init__(self, queue: asyncio.Queue[tuple[int, str] | None]) -> None:
        self.queue = queue

    def frame(self, seq: int, text: str) -> None:
        self.queue.put_nowait((seq, text))

    def control(self, message: dict[str, Any]) -> None:
        pass

    def lost(self) -> None:
        self.queue.put_nowait(None)


def _sse(name: str, data: str) -> str:
    return f"event: {name}\ndata: {data}\n\n"


def _told(text: str) -> tuple[str, bool]:
    """A frame the run told on the bus, as an SSE event (without the bus's seq), and whether it is the last."""
    frame = json.loads(text)
    frame.pop("seq", None)
    return _sse(str(frame["type"]), json.dumps(frame, separators=(",", ":"))), frame["type"] == "done"


async def run_events(request: Request) -> Response:
    return await follow(request, await tenant_of(request))


async def follow(request: Request, tenant_id: str) -> Response:
    """The SSE of the run of the path (the API's, and the console's with its session)."""
    await _found(request, tenant_id)  # (a 404 before the stream starts)
    state = app_state(request)
    queue: asyncio.Queue[tuple[int, str] | None] = asyncio.Queue()
    line, tap = state.deps.hub.bus.line(runs.run_line(request.path_params["id"])), _Tap(queue)
    await line.join(tap)  # listening before the log and the row are read: nothing falls between
    try:
        backlog = (await line.since(0)).frames or []  # what the run told before this stream began
        row = await _found(request, tenant_id)
    except BaseException:
        await line.leave(tap)
        raise

    async def events() -> AsyncIterator[str]:
        client = Follower(request)
        try:
            yield _sse("run", json.dumps(public(row, full=False), separators=(",", ":")))
            if row["status"] in runs.ENDED:
                done = {"type": "done", "status": row["status"], "summary": row["summary"], "error": row["error"]}
                yield _sse("done", json.dumps(done, separators=(",", ":")))
                return
            last = 0
            for seq, text in backlog:
                last = seq
                out, ended = _told(text)
                yield out
                if ended:
                    return
            async for item in client.follow(queue):  # ends when the bus lost what it held: the client reads again
                if item is None:
                    yield KEEP_ALIVE
                    continue
                seq, text = item
                if seq <= last:
                    continue  # in the log already
                last = seq
                out, ended = _told(text)
                yield out
                if ended:
                    return
        finally:
            client.close()
            with contextlib.suppress(Exception):
                await line.leave(tap)

    headers = {"Cache-Control": "no-store", "X-Accel-Buffering": "no"}
    return StreamingResponse(events(), media_type="text/event-stream", headers=headers)
