"""The console's Playground (`/console/playground`): a console user chats with a persona through the widget's own
turn (`domain/chat/turn.run_turn`: the input check, the same provider call, the streamed output check, messages
stored, events recorded on channel `console`), streamed as Server-Sent Events to a `fetch` in the page.

- `POST /console/playground/turn` `{"persona", "message", "conversation_id"?, "draft"?}` answers
  `text/event-stream`: the turn's frames as the widget gets them (`message.accepted`, `reply.delta`,
  `guardrail`, `reply.end`, `error`…), then `trace`: every rule that fired, how the topics scored the message
  against the thresholds, whether the model was called, timing and tokens, and what a test case would expect.
  A bad body is a JSON error before any stream starts.
- A `draft` (`system_prompt`, `greeting`, `topics` and `policy` as YAML) runs the turn against the persona and
  the policy as drafted, through a `DraftGuard`: validated and compiled as if saved, and saved nowhere.
- `POST /console/playground/cases` saves an exchange as a test case (`testcases`).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
from collections.abc import AsyncIterator
from typing import Any

import yaml
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import BaseRoute, Route

from widget_server.domain import personas
from widget_server.domain.chat import conversations
from widget_server.domain.chat.deps import Deps
from widget_server.domain.chat.turn import Reply, run_turn
from widget_server.domain.guardrails import pii
from widget_server.domain.guardrails.tenant_guard import STORED
from widget_server.edges.console import testcases
from widget_server.edges.console.auth import console_page, user_of
from widget_server.edges.console.render import page
from widget_server.edges.http import json_body, only_fields
from widget_server.edges.prompt import sse
from widget_server.edges.state import app_state
from widget_server.errors import InvalidRequest, PersonaNotFound, PolicyError, WidgetError
from widget_server.text import unstorable

log = logging.getLogger(__name__)
FIELDS = {"persona", "message", "conversation_id", "draft"}
DRAFT_LIMITS = {"system_prompt": 20000, "greeting": 2000, "topics": 100_000, "policy": 200_000}


def reference(value: Any, field: str, longest: int = 80) -> str:
    """An id (or slug) from a body: text of 1 to `longest` characters that storage can look up."""
    if not isinstance(value, str) or not 1 <= len(value) <= longest or unstorable(value):
        raise InvalidRequest(f"{field} must be an id of at most {longest} characters", details={"field": field})
    return value


async def body_of(request: Request, allowed: set[str], required: set[str]) -> dict[str, Any]:
    """The JSON object of the body with only `allowed` fields and every `required` one. A field name that cannot
    be encoded is unknown too, and refused before `only_fields` would echo it into an error body it breaks."""
    body = await json_body(request)
    if isinstance(body, dict) and any(unstorable(k) for k in body):
        raise InvalidRequest("unknown field: a name with a lone surrogate or a NUL")
    return only_fields(body, allowed, required)


def visitor_of(request: Request) -> str:
    """The visitor id of a console user's playground conversations: theirs alone."""
    return f"console:{user_of(request).user_id}"


def to_yaml(value: Any) -> str:
    return "" if not value else yaml.safe_dump(value, sort_keys=False, allow_unicode=True, width=100)


def load_yaml(text: str, field: str) -> Any:
    """A draft's YAML as data (None when blank); aliases are refused (a few lines of them expand to gigabytes)."""
    if not text.strip():
        return None
    try:
        if any(isinstance(e, yaml.AliasEvent) for e in yaml.parse(text, Loader=yaml.CSafeLoader)):
            raise InvalidRequest(f"draft {field}: YAML aliases (*name) are not accepted", code="request.invalid_yaml",
                                 details={"draft": field, "errors": [{"field": field, "message": "no aliases"}]})
        return yaml.load(text, Loader=yaml.CSafeLoader)  # noqa: S506 (the C twin of safe_load)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark is not None else ""
        problem = f"{getattr(exc, 'problem', None) or 'not valid YAML'}{where}"
        raise InvalidRequest(f"draft {field} is not valid YAML: {problem}", code="request.invalid_yaml",
                             details={"draft": field, "errors": [{"field": field, "message": problem}]}) from None
    except RecursionError:
        raise InvalidRequest(f"draft {field} is nested too deeply", code="request.invalid_yaml",
                             details={"draft": field, "errors": [{"field": field, "message": "too deep"}]}) from None


def _draft_fields(draft: Any) -> dict[str, str]:
    if not isinstance(draft, dict):
        raise InvalidRequest("draft must be an object", details={"draft": "(draft)"})
    out = {}
    for name, value in draft.items():
        if name not in DRAFT_LIMITS:
            raise InvalidRequest(f"unknown draft field: {str(name)[:40]!r}", details={"draft": "(draft)"})
        if not isinstance(value, str) or len(value) > DRAFT_LIMITS[name]:
            raise InvalidRequest(f"draft {name} must be text of at most {DRAFT_LIMITS[name]} characters",
                                 details={"draft": name, "errors": [{"field": name, "message": "too long"}]})
        out[name] = conversations.check_text(value, name, code="request.invalid")
    return out


