"""The OpenAI-compatible endpoint: `/v1/openai/chat/completions` (streaming and not), `/models`, `/embeddings`.

The secret key is the bearer token (any OpenAI client's `api_key`); `model` is a persona's slug or id. A turn is the
widget's turn (`domain/chat/completions`), so the guardrails apply as they do there, rendered in OpenAI's words:

- a refused message is an HTTP 400 `content_filter` (`x-should-retry: false`), decided before any byte of a
  stream is sent: a stream's response starts with its first text (or once the turn has ended without any), so
  there is no first token to wait for meanwhile;
- a reply stopped by an output rule, and an escalation, end with `finish_reason: "content_filter"` and the
  extension field `persona_guardrail` (`action`, `reason`, `source`, and `text`: what the widget shows instead);
  `persona_guardrails` lists every decision of the turn (masks included) when there was one;
- masks are applied to the text returned, as to the widget's.

Each call is its own conversation on channel `openai` unless `X-Persona-Conversation-Id` names a stored one; the
answer's `X-Persona-Conversation-Id` says which. Requests count against the tenant's `openai` rate limit.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse

from widget_server.domain import personas
from widget_server.domain import sentence_embeddings as embeddings
from widget_server.domain.chat import completions
from widget_server.domain.chat.completions import ChatCall
from widget_server.domain.chat.conversations import Conversation
from widget_server.domain.chat.turn import Reply
from widget_server.edges.http import json_body, key_seen, tenant_and_persona, tenant_of
from widget_server.edges.openai_errors import from_exception
from widget_server.edges.state import app_state
from widget_server.errors import (
    ContentFiltered,
    ProviderError,
    ProviderTimeout,
    UpstreamRefused,
    WidgetError,
)

CONVERSATION_HEADER = "X-Persona-Conversation-Id"
FINISH = {"stop": "stop", "length": "length", "guardrail": "content_filter"}


def _json(data: dict[str, Any]) -> str:
    return json.dumps(data, separators=(",", ":"))


async def _tenant(request: Request) -> str:
    tenant_id = await tenant_of(request)
    await app_state(request).deps.limits.enforce("openai", tenant_id, "too many requests to /v1/openai/")
    return tenant_id


def _raise_for(conv: Conversation, reply: Reply) -> None:
    """A refused message, or a provider that failed before any text, as the error the caller gets (the
    conversation, where both are stored, in the `X-Persona-Conversation-Id` header)."""
    if completions.refused(reply):
        raise ContentFiltered(reply.text, details={"persona_guardrail": _guardrail(reply), "conversation_id": conv.id})
    if reply.error:
        err_cls = {e.code: e for e in (ProviderTimeout, UpstreamRefused)}.get(reply.error["code"], ProviderError)
        raise err_cls(reply.error["message"], details={"conversation_id": conv.id})


def _guardrail(reply: Reply) -> dict[str, Any]:
    return {**(reply.guardrail or {}), "text": reply.text}


def _extensions(reply: Reply) -> dict[str, Any]:
    """`persona_guardrail` when the turn was stopped, `persona_guardrails` when anything was decided."""
    out: dict[str, Any] = {}
    if reply.finish_reason == "guardrail":
        out["persona_guardrail"] = _guardrail(reply)
    if reply.guardrails:
        out["persona_guardrails"] = reply.guardrails
    return out


def _usage(reply: Reply) -> dict[str, int]:
    prompt, completion = reply.usage["input_tokens"], reply.usage["output_tokens"]
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


async def _tenant_and_call(request: Request) -> tuple[str, ChatCall, dict[str, Any] | None]:
    """The tenant, the call, and its persona when read with the key (a key this node has seen work: its check and
    the persona read are one round trip, after the body). A key that has ended is told before a bad body."""
    deps = app_state(request).deps
    if not key_seen(request):
        tenant_id = await _tenant(request)
        return tenant_id, completions.parse_call(await json_body(request), deps.settings), None
    try:
        call = completions.parse_call(await json_body(request), deps.settings)
    except WidgetError:
        await _tenant(request)
        raise
    tenant_id, persona = await tenant_and_persona(request, call.model[:200])
    await deps.limits.enforce("openai", tenant_id, "too many requests to /v1/openai/")
    return tenant_id, call, persona if len(call.model) <= 200 else None


async def chat_completions(request: Request) -> Response:
    tenant_id, call, persona = await _tenant_and_call(request)
    deps = app_state(request).deps
    conv = await completions.open_call(deps, tenant_id, call, request.headers.get(CONVERSATION_HEADER), persona)
    if call.stream:
        return await _stream(request, conv, call)
    reply = await completions.run_call(deps, conv, call, lambda frame: None)
    _raise_for(conv, reply)
    message = {"role": "assistant", "content": reply.text, "refusal": None}
    body = {"id": f"chatcmpl-{reply.message_id}", "object": "chat.completion", "created": int(time.time()),
            "model": conv.persona["slug"], "system_fingerprint": None,
            "choices": [{"index": 0, "message": message, "logprobs": None,
                         "finish_reason": FINISH.get(reply.finish_reason, "stop")}],
            "usage": _usage(reply), **_extensions(reply)}
    return JSONResponse(body, headers={CONVERSATION_HEADER: conv.id})


class Chunks:
    """The `chat.completion.chunk`s of one reply, as OpenAI streams them."""

    def __init__(self, conv: Conversation, call: ChatCall) -> None:
        self.base: dict[str, Any] = {"id": "", "object": "chat.completion.chunk", "created": int(time.time()),
                                     "model": conv.persona["slug"], "system_fingerprint": None}
        if call.include_usage:
            self.base["usage"] = None  # OpenAI's: null on every chunk but the last, which has no choices
        self.include_usage = call.include_usage

    def of(self, delta: dict[str, Any], finish: str | None = None, **extra: Any) -> str:
        choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
        return f"data: {_json({**self.base, 'choices': [choice], **extra})}\n\n"

    def end(self, reply: Reply) -> str:
        out = self.of({}, FINISH.get(reply.finish_reason, "stop"), **_extensions(reply))
        if self.include_usage:
            out += f"data: {_json({**self.base, 'choices': [], 'usage': _usage(reply)})}\n\n"
        return out + "data: [DONE]\n\n"


async def _stream(request: Request, conv: Conversation, call: ChatCall) -> Response:
    deps = app_state(request).deps
    queue: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue()
    task = asyncio.create_task(completions.run_call(deps, conv, call, queue.put_nowait))
    task.add_done_callback(lambda _: queue.put_nowait(None))
    chunks = Chunks(conv, call)
    held: list[dict[str, Any]] = []
    while (frame := await queue.get()) is not None:  # up to the first text, or the end of a turn without any
        held.append(frame)
        if frame["type"] == "reply.start":
            chunks.base["id"] = f"chatcmpl-{frame['message_id']}"
        if frame["type"] == "reply.delta":
            break
    if frame is None:
        _raise_for(conv, task.result())  # a refused message, a failed provider (or the turn's own error) answer alone

    async def body() -> AsyncIterator[str]:
        try:
            yield chunks.of({"role": "assistant", "content": ""})
            for each in held:
                if each["type"] == "reply.delta":
                    yield chunks.of({"content": each["text"]})
            while frame is not None and (later := await queue.get()) is not None:
                if later["type"] == "reply.delta":
                    yield chunks.of({"content": later["text"]})
            try:
                reply = task.result()
            except WidgetError as exc:
                yield f"data: {_json(from_exception(exc))}\n\n"
                return
            if reply.error:  # after some text: OpenAI's stream error, which the SDK raises as APIError
                yield f"data: {_json(from_exception(ProviderError(reply.error['message'])))}\n\n"
                return
            yield chunks.end(reply)
        finally:
            if not task.done():  # the client went away: stop the provider (the reply is stored as cancelled)
                task.cancel()
                with contextlib.suppress(BaseException):
                    await task

    headers = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no", CONVERSATION_HEADER: conv.id}
    return StreamingResponse(body(), media_type="text/event-stream", headers=headers)


def _model(row: dict[str, Any]) -> dict[str, Any]:
    return {"id": row["slug"], "object": "model", "created": int(row["created_at"].timestamp()),
            "owned_by": row["tenant_id"]}


async def list_models(request: Request) -> Response:
    """The tenant's personas (at most 500), oldest first, each a model named by its slug."""
    tenant_id = await _tenant(request)
    rows = await app_state(request).deps.storage.list_personas(tenant_id)
    return JSONResponse({"object": "list", "data": [_model(r) for r in rows]})


async def get_model(request: Request) -> Response:
    tenant_id = await _tenant(request)
    row = await personas.get(app_state(request).deps.storage, tenant_id, request.path_params["model"])
    return JSONResponse(_model(row))


async def create_embeddings(request: Request) -> Response:
    await _tenant(request)
    call = embeddings.parse_call(await json_body(request))
    vectors, tokens = await embeddings.embed(call)
    return JSONResponse({"object": "list", "model": embeddings.MODEL,
                         "data": [{"object": "embedding", "index": i, "embedding": v} for i, v in enumerate(vectors)],
                         "usage": {"prompt_tokens": tokens, "total_tokens": tokens}})
