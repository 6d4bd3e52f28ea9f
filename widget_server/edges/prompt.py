"""`POST /v1/personas/{id}/prompt` (one JSON answer) and `/prompt/stream` (Server-Sent Events)."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse

from widget_server.domain.chat import conversations, prompt_answer
from widget_server.domain.chat.conversations import Conversation
from widget_server.domain.chat.turn import run_turn
from widget_server.edges.http import json_body, only_fields, tenant_and_persona
from widget_server.edges.state import app_state
from widget_server.errors import WidgetError

FIELDS = {"message", "conversation_id", "visitor_id"}


async def _conversation(request: Request) -> tuple[Conversation, dict[str, Any]]:
    tenant_id, persona = await tenant_and_persona(request, request.path_params["id"])
    body = only_fields(await json_body(request), FIELDS, {"message"})
    conv = await conversations.open_api(app_state(request).deps, tenant_id, request.path_params["id"],
                                        body["message"], body.get("conversation_id"), body.get("visitor_id"),
                                        persona=persona)
    return conv, body


async def prompt(request: Request) -> Response:
    conv, body = await _conversation(request)
    reply = await run_turn(app_state(request).deps, conv, body["message"], None, lambda frame: None)
    if (error := prompt_answer.failure(conv.id, reply)) is not None:
        raise error
    return JSONResponse(prompt_answer.answer(conv.id, reply))


def sse(frame: dict[str, Any]) -> str:
    return f"event: {frame['type']}\ndata: {json.dumps(frame, separators=(',', ':'))}\n\n"


async def prompt_stream(request: Request) -> Response:
    conv, body = await _conversation(request)
    d = app_state(request).deps
    queue: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue()

    def emit(frame: dict[str, Any]) -> None:
        queue.put_nowait({**frame, "conversation_id": conv.id} if frame["type"] == "message.accepted" else frame)

    async def turn() -> None:
        try:
            await run_turn(d, conv, body["message"], None, emit)
        except WidgetError as exc:
            emit(exc.frame())
        finally:
            queue.put_nowait(None)

    async def events() -> AsyncIterator[str]:
        task = asyncio.create_task(turn())
        try:
            while (frame := await queue.get()) is not None:
                yield sse(frame)
        finally:
            if not task.done():  # the client went away: stop the provider (the reply is stored as cancelled)
                task.cancel()
                with contextlib.suppress(BaseException):
                    await task

    headers = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no", "X-Conversation-Id": conv.id}
    return StreamingResponse(events(), media_type="text/event-stream", headers=headers)
