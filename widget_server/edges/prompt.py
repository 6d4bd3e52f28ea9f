"""`POST /v1/personas/{id}/prompt` (one JSON answer) and `/prompt/stream` (Server-Sent Events)."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse

from widget_server.domain import chat, personas
from widget_server.edges.http import deps, json_body, only_fields, tenant_of
from widget_server.errors import ConversationNotFound, InvalidRequest, ProviderError, ProviderTimeout, WidgetError
from widget_server.ids import new_id

FIELDS = {"message", "conversation_id", "visitor_id"}


def _check_message(text: Any, max_chars: int) -> None:
    # Checked again by the turn; checked here first so that a refused message leaves no empty conversation behind.
    if not isinstance(text, str) or not text.strip():
        raise InvalidRequest("message text must be a non-empty string", code="message.invalid")
    if len(text) > max_chars:
        raise InvalidRequest(f"message is longer than {max_chars} characters", code="message.too_long")


async def _conversation(request: Request) -> tuple[chat.Conversation, dict[str, Any]]:
    tenant_id = await tenant_of(request)
    d = deps(request)
    body = only_fields(await json_body(request), FIELDS, {"message"})
    persona = await personas.get(d.storage, tenant_id, request.path_params["id"])
    _check_message(body["message"], d.settings.max_message_chars)
    visitor_id = body.get("visitor_id") or new_id("vis")
    if not isinstance(visitor_id, str) or len(visitor_id) > 80:
        raise InvalidRequest("visitor_id must be a string of at most 80 characters")
    if body.get("conversation_id"):
        row = await d.storage.get_conversation(tenant_id, str(body["conversation_id"]))
        if row is None or row["persona_id"] != persona["id"]:
            raise ConversationNotFound(f"no conversation {body['conversation_id']!r} with this persona")
        conv = chat.Conversation(row["id"], tenant_id, persona, row["visitor_id"], row["channel"])
    else:
        conv = await chat.start_conversation(d, tenant_id, persona, visitor_id, "api")
    return conv, body


async def prompt(request: Request) -> Response:
    conv, body = await _conversation(request)
    reply = await chat.run_turn(deps(request), conv, body["message"], None, lambda frame: None)
    if reply.error:
        err_cls = ProviderTimeout if reply.error["code"] == ProviderTimeout.code else ProviderError
        raise err_cls(reply.error["message"], details={"conversation_id": conv.id, "message_id": reply.message_id})
    answer: dict[str, Any] = {
        "conversation_id": conv.id, "message_id": reply.message_id, "text": reply.text,
        "finish_reason": reply.finish_reason, "usage": reply.usage, "timing": reply.timing,
    }
    if reply.guardrail:
        answer["guardrail"] = reply.guardrail
    return JSONResponse(answer)


def sse(frame: dict[str, Any]) -> str:
    return f"event: {frame['type']}\ndata: {json.dumps(frame, separators=(',', ':'))}\n\n"


async def prompt_stream(request: Request) -> Response:
    conv, body = await _conversation(request)
    d = deps(request)
    queue: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue()

    def emit(frame: dict[str, Any]) -> None:
        queue.put_nowait({**frame, "conversation_id": conv.id} if frame["type"] == "message.accepted" else frame)

    async def turn() -> None:
        try:
            await chat.run_turn(d, conv, body["message"], None, emit)
        except WidgetError as exc:
            emit({"type": "error", "code": exc.code, "message": exc.message, "retryable": exc.retryable})
        finally:
            queue.put_nowait(None)

    async def events() -> AsyncIterator[str]:
        task = asyncio.create_task(turn())
        try:
            while (frame := await queue.get()) is not None:
                yield sse(frame)
        finally:
            if not task.done():  # the client went away: stop the provider
                task.cancel()
                with contextlib.suppress(BaseException):
                    await task

    headers = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no", "X-Conversation-Id": conv.id}
    return StreamingResponse(events(), media_type="text/event-stream", headers=headers)
