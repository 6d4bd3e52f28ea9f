"""The OpenAI-compatible operations of the OpenAPI document (`/v1/openai/…`): their bodies, answers and errors,
which are OpenAI's shapes, not the house's.

Requests are open objects (an OpenAI client sends fields this server ignores); the fields the server reads are
described as exactly as it checks them, so that schemathesis's valid requests are accepted and its invalid ones
refused. What a schema cannot say is said in words: the last message must be a non-blank `user` one within
`WIDGET_MAX_MESSAGE_CHARS`, and a `user` id must be printable (tests/support/schemathesis_hooks.py keeps the valid
requests valid there).
"""

from __future__ import annotations

from typing import Any

from widget_server.domain import sentence_embeddings as embeddings
from widget_server.domain.chat import completions
from widget_server.edges.openapi_components import (
    ANNOTATION,
    NO_CONTROLS,
    NULLABLE_STRING,
    STRING,
    Schema,
    obj,
    ref,
    visitor_id,
)
from widget_server.edges.query_params import NO_NUL

INTEGER: Schema = {"type": "integer"}
COUNT: Schema = {"type": "integer", "minimum": 0}
NULL: Schema = {"type": "null"}
TEXT: Schema = {"type": "string", "maxLength": completions.MAX_CONTENT_CHARS, "pattern": NO_CONTROLS,
                "description": "no control characters but tab and newlines, no bidi controls, no lone surrogates"}
ERRORS = {400: "Invalid or unsupported request (param names the parameter); content_filter: the guardrails "
               "refused the message (x-should-retry: false)",
          401: "No or a wrong secret key (invalid_api_key)", 404: "No such model (model_not_found) or conversation",
          409: "The conversation has ended, or a person has it", 413: "A body over 1 MiB",
          422: "The persona's model or endpoint is not allowed on this server",
          429: "Rate limited (rate_limit_exceeded)", 502: "The model's provider failed",
          503: "The embedding model is not installed", 504: "The model did not answer in time"}
RETRY_AFTER = {"Retry-After": {"description": "seconds until a request would be allowed", "required": True,
                               "schema": STRING}}
CONVERSATION = {"X-Persona-Conversation-Id": {"description": "the conversation this call is stored in",
                                              "required": True, "schema": STRING}}


def _errors(*codes: int) -> dict[str, Any]:
    return {str(code): {"description": ERRORS[code], "content": {"application/json": {"schema": ref("OpenAIError")}},
                        **({"headers": RETRY_AFTER} if code == 429 else {})} for code in codes}


def _json(schema: Schema, **extra: Any) -> dict[str, Any]:
    return {"description": "OK", "content": {"application/json": {"schema": schema}}, **extra}


def _op(summary: str, ok: dict[str, Any], codes: tuple[int, ...], body: Schema | None = None,
        **extra: Any) -> dict[str, Any]:
    op: dict[str, Any] = {"summary": summary, "tags": ["openai"], "responses": {"200": ok, **_errors(*codes)},
                          **extra}
    if body is not None:
        op["requestBody"] = {"required": True, "content": {"application/json": {"schema": body}}}
    return op


def openai_operations() -> dict[tuple[str, str], Any]:
    completion = {"description": "A chat.completion, or with stream: chat.completion.chunk events, then "
                                 "data: [DONE] (a last chunk with usage and no choices when "
                                 "stream_options.include_usage)",
                  "headers": CONVERSATION,
                  "content": {"application/json": {"schema": ref("ChatCompletion")},
                              "text/event-stream": {"schema": STRING}}}
    header = {"name": "X-Persona-Conversation-Id", "in": "header", "required": False, "schema": STRING,
              "description": "attach the call to this stored conversation of the persona (404 otherwise)"}
    return {
        ("/v1/openai/chat/completions", "post"): _op(
            "A persona as an OpenAI chat model (model: its slug or id); guardrails apply as on the widget",
            completion, (400, 401, 404, 409, 413, 422, 429, 502, 504), ref("ChatCompletionRequest"),
            parameters=[header]),
        ("/v1/openai/models", "get"): _op("The tenant's personas as models", _json(ref("ModelList")),
                                          (400, 401, 429)),
        ("/v1/openai/models/{model}", "get"): _op("A persona as a model (by slug or id)", _json(ref("Model")),
                                                  (400, 401, 404, 429)),
        ("/v1/openai/embeddings", "post"): _op(
            f"Sentence embeddings from the bundled {embeddings.MODEL} (384 dimensions, unit length; each input "
            "read up to its first 128 tokens)", _json(ref("EmbeddingList")),
            (400, 401, 404, 413, 429, 503), ref("EmbeddingRequest")),
    }


