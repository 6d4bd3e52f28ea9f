"""The OpenAPI description of async prompt jobs and prompt sessions (`/v1/personas/{id}/prompt/jobs`,
`/v1/prompt/jobs…`, `/v1/prompt/sessions`): their operations and schemas, merged into the document by openapi.py."""

from __future__ import annotations

from typing import Any

from widget_server.domain.chat.sessions import API_CHANNELS
from widget_server.edges.openapi_components import (
    COUNT,
    NULLABLE_STRING,
    STRING,
    TIME,
    Schema,
    obj,
    ref,
    request_schemas,
)
from widget_server.settings import Settings

STATUSES = ["queued", "running", "succeeded", "failed", "cancelled"]
Errors = tuple[int, ...]


def _nullable(schema: Schema) -> Schema:
    return {"anyOf": [schema, {"type": "null"}]}


def prompt_job_schemas(settings: Settings) -> dict[str, Schema]:
    prompt = request_schemas(settings)["Prompt"]
    url = {"type": "string", "format": "uri", "maxLength": 2000, "pattern": "^https?://[^/?#]",
           "description": "http(s), no #fragment, a host that resolves only to public addresses (422 otherwise): "
                          "the job is POSTed there, signed as webhooks are, once it ends"}
    job = obj(id=STRING, status={"enum": STATUSES}, persona_id=STRING, conversation_id=NULLABLE_STRING,
              attempts={**COUNT, "description": "runs started: a job whose node stopped is run once more"},
              cancel_requested={"type": "boolean"}, created_at=TIME, started_at=_nullable(TIME),
              finished_at=_nullable(TIME),
              result={"anyOf": [ref("PromptAnswer"), {"type": "null"}],
                      "description": "once succeeded (or cancelled mid-reply): what POST …/prompt answers"},
              error={"anyOf": [ref("Error"), {"type": "null"}], "description": "once failed: the error body"},
              callback=_nullable(obj(url=STRING, state={"enum": ["pending", "delivered", "failed", None]},
                                     attempts=COUNT)))
    created = {**job, "properties": {**job["properties"], "callback_secret": {
        "type": "string", "description": "with a callback_url only, and only here: the secret of its Widget-Signature",
    }}}
    last = obj(role={"enum": ["visitor", "persona", "agent", "system"]}, text=STRING, created_at=TIME)
    session = obj(id=STRING, persona_id=STRING, visitor_id=STRING, channel={"enum": list(API_CHANNELS)},
                  status={"enum": ["bot", "escalated", "agent", "closed"]}, created_at=TIME, updated_at=TIME,
                  last_message=_nullable(last), counts=obj(messages=COUNT, visitor_turns=COUNT))
    return {
        "PromptJobBody": {**prompt, "properties": {**prompt["properties"], "callback_url": _nullable(url)}},
        "PromptJob": job,
        "PromptJobCreated": created,
        "PromptJobPage": obj(data={"type": "array", "items": ref("PromptJob")}, next_cursor=NULLABLE_STRING),
        "PromptSessionPage": obj(data={"type": "array", "items": session}, next_cursor=NULLABLE_STRING),
    }


def prompt_job_operations(op: Any, json: Any, found: Errors, read: Errors, write: Errors) -> dict[tuple[str, str], Any]:
    """The operations, made with openapi.py's helpers (passed in: this module is imported by it)."""
    accepted = {**json(ref("PromptJobCreated"), "Accepted"), "headers": {"Location": {
        "description": "the job's URL", "required": True, "schema": STRING}}}
    return {
        ("/v1/personas/{id}/prompt/jobs", "post"): op(
            "Run a prompt in the background: 202 with the job (queued), checked as POST …/prompt checks its body "
            "(404 persona or conversation, 409 a closed or taken-over conversation, 422 a callback_url whose host "
            "is not public)", {"202": accepted}, (*found, 409, *write, 422), ref("PromptJobBody")),
        ("/v1/prompt/jobs", "get"): op("The tenant's prompt jobs, newest first",
                                       {"200": json(ref("PromptJobPage"))}, read),
        ("/v1/prompt/jobs/{id}", "get"): op("A prompt job: its status and, once it ended, its result or error",
                                            {"200": json(ref("PromptJob"))}, found),
        ("/v1/prompt/jobs/{id}/cancel", "post"): op(
            "Cancel a job: a queued one at once (200); a running one's reply is stopped and stored as cancelled "
            "(200 once it ended, 202 while the node running it stops it). 409 prompt_job.ended: it had ended",
            {"200": json(ref("PromptJob")), "202": json(ref("PromptJob"), "Accepted")}, (*found, 409)),
        ("/v1/prompt/sessions", "get"): op(
            "The tenant's prompt sessions (conversations on the api and openai channels), newest first, each with "
            "its last message and counts", {"200": json(ref("PromptSessionPage"))}, read),
    }