async def drafted(deps: Deps, persona: dict[str, Any], draft: Any) -> tuple[Deps, dict[str, Any]]:
    """The deps and the persona row a turn against `draft` runs with: its guard has the drafted policy and topics
    in place of the stored ones, its persona the drafted prompt and greeting. Nothing is saved."""
    fields = _draft_fields(draft)
    policy = load_yaml(fields["policy"], "policy") if "policy" in fields else STORED
    topics = load_yaml(fields["topics"], "topics") if "topics" in fields else STORED
    try:
        guard = await deps.guard.draft(policy=policy, topics=topics)
    except PolicyError as exc:
        raise PolicyError(f"draft policy: {exc.message}", details={"draft": "policy", **exc.details},
                          code=exc.code) from None
    except WidgetError as exc:
        raise type(exc)(f"draft {exc.message}", details={"draft": "topics", **exc.details}, code=exc.code) from None
    doc = dict(persona["doc"])
    for name in ("system_prompt", "greeting"):
        if name in fields:
            doc[name] = fields[name]
    if "topics" in fields:
        doc["topics"] = topics or {}
    return dataclasses.replace(deps, guard=guard), {**persona, "doc": doc}


def output_spans(reply: Reply) -> list[dict[str, Any]]:
    """Where the reply shows what the output check masked: the labels it put in the text."""
    labels = {pii.LABELS.get(g["reason"].removeprefix("pii."), "[redacted]"): g["reason"]
              for g in reply.guardrails if g["action"] == "mask" and g["source"] == "output" and g["reason"]}
    spans = []
    for label, reason in labels.items():
        at = reply.text.find(label)
        while at >= 0:
            spans.append({"start": at, "end": at + len(label), "reason": reason})
            at = reply.text.find(label, at + len(label))
    return sorted(spans, key=lambda s: s["start"])


def trace(reply: Reply) -> dict[str, Any]:
    """What the console shows beside a message: why it was decided so, and what the turn cost."""
    decision = reply.input
    return {
        "type": "trace", "message_id": reply.message_id, "rules": reply.guardrails,
        "topics": decision.topics.trace() if decision is not None and decision.topics is not None else None,
        "provider_called": reply.provider_called, "model": reply.model, "provider": reply.provider,
        "finish_reason": reply.finish_reason, "timing": reply.timing, "usage": reply.usage, "error": reply.error,
        "output_spans": output_spans(reply), "expect": testcases.observed(reply)}


@console_page("read")
async def index(request: Request) -> Response:
    user = user_of(request)
    storage = app_state(request).deps.storage
    rows = await storage.list_personas(user.tenant_id, limit=personas.MAX_PERSONAS)
    ref = request.query_params.get("persona")
    chosen = rows[0] if rows and not ref else None
    if ref:
        chosen = await storage.get_persona(user.tenant_id, ref[:80])
        if chosen is None:
            raise PersonaNotFound("no such persona")
    policy = await storage.get_policy(user.tenant_id)
    doc = chosen["doc"] if chosen else {}
    topics = doc.get("topics") or {}
    return page(request, "playground.html", title="Playground", personas=rows, persona=chosen,
                can_converse=user.can("converse"), topics_yaml=to_yaml(topics if topics != {} else None),
                policy_yaml=to_yaml(policy["doc"]) if policy else "")


@console_page("converse")
async def turn(request: Request) -> Response:
    user = user_of(request)
    deps = app_state(request).deps
    body = await body_of(request, FIELDS, {"persona", "message"})
    persona = await personas.get(deps.storage, user.tenant_id, reference(body["persona"], "persona"))
    conversation_id = body.get("conversation_id")
    if conversation_id is not None:
        reference(conversation_id, "conversation_id", 40)
    message = conversations.check_message(body["message"], deps.settings.max_message_chars)
    run_deps, row = (deps, persona) if body.get("draft") is None else await drafted(deps, persona, body["draft"])
    conv = await conversations.open_console(deps, user.tenant_id, row, visitor_of(request), conversation_id)
    queue: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue()

    def emit(frame: dict[str, Any]) -> None:
        queue.put_nowait({**frame, "conversation_id": conv.id} if frame["type"] == "message.accepted" else frame)

    async def run() -> None:
        try:
            reply = await run_turn(run_deps, conv, message, None, emit)
            emit(trace(reply))
        except WidgetError as exc:
            emit(exc.frame())
        except Exception:
            log.exception("playground turn failed", extra={"conversation_id": conv.id})
            emit(WidgetError("server error").frame(retryable=True))
        finally:
            queue.put_nowait(None)

    async def events() -> AsyncIterator[str]:
        task = asyncio.create_task(run())
        try:
            yield sse({"type": "conversation", "conversation_id": conv.id})
            while (frame := await queue.get()) is not None:
                yield sse(frame)
        finally:
            if not task.done():  # the page went away: the reply is stored as cancelled
                task.cancel()
                with contextlib.suppress(BaseException):
                    await task

    headers = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no", "X-Conversation-Id": conv.id}
    return StreamingResponse(events(), media_type="text/event-stream", headers=headers)


@console_page("converse")
async def save_case(request: Request) -> Response:
    """`{"persona", "name", "turns": [{"visitor", "expect"}]}`: the exchange as a test case of the persona."""
    user = user_of(request)
    body = await body_of(request, {"persona", "name", "turns"}, {"persona", "name", "turns"})
    persona = await personas.get(app_state(request).deps.storage, user.tenant_id, reference(body["persona"], "persona"))
    case = testcases.parse_case({"name": body["name"], "turns": body["turns"]})
    row = await testcases.save(request, persona["id"], case)
    return JSONResponse({"id": row["id"], "name": row["name"], "url": f"/console/tests/{row['id']}"},
                        status_code=201)


ROUTES: list[BaseRoute] = [
    Route("/console/playground", index, methods=["GET"]),
    Route("/console/playground/turn", turn, methods=["POST"]),
    Route("/console/playground/cases", save_case, methods=["POST"]),
]
