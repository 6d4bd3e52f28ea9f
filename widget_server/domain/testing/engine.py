"""What the server's edges (`/v1/test-runs`, the console's Tests page) need of the suite engine: a suite document
checked as the command line checks a file, the suite of a persona's saved test cases, and a run of a stored suite
document, its result as `widget-server test --json` reports it."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import yaml

from widget_server.backends.storage import Storage
from widget_server.domain.chat.deps import Deps
from widget_server.domain.testing.runner import Judging, run_suite
from widget_server.domain.testing.suite import checked as checked_suite
from widget_server.domain.testing.suite import parse_suite
from widget_server.domain.testing.visitor import visitor_of


def saved_suite(persona: dict[str, Any], cases: list[dict[str, Any]]) -> dict[str, Any]:
    """The test cases the console saved for a persona, as one suite (what the Tests page downloads)."""
    return {"suite": f"{persona['doc'].get('name') or persona['slug']} (saved in the playground)",
            "persona": persona["slug"], "policy": "tenant", "cases": cases}


def checked(document: Any) -> dict[str, Any]:
    """The suite document (given as a document or as its YAML), once it loads as a suite: a 400 naming the field,
    and in YAML its line, otherwise. The document is kept as written, to run later."""
    checked_suite(document)
    doc = yaml.safe_load(document) if isinstance(document, str | bytes) else document
    assert isinstance(doc, dict)  # (a suite that loaded is a mapping)
    return doc


async def run(deps: Deps, tenant_id: str, suite: dict[str, Any], options: dict[str, Any],
              progress: Callable[[dict[str, Any]], None]) -> dict[str, Any]:
    def step(case: dict[str, Any]) -> None:
        progress({"case": case["case"], "status": case["status"], "done": case["index"], "total": case["of"]})

    judging = Judging(enabled=not options.get("no_judge"), strict=bool(options.get("strict_judge")))
    result = await run_suite(deps, tenant_id, parse_suite(suite), repeat=int(options.get("repeat") or 1),
                             only=options.get("only"), on_progress=step, judging=judging)
    return result.to_json()


async def check_visitors(storage: Storage, tenant_id: str, suite: dict[str, Any]) -> None:
    """Every test persona the suite's simulated cases name, the tenant's: a 400 naming the one it lacks."""
    for case in parse_suite(suite).cases:
        if case.visitor_persona is not None and case.visitor_persona.name is not None:
            await visitor_of(storage, tenant_id, case)
