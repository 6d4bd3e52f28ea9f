"""The console's Dashboard (`/console/`) and its download (`/console/export`).

The dashboard is the REST summary (`domain/analytics/summary.py`, the same aggregates) drawn as charts, with the
per-day time to first token besides; its filters are a GET form of dates a person picks (`to` inclusive, unlike the
API's exclusive `to`: the page adds the day) and a persona. The download is the REST export (`edges/export.py`)
of the signed-in user's tenant, with the API's parameters, so the link for the dashboard's filters asks for exactly
the rows the charts count.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, date, timedelta
from typing import Any
from urllib.parse import urlencode

from markupsafe import Markup
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from widget_server.clock import now
from widget_server.domain.analytics.summary import parse_summary, summarize
from widget_server.edges.analytics import settle
from widget_server.edges.console import charts
from widget_server.edges.console.auth import console_page, user_of
from widget_server.edges.console.render import page
from widget_server.edges.export import EXPORT, streamed
from widget_server.edges.state import app_state
from widget_server.errors import PersonaNotFound

DEFAULT_DAYS = 14
MOST_DAYS = 366
MOST_PERSONAS = 500  # in the persona menu; a persona past them is still a valid filter by its id
LATEST = date.max - timedelta(days=1)
DAY = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
GREEN, RED = charts.COLOURS[2], charts.COLOURS[1]


@dataclass(frozen=True)
class Range:
    """The dashboard's filters: the first and last UTC day shown (both included), and a persona id or None."""

    first: date
    last: date
    persona_id: str | None = None

    def api_params(self) -> dict[str, str]:
        """The same filters as the REST API reads them (`to` exclusive)."""
        params = {"from": self.first.isoformat(), "to": (self.last + timedelta(days=1)).isoformat()}
        return params | ({"persona": self.persona_id} if self.persona_id else {})


def _day(value: str, name: str, errors: dict[str, str]) -> date | None:
    if not DAY.fullmatch(value):
        errors[name] = "Enter a date as YYYY-MM-DD."
        return None
    try:
        return date.fromisoformat(value)
    except ValueError:
        errors[name] = "That day does not exist."
        return None


def _later(day: date, days: int) -> date:
    return day + timedelta(days=days) if (date.max - day).days >= days else date.max


def read_range(given: dict[str, str]) -> tuple[Range | None, dict[str, str]]:
    """The filters of the form (defaults: the last 14 days up to today, every persona), or the errors of each
    field that holds a wrong value."""
    today = now().astimezone(UTC).date()
    errors: dict[str, str] = {}
    last = _day(given["to"], "to", errors) if given.get("to") else today
    first = _day(given["from"], "from", errors) if given.get("from") else None
    if last is not None and first is None and "from" not in errors:
        first = last - timedelta(days=DEFAULT_DAYS - 1) if last.toordinal() > DEFAULT_DAYS else date.min
    if first is None or last is None:
        return None, errors
    if last < first and not given.get("to"):  # a first day in the future, and no last day: two weeks from it
        last = _later(first, DEFAULT_DAYS - 1)
    if last < first:
        return None, {"to": "The last day is before the first day."}
    if last > LATEST:  # the API's `to` is the day after
        return None, {"to" if given.get("to") else "from": f"Choose a day up to {LATEST.isoformat()}."}
    if (last - first).days >= MOST_DAYS:
        return None, {"from": f"Choose at most {MOST_DAYS} days."}
    return Range(first, last, given.get("persona") or None), {}


def _label(day: str) -> str:
    d = date.fromisoformat(day)
    return f"{d:%b} {d.day}"


