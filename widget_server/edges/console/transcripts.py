"""The console's Transcripts: the tenant's conversations with filters and full-text search
(`/console/transcripts`), one conversation with every message, its guardrail decisions, feedback and timing
(`/console/transcripts/{id}`), and that conversation as a JSON or text download.

Every role reads them. Filters live in the URL (a search is a link one can share with a colleague); a value the
page cannot use is shown next to its field, with no results, never a server error. The search's marks are built
as (text, marked) segments and written by the template inside `<mark>`, autoescaped: visitor text stays text.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, date, datetime, timedelta
from typing import Any
from urllib.parse import urlencode

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from widget_server.backends.storage.search import BadCursor, TranscriptFilter
from widget_server.backends.storage.search_query import highlight, parse
from widget_server.edges.console.auth import console_page, user_of
from widget_server.edges.console.render import page
from widget_server.edges.state import app_state
from widget_server.errors import ConversationNotFound

CHANNELS = ("widget", "api", "openai", "mcp", "console", "test")
STATUSES = ("bot", "escalated", "agent", "closed")
FLAGS = {"guardrail": "Guardrail triggered", "feedback": "Feedback down", "escalated": "Escalated"}
PAGE_SIZE = 50
DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
CONVERSATION_ID = re.compile(r"conv_[0-9a-z]{26}")  # anything else (a NUL, a megabyte) is no conversation: 404
FIELDS = ("q", "persona", "channel", "status", "from", "to", *FLAGS)


def _one(request: Request, name: str, most: int = 500) -> str:
    return request.query_params.get(name, "")[:most].strip()


def _day(value: str, field: str, errors: dict[str, str]) -> date | None:
    if not value:
        return None
    try:
        if DATE.fullmatch(value):
            return date.fromisoformat(value)
    except ValueError:
        pass
    errors[field] = "Give a date as YYYY-MM-DD."
    return None


def _moment(day: date | None) -> datetime | None:
    return datetime(day.year, day.month, day.day, tzinfo=UTC) if day else None


def _filters(request: Request, personas: dict[str, str]) -> tuple[TranscriptFilter, dict[str, str], dict[str, str]]:
    """The filters of the URL, the values as given (to fill the form again) and an error per field."""
    given = {name: _one(request, name) for name in FIELDS}
    errors: dict[str, str] = {}
    for field, allowed in (("persona", personas), ("channel", CHANNELS), ("status", STATUSES)):
        if given[field] and given[field] not in allowed:
            errors[field] = f"Choose one of the listed {field}s."
    since, until = _day(given["from"], "from", errors), _day(given["to"], "to", errors)
    if since and until and since > until:
        errors["to"] = "The end date comes before the start date."
    filters = TranscriptFilter(
        persona_id=given["persona"] or None, channel=given["channel"] or None, status=given["status"] or None,
        since=_moment(since), until=_moment(until + timedelta(days=1)) if until else None,
        guardrail=bool(given["guardrail"]), feedback_down=bool(given["feedback"]),
        escalated=bool(given["escalated"]), text=parse(given["q"]) if given["q"] else None)
    return filters, given, errors


def _link(given: dict[str, str], **cursor: str | None) -> str:
    params = {k: v for k, v in given.items() if v} | {k: v for k, v in cursor.items() if v}
    return "/console/transcripts" + (f"?{urlencode(params)}" if params else "")


async def _personas(request: Request, tenant_id: str) -> dict[str, str]:
    rows = await app_state(request).deps.storage.list_personas(tenant_id)
    return {r["id"]: r["doc"].get("name") or r["slug"] for r in rows}


@console_page("read")
async def index(request: Request) -> Response:
    tenant_id = user_of(request).tenant_id
    storage = app_state(request).deps.storage
    personas = await _personas(request, tenant_id)
    filters, given, errors = _filters(request, personas)
    before, after = _one(request, "before", 80) or None, _one(request, "after", 80) or None
    result = None
    if not errors:
        try:
            result = await storage.transcripts.page(tenant_id, filters, before=before, after=None if before else after,
                                                    limit=PAGE_SIZE)
        except BadCursor:
            errors["cursor"] = "This page link is out of date: start again from the newest."
    rows = result.rows if result else []
    summaries = await storage.transcripts.summaries(tenant_id, [r["id"] for r in rows])
    for row in rows:
        row["summary"] = summaries.get(row["id"], {})
        row["persona_name"] = personas.get(row["persona_id"], row["persona_id"])
        if "hit" in row and filters.text is not None:
            row["snippet"] = highlight(row["hit"]["text"], filters.text)
            row["open"] = f"/console/transcripts/{row['id']}?{urlencode({'q': given['q']})}#m-{row['hit']['id']}"
        else:
            row["open"] = f"/console/transcripts/{row['id']}"
    return page(request, "transcripts.html", status_code=400 if errors else 200, title="Transcripts", rows=rows,
                given=given, errors=errors, personas=personas, channels=CHANNELS, statuses=STATUSES, flags=FLAGS,
                searching=filters.text is not None, searchable=bool(filters.text and filters.text.searchable),
                older=_link(given, before=result.older) if result and result.older else None,
                newer=_link(given, after=result.newer) if result and result.newer else None,
                newest=_link(given) if before or after else None)


async def _conversation(request: Request) -> dict[str, Any]:
    """The conversation of the path, with its messages (feedback on each) and persona; 404 unless the tenant's."""
    tenant_id = user_of(request).tenant_id
    storage = app_state(request).deps.storage
    ref = str(request.path_params["id"])[:80]
    row = await storage.get_conversation(tenant_id, ref) if CONVERSATION_ID.fullmatch(ref) else None
    if row is None:
        raise ConversationNotFound(f"no conversation {ref!r}")
    messages = await storage.list_messages(tenant_id, row["id"])
    ratings = {f["message_id"]: f for f in await storage.get_feedback(tenant_id, [m["id"] for m in messages])}
    for m in messages:
        m["feedback"] = ratings.get(m["id"])
    persona = await storage.get_persona(tenant_id, row["persona_id"])
    return {**row, "messages": messages, "persona": persona}


