"""`/v1/conversations`: a keyset-paginated list, and one conversation with its messages."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from widget_server.domain.chat import escalation
from widget_server.edges.http import json_body, only_fields, query, tenant_of
from widget_server.edges.query_params import Limit, declare, string
from widget_server.edges.state import app_state
from widget_server.errors import ConversationNotFound, InvalidRequest

LIST_LIMIT = Limit(default=50, most=200)
LIST = declare(LIST_LIMIT.param, string("cursor", "next_cursor of the previous page"), string("persona", "persona id"))


def _conversation(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": row["id"], "persona_id": row["persona_id"], "visitor_id": row["visitor_id"], "channel": row["channel"],
        "status": row["status"], "created_at": row["created_at"].isoformat(),
        "updated_at": row["updated_at"].isoformat(),
    }


def _message(row: dict[str, Any], rating: dict[str, Any] | None) -> dict[str, Any]:
    out = {k: row[k] for k in ("id", "role", "text", "finish_reason", "guardrail", "usage", "timing")}
    out["created_at"] = row["created_at"].isoformat()
    out["feedback"] = {"rating": rating["rating"], "comment": rating["comment"]} if rating else None
    return out


async def list_conversations(request: Request) -> Response:
    tenant_id = await tenant_of(request)
    params = query(request)
    limit = LIST_LIMIT.of(params)
    rows = await app_state(request).deps.storage.list_conversations(
        tenant_id, limit=limit + 1, before=params.get("cursor"), persona_id=params.get("persona")
    )
    page = rows[:limit]
    next_cursor = page[-1]["id"] if len(rows) > limit else None
    return JSONResponse({"data": [_conversation(r) for r in page], "next_cursor": next_cursor})


async def get_conversation(request: Request) -> Response:
    tenant_id = await tenant_of(request)
    storage = app_state(request).deps.storage
    row = await storage.get_conversation(tenant_id, request.path_params["id"])
    if row is None:
        raise ConversationNotFound(f"no conversation {request.path_params['id']!r}")
    messages = await storage.list_messages(tenant_id, row["id"])
    ratings = {f["message_id"]: f for f in await storage.get_feedback(tenant_id, [m["id"] for m in messages])}
    return JSONResponse({**_conversation(row), "messages": [_message(m, ratings.get(m["id"])) for m in messages]})


async def resolve(request: Request) -> Response:
    """`POST /v1/conversations/{id}/resolve`: an escalated conversation goes back to the bot."""
    tenant_id = await tenant_of(request)
    d = app_state(request).deps
    row = await d.storage.get_conversation(tenant_id, request.path_params["id"])
    if row is None:
        raise ConversationNotFound(f"no conversation {request.path_params['id']!r}")
    body = only_fields(await json_body(request, optional=True), {"note"})
    note = body.get("note")
    if note is not None and (not isinstance(note, str) or len(note) > 2000):
        raise InvalidRequest("note must be a string of at most 2000 characters")
    await escalation.resolve(d, row, note)
    updated = await d.storage.get_conversation(tenant_id, row["id"])
    assert updated is not None
    return JSONResponse(_conversation(updated))