def build_charts(summary: dict[str, Any]) -> dict[str, Markup]:
    """Each chart of the page, from the summary (with its per-day time to first token)."""
    days = summary["days"]
    labels = [_label(d["day"]) for d in days]
    reasons = [(reason or "(no rule)", n) for reason, n in summary["guardrails"]["by_reason"].items()]
    feedback, escalations = summary["feedback"], summary["escalations"]
    return {
        "conversations": charts.bar_chart("chart-conversations", "Conversations per day",
                                          list(zip(labels, [d["conversations"] for d in days], strict=True))),
        "messages": charts.bar_chart("chart-messages", "Visitor messages per day",
                                     list(zip(labels, [d["messages"] for d in days], strict=True))),
        "ttft": charts.line_chart(
            "chart-ttft", "Time to first token per day (ms)", labels,
            [charts.Series("p50", [d["ttft_ms"]["p50"] for d in days]),
             charts.Series("p95", [d["ttft_ms"]["p95"] for d in days])],
            unit=" ms", empty="No reply in this range"),
        "guardrails": charts.hbar_chart("chart-guardrails", "Guardrail triggers by reason", reasons,
                                        empty="No guardrail triggered in this range"),
        "escalations": charts.hbar_chart("chart-escalations", "Escalations",
                                         [("Triggered", escalations["triggered"]),
                                          ("Resolved", escalations["resolved"])]),
        "feedback": charts.hbar_chart("chart-feedback", "Feedback", [("Up", feedback["up"]),
                                                                     ("Down", feedback["down"])],
                                      colours=(GREEN, RED)),
    }


async def _personas(request: Request) -> list[dict[str, str]]:
    rows = await app_state(request).deps.storage.list_personas(user_of(request).tenant_id, limit=MOST_PERSONAS)
    return [{"id": r["id"], "name": str(r["doc"].get("name") or r["slug"]), "slug": r["slug"]} for r in rows]


def _nothing(summary: dict[str, Any]) -> bool:
    counts = [summary[k] for k in ("conversations", "messages", "replies", "errors")]
    counts += [summary["guardrails"]["triggered"], summary["escalations"]["triggered"], *summary["feedback"].values()]
    return not any(counts)


@console_page("read")
async def index(request: Request) -> Response:
    given = {k: request.query_params.get(k, "")[:100] for k in ("from", "to", "persona")}
    if "\x00" in given["persona"]:  # no id has one (and PostgreSQL cannot even compare with it)
        raise PersonaNotFound("no persona of yours has this id")
    personas = await _personas(request)
    span, errors = read_range(given)
    values: dict[str, Any] = {"title": "Dashboard", "form": given, "errors": errors, "personas": personas}
    if span is None:
        return page(request, "dashboard.html", status_code=400, **values)
    storage, tenant_id = app_state(request).deps.storage, user_of(request).tenant_id
    persona_name = None
    if span.persona_id:
        row = await storage.get_persona(tenant_id, span.persona_id)
        if row is None:
            raise PersonaNotFound("no persona of yours has this id")
        span = Range(span.first, span.last, row["id"])
        persona_name = str(row["doc"].get("name") or row["slug"])
    filters = await parse_summary(storage, tenant_id, span.api_params())
    await settle(request)
    summary = await summarize(storage, tenant_id, filters, ttft_per_day=True, tokens=False)  # not shown
    query = span.api_params()
    values |= {"span": span, "summary": summary, "charts": build_charts(summary), "persona_name": persona_name,
               "form": {"from": span.first.isoformat(), "to": span.last.isoformat(), "persona": span.persona_id or ""},
               "export_csv": "/console/export?" + urlencode({"format": "csv", **query}),
               "export_jsonl": "/console/export?" + urlencode({"format": "jsonl", **query}),
               "empty": _nothing(summary)}
    return page(request, "dashboard.html", **values)


@console_page("read")
async def export(request: Request) -> Response:
    """The REST export's file for the signed-in user's tenant (its parameters, checked the same way)."""
    return await streamed(request, user_of(request).tenant_id, EXPORT.read(request.query_params))


ROUTES: list[BaseRoute] = [Route("/console/", index, methods=["GET"]),
                           Route("/console/export", export, methods=["GET"])]