@console_page("read")
async def conversation(request: Request) -> Response:
    conv = await _conversation(request)
    q = _one(request, "q")
    query = parse(q) if q else None
    for m in conv["messages"]:
        m["parts"] = highlight(m["text"], query, window=None) if query else [(m["text"], False)]
    name = conv["persona"]["doc"].get("name") if conv["persona"] else None
    return page(request, "transcript.html", title=f"Conversation {conv['id']}", conv=conv, persona_name=name, q=q)


def document(conv: dict[str, Any]) -> dict[str, Any]:
    """The transcript as the JSON download holds it."""
    persona = conv["persona"]
    return {
        "id": conv["id"], "channel": conv["channel"], "status": conv["status"], "visitor_id": conv["visitor_id"],
        "persona": {"id": conv["persona_id"], "slug": persona["slug"] if persona else None,
                    "name": persona["doc"].get("name") if persona else None},
        "created_at": conv["created_at"].isoformat(), "updated_at": conv["updated_at"].isoformat(),
        "messages": [{
            "id": m["id"], "role": m["role"], "created_at": m["created_at"].isoformat(), "text": m["text"],
            "finish_reason": m["finish_reason"], "guardrail": m["guardrail"], "usage": m["usage"],
            "timing": m["timing"],
            "feedback": {"rating": m["feedback"]["rating"], "comment": m["feedback"]["comment"]}
            if m["feedback"] else None,
        } for m in conv["messages"]],
    }


def text_of(doc: dict[str, Any]) -> str:
    """The transcript as a person reads it in a plain text file."""
    persona = doc["persona"]["name"] or doc["persona"]["id"]
    lines = [f"Conversation {doc['id']}", f"Persona: {persona}", f"Channel: {doc['channel']}",
             f"Status: {doc['status']}", f"Visitor: {doc['visitor_id']}", f"Started: {doc['created_at']}", ""]
    for m in doc["messages"]:
        who = persona if m["role"] == "persona" else m["role"].title()
        lines.append(f"[{m['created_at']}] {who}: {m['text']}")
        if m["guardrail"]:
            g = m["guardrail"]
            lines.append(f"    guardrail: {g.get('action')} {g.get('reason')} ({g.get('source')})")
        if m["feedback"]:
            lines.append(f"    feedback: {m['feedback']['rating']}" + (f" - {m['feedback']['comment']}"
                                                                         if m["feedback"]["comment"] else ""))
    return "\n".join(lines) + "\n"


def _attachment(body: str, media_type: str, name: str) -> Response:
    return Response(body, media_type=media_type, headers={"content-disposition": f'attachment; filename="{name}"'})


@console_page("read")
async def download_json(request: Request) -> Response:
    doc = document(await _conversation(request))
    body = json.dumps(doc, indent=2, ensure_ascii=False, default=str) + "\n"
    return _attachment(body, "application/json", f"transcript-{doc['id']}.json")


@console_page("read")
async def download_text(request: Request) -> Response:
    doc = document(await _conversation(request))
    return _attachment(text_of(doc), "text/plain; charset=utf-8", f"transcript-{doc['id']}.txt")


ROUTES: list[BaseRoute] = [
    Route("/console/transcripts", index, methods=["GET"]),
    Route("/console/transcripts/{id}", conversation, methods=["GET"]),
    Route("/console/transcripts/{id}/download.json", download_json, methods=["GET"]),
    Route("/console/transcripts/{id}/download.txt", download_text, methods=["GET"]),
]