def _chat_request() -> Schema:
    part = {"type": "object", "required": ["type", "text"], "properties": {"type": {"const": "text"}, "text": TEXT}}
    message = {"type": "object", "required": ["role"], "properties": {
        "role": {"enum": ["system", "developer", "user", "assistant"],
                 "description": "tool and function messages are not supported"},
        "content": {"anyOf": [TEXT, {"type": "array", "minItems": 1, "maxItems": 16, "items": part}, NULL]},
        "tool_calls": {"type": ["array", "null"], "maxItems": 0}, "function_call": NULL, "name": STRING}}
    none: Schema = {"enum": ["none", None]}
    return {
        "type": "object", "required": ["model", "messages"],
        "description": "OpenAI's chat completion request. The last message is a user message, not blank, within "
                       "the server's message limit (WIDGET_MAX_MESSAGE_CHARS): the visitor's message of the turn; "
                       "the messages before it are the context; system and developer messages follow the "
                       "persona's system prompt (or are refused with WIDGET_OPENAI_SYSTEM_MESSAGES=refuse). "
                       "Sampling parameters (temperature, top_p, max_tokens, stop, seed…) are accepted and "
                       "ignored: the persona's provider settings decide; other fields are ignored too.",
        "properties": {
            "model": {"type": "string", "minLength": 1, "pattern": NO_NUL, "description": "a persona's slug or id"},
            "messages": {"type": "array", "minItems": 1, "maxItems": completions.MAX_MESSAGES, "items": message},
            "stream": {"type": ["boolean", "null"]},
            "stream_options": {"anyOf": [{"type": "object", "properties": {
                "include_usage": {"type": ["boolean", "null"]}}}, NULL]},
            "n": {"type": ["integer", "null"], "minimum": 1, "maximum": 1},
            "tools": {"type": ["array", "null"], "maxItems": 0, "description": "not supported: absent, null or []"},
            "functions": {"type": ["array", "null"], "maxItems": 0},
            "tool_choice": none, "function_call": none, "logprobs": {"enum": [False, None]}, "top_logprobs": NULL,
            "response_format": {"anyOf": [{"type": "object", "required": ["type"],
                                           "properties": {"type": {"const": "text"}}}, NULL]},
            "modalities": {"anyOf": [{"type": "array", "minItems": 1, "maxItems": 1, "items": {"const": "text"}},
                                     NULL]},
            "audio": NULL,
            "user": {**visitor_id(), "description": "the end user's id: the conversation's visitor id (printable)"},
        },
    }


def openai_schemas() -> dict[str, Schema]:
    guardrail = {**ANNOTATION, "properties": {**ANNOTATION["properties"], "text": {
        "type": "string", "description": "what the widget shows instead: the refusal, or the escalation notice"}},
        "required": [*ANNOTATION["required"], "text"]}
    extensions = {"persona_guardrail": guardrail, "persona_guardrails": {"type": "array", "items": ANNOTATION}}
    usage = obj(prompt_tokens=COUNT, completion_tokens=COUNT, total_tokens=COUNT)
    choice = obj(index=INTEGER, message=obj(role={"const": "assistant"}, content=STRING, refusal=NULL),
                 logprobs=NULL, finish_reason={"enum": ["stop", "length", "content_filter"]})
    completion = obj(["id", "object", "created", "model", "system_fingerprint", "choices", "usage"],
                     id=STRING, object={"const": "chat.completion"}, created=INTEGER, model=STRING,
                     system_fingerprint=NULL, choices={"type": "array", "items": choice}, usage=usage, **extensions)
    model = obj(id=STRING, object={"const": "model"}, created=INTEGER, owned_by=STRING)
    text = {"type": "string", "minLength": 1, "maxLength": embeddings.MAX_INPUT_CHARS}
    vector = {"anyOf": [{"type": "array", "items": {"type": "number"}},
                        {"type": "string", "description": "base64 of little-endian float32"}]}
    return {
        "OpenAIError": obj(["error"], error=obj(message=STRING, type=STRING, param=NULLABLE_STRING,
                                                code=NULLABLE_STRING), persona_guardrail=guardrail),
        "ChatCompletionRequest": _chat_request(),
        "ChatCompletion": completion,
        "Model": model,
        "ModelList": obj(object={"const": "list"}, data={"type": "array", "items": ref("Model")}),
        "EmbeddingRequest": {"type": "object", "required": ["model", "input"], "properties": {
            "model": {"type": "string", "description": f"{embeddings.MODEL} (any other: model_not_found)"},
            "input": {"anyOf": [text, {"type": "array", "minItems": 1, "maxItems": embeddings.MAX_INPUTS,
                                       "items": text}], "description": "text, not token arrays"},
            "encoding_format": {"enum": ["float", "base64", None]}, "dimensions": {"enum": [384, None]}}},
        "EmbeddingList": obj(object={"const": "list"}, model=STRING, usage=obj(prompt_tokens=COUNT,
                                                                               total_tokens=COUNT),
                             data={"type": "array", "items": obj(object={"const": "embedding"}, index=INTEGER,
                                                                 embedding=vector)}),
    }
