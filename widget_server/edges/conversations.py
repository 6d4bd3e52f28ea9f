"""`/v1/conversations`: a keyset-paginated list, one conversation with its messages, and takeover for integrations
(a helpdesk claims an escalated conversation, answers in the visitor's widget, lets go, resolves or closes it)."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from widget_server.backends.storage import Storage
from widget_server.domain.chat import takeover
from widget_server.domain.chat.conversations import TAKEN
from widget_server.edges.http import json_body, only_fields, query, tenant_of
from widget_server.edges.query_params import Limit, Param, declare, string
from widget_server.edges.state import app_state
from widget_server.errors import ConversationNotFound, InvalidRequest

LIST_LIMIT = Limit(default=50, most=200)
STATUSES = ("bot", "escalated", "agent", "closed")
LIST = declare(LIST_LIMIT.param, string("cursor", "next_cursor of the previous page"), string("persona", "persona id"),
               Param("status", {"enum": list(STATUSES)}, "only conversations in this state (escalated: the queue)"))


def _time(value: Any) -> str | None:
    return value.isoformat() if value is not None else None


def _conversation(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": row["id"], "persona_id": row["persona_id"], "visitor_id": row["visitor_id"], "channel": row["channel"],
        "status": row["status"], "created_at": row["created_at"].isoformat(),
        "updated_at": row["updated_at"].isoformat(), "escalated_at": _time(row["escalated_at"]),
        "escalation_reason": row["escalation_reason"],
        "agent": {"id": row["agent_id"], "name": row["agent_name"]} if row["agent_id"] else None,
        "claimed_at": _time(row["claimed_at"]),
        # While a person has or is fetching it: whether the visitor's widget is connected (null: not known)
        "visitor_online": row["visitor_online"] if row["status"] in TAKEN else None,
        "visitor_seen_at": _time(row["visitor_seen_at"]) if row["status"] in TAKEN else None,
    }


def _message(row: dict[str, Any], rating: dict[str, Any] | None = None) -> dict[str, Any]:
    out = {k: row[k] for k in ("id", "role", "text", "finish_reason", "guardrail", "usage", "timing", "agent")}
    out["internal"] = bool(row["internal"])
    out["created_at"] = row["created_at"].isoformat()
    out["feedback"] = {"rating": rating["rating"], "comment": rating["comment"]} if rating else None
    return out


async def list_conversations(request: Request) -> Response:
    tenant_id = await tenant_of(request)
    params = query(request)
    limit = LIST_LIMIT.of(params)
    status = params.get("status")
    if status is not None and status not in STATUSES:
        raise InvalidRequest(f"status must be one of {', '.join(STATUSES)}", code="query.invalid",
                             details={"param": "status"})
    rows = await app_state(request).deps.storage.list_conversations(
        tenant_id, limit=limit + 1, before=params.get("cursor"), persona_id=params.get("persona"), status=status
    )
    page = rows[:limit]
    next_cursor = page[-1]["id"] if len(rows) > limit else None
    return JSONResponse({"data": [_conversation(r) for r in page], "next_cursor": next_cursor})


async def transcript(storage: Storage, tenant_id: str, conversation_id: str) -> dict[str, Any]:
    """One of the tenant's conversations with every message (and its feedback), as this API and the MCP server's
    `get_conversation` tool answer it; another tenant's is not found."""
    row = await storage.get_conversation(tenant_id, conversation_id)
    if row is None:
        raise ConversationNotFound(f"no conversation {conversation_id!r}")
    messages = await storage.list_messages(tenant_id, row["id"])
    ratings = {f["message_id"]: f for f in await storage.get_feedback(tenant_id, [m["id"] for m in messages])}
    return {**_conversation(row), "messages": [_message(m, ratings.get(m["id"])) for m in messages]}


async def get_conversation(request: Request) -> Response:
    tenant_id = await tenant_of(request)
    return JSONResponse(await transcript(app_state(request).deps.storage, tenant_id, request.path_params["id"]))


async def _takeover_body(request: Request, allowed: set[str], required: set[str]) -> tuple[str, dict[str, Any]]:
    tenant_id = await tenant_of(request)
    body = only_fields(await json_body(request, optional=not required), allowed, required)
    return tenant_id, body


def _note(body: dict[str, Any]) -> str | None:
    note = body.get("note")
    if note is not None and (not isinstance(note, str) or len(note) > 2000):
        raise InvalidRequest("note must be a string of at most 2000 characters",
                             details={"errors": [{"field": "note", "message": "at most 2000 characters"}]})
    return note


def _agent(body: dict[str, Any]) -> takeover.Agent | None:
    return takeover.agent_of(body["agent"]) if body.get("agent") is not None else None


async def claim(request: Request) -> Response:
    """`POST /v1/conversations/{id}/claim`: an agent takes an escalated conversation (409 when another has it)."""
    tenant_id, body = await _takeover_body(request, {"agent"}, {"agent"})
    row = await takeover.claim(app_state(request).deps, tenant_id, request.path_params["id"],
                               takeover.agent_of(body["agent"]))
    return JSONResponse(_conversation(row))


async def release(request: Request) -> Response:
    """`POST /v1/conversations/{id}/release`: the agent lets go; the conversation waits in the queue again."""
    tenant_id, body = await _takeover_body(request, {"agent"}, {"agent"})
    row = await takeover.release(app_state(request).deps, tenant_id, request.path_params["id"],
                                 takeover.agent_of(body["agent"]))
    return JSONResponse(_conversation(row))


async def post_message(request: Request) -> Response:
    """`POST /v1/conversations/{id}/messages`: the agent holding the conversation writes to the visitor (or, with
    `internal`, a note only agents see)."""
    tenant_id, body = await _takeover_body(request, {"text", "agent", "internal"}, {"text", "agent"})
    internal = body.get("internal", False)
    if not isinstance(internal, bool):
        raise InvalidRequest("internal must be true or false",
                             details={"errors": [{"field": "internal", "message": "a boolean"}]})
    message = await takeover.say(app_state(request).deps, tenant_id, request.path_params["id"],
                                 takeover.agent_of(body["agent"]), body["text"], internal)
    return JSONResponse(_message(message), status_code=201)


async def resolve(request: Request) -> Response:
    """`POST /v1/conversations/{id}/resolve`: back to the bot (409 unless a person has it or is fetched)."""
    tenant_id, body = await _takeover_body(request, {"note", "agent"}, set())
    row = await takeover.resolve(app_state(request).deps, tenant_id, request.path_params["id"], _note(body),
                                 _agent(body))
    return JSONResponse(_conversation(row))


async def close(request: Request) -> Response:
    """`POST /v1/conversations/{id}/close`: the conversation ends (409 when it has ended already)."""
    tenant_id, body = await _takeover_body(request, {"agent"}, set())
    row = await takeover.close(app_state(request).deps, tenant_id, request.path_params["id"], _agent(body))
    return JSONResponse(_conversation(row))
