"""The schemas of the OpenAPI document: request bodies from the domain's pydantic models (so the document says
what validation accepts), and the shapes the endpoints answer with.

`PersonaBody` is what a tenant writes; `Persona` is what the API answers (the same fields, all present, with the
id and the timestamps); `PersonaPatch` is a JSON Merge Patch of one (any field, `null` putting it back to its
default). A response schema forbids unknown fields, so a field added to an answer must be added here too.
"""

from __future__ import annotations

import copy
from typing import Any

from widget_server.domain import keys
from widget_server.domain.analytics.query import EVENT_TYPES
from widget_server.domain.chat.conversations import BIDI, MAX_VISITOR_ID
from widget_server.domain.guardrails.policy import Policy
from widget_server.domain.personas import SLUG, PersonaBody
from widget_server.domain.testing import personas as test_personas
from widget_server.settings import Settings

Schema = dict[str, Any]
REF = "#/components/schemas/{model}"
STRING: Schema = {"type": "string"}
NULLABLE_STRING: Schema = {"type": ["string", "null"]}
TIME: Schema = {"type": "string", "format": "date-time"}
INTEGER: Schema = {"type": "integer"}
COUNT: Schema = {"type": "integer", "minimum": 0}


def ref(name: str) -> Schema:
    return {"$ref": REF.format(model=name)}


def obj(required: list[str] | None = None, /, **properties: Schema) -> Schema:
    """A closed object: these properties, the ones named required (all of them unless said)."""
    return {"type": "object", "additionalProperties": False, "properties": properties,
            "required": list(properties) if required is None else required}


def _persona(body: Schema) -> Schema:
    props = {"id": STRING, **body["properties"], "slug": {"type": "string"}, "created_at": TIME, "updated_at": TIME}
    return {"type": "object", "additionalProperties": False, "properties": props, "required": list(props)}


def _nullable(schema: Schema) -> Schema:
    return {"anyOf": [schema, {"type": "null"}]}


def _merge_patch(schema: Schema, defs: dict[str, Schema], *, keep: frozenset[str] = frozenset()) -> Schema:
    """The JSON Merge Patch (RFC 7386) of an object: no field required, and `null` removes a field (its default
    applies), except for the fields in `keep`, which cannot be removed. Objects within merge the same way."""
    props: dict[str, Schema] = {}
    for name, prop in schema["properties"].items():
        target = defs.get(prop.get("$ref", "").rsplit("/", 1)[-1], prop)
        patch = _merge_patch(target, defs) if target.get("type") == "object" and "properties" in target else prop
        props[name] = patch if name in keep else _nullable(patch)
    return {"type": "object", "additionalProperties": False, "properties": props}


def error() -> Schema:
    types = ["invalid_request", "auth", "not_found", "conflict", "policy", "rate_limit", "provider", "internal"]
    return obj(error=obj(code=STRING, message=STRING, type={"enum": types}, request_id=STRING,
                         details={"type": "object"}))


def persona_schemas() -> dict[str, Schema]:
    body = PersonaBody.model_json_schema(ref_template=REF)
    defs: dict[str, Schema] = body.pop("$defs", {})
    # What PersonaBody's validators check, said in the schema: surrounding whitespace is trimmed first (so a name
    # needs something else), a slug's shape, an http(s) avatar URL (empty: none).
    props = body["properties"]
    props["name"]["pattern"] = f"[^{char_class(TRIMMED)}]"
    props["slug"]["anyOf"][0]["pattern"] = SLUG.pattern
    props["avatar_url"]["anyOf"][0]["pattern"] = "^(?:https?://|$)"
    body["description"] += " Surrounding whitespace is trimmed from every string."
    patch = _merge_patch(body, defs, keep=frozenset(body["required"]))
    patch["description"] = ("A JSON Merge Patch of a persona: the fields given replace the persona's, objects "
                            "merge field by field, and null puts a field back to its default (name cannot be).")
    return {**defs, "PersonaBody": body, "Persona": _persona(copy.deepcopy(body)), "PersonaPatch": patch,
            "PersonaFile": _persona_file(copy.deepcopy(body))}


def _persona_file(body: Schema) -> Schema:
    """An exported persona (domain.persona_files): its slug and every field, no id; imported as a PersonaBody."""
    props = {"slug": {"type": "string"}, **{k: v for k, v in body["properties"].items() if k != "slug"}}
    return {"type": "object", "additionalProperties": False, "properties": props, "required": list(props),
            "description": "A persona as `widget-server persona export` prints it (a provider api_key never: null, "
                           "api_key_set says whether one is stored); POST /v1/personas/import reads it back."}


def test_persona_schemas() -> dict[str, Schema]:
    """A test persona as written (`TestPersonaBody`), as answered, and a page of them. Header names are tokens and
    values printable ASCII; the JSON Schema cannot say that names are compared without case, nor which names the
    runner sets itself (`RESERVED`): both are said in the description and answered 422."""
    body = test_personas.TestPersonaBody.model_json_schema(ref_template=REF)
    props = body["properties"]
    props["name"]["pattern"] = f"[^{char_class(TRIMMED)}]"
    props["headers"] |= {
        "propertyNames": {"pattern": test_personas.HEADER_NAME.pattern.replace("\\Z", "$")},
        "additionalProperties": {"type": "string", "pattern": "^(?:[!-~](?:[ -~]{0,998}[!-~])?)?$"},
        "description": "headers the simulated visitor's requests carry: RFC 9110 token names, each at most once "
                       "whatever its case, printable ASCII values without surrounding spaces; not one the runner "
                       "sets (" + ", ".join(sorted(test_personas.RESERVED)) + ", Sec-WebSocket-*)"}
    body["description"] = ("A simulated visitor that drives a test conversation (issue 15); names are unique per "
                           "tenant, compared case-insensitively. Surrounding whitespace is trimmed from the text "
                           "fields.")
    image = {**NULLABLE_STRING, "description": "the generated avatar's URL (generate-image), else null"}
    fields = {"id": STRING, **copy.deepcopy(props), "avatar_url": image, "imageUrl": image, "created_at": TIME,
              "updated_at": TIME}
    answer = {"type": "object", "additionalProperties": False, "properties": fields, "required": list(fields)}
    return {"TestPersonaBody": body, "TestPersona": answer,
            "TestPersonaList": obj(data={"type": "array", "items": ref("TestPersona")}, next_cursor=NULLABLE_STRING)}


def policy_schemas() -> dict[str, Schema]:
    policy = Policy.model_json_schema(ref_template=REF)
    defs: dict[str, Schema] = policy.pop("$defs", {})
    defs["BlockedTerms"]["properties"]["terms"]["items"]["pattern"] = NOT_BLANK  # BlockedTerms._no_blank_terms
    return {**defs, "Policy": policy, "PolicyDocument": obj(policy=ref("Policy"), updated_at=TIME)}


def event_schemas() -> dict[str, Schema]:
    ids = {k: NULLABLE_STRING for k in ("persona_id", "conversation_id", "visitor_id", "channel")}
    event = obj(id=STRING, ts=TIME, tenant_id=STRING, **ids, type={"enum": list(EVENT_TYPES)},
                schema_version=INTEGER, attributes={"type": "object"})
    page = obj(data={"type": "array", "items": ref("Event")}, next_cursor=STRING, has_more={"type": "boolean"})
    day = obj(day={"type": "string", "format": "date"}, conversations=COUNT, messages=COUNT)
    share = {"type": ["number", "null"], "minimum": 0, "maximum": 1}
    ms = obj(p50={"type": ["number", "null"]}, p95={"type": ["number", "null"]}, count=COUNT)
    takeover = obj(escalations=COUNT, conversations_escalated=COUNT, handoff_rate=share, unclaimed=COUNT,
                   unclaimed_share=share, time_to_claim_ms=ms, time_to_resolve_ms=ms, reopened=COUNT,
                   reopen_rate=share)
    summary = obj(**{"from": _nullable(TIME), "to": _nullable(TIME)}, persona_id=NULLABLE_STRING,
                  conversations=COUNT, messages=COUNT, replies=COUNT, days={"type": "array", "items": day},
                  ttft_ms=obj(p50={"type": ["number", "null"]}, p95={"type": ["number", "null"]}, replies=COUNT),
                  tokens=obj(input=COUNT, output=COUNT),
                  guardrails=obj(triggered=COUNT, by_reason={"type": "object", "additionalProperties": COUNT}),
                  escalations=obj(triggered=COUNT, resolved=COUNT), takeover=takeover,
                  feedback=obj(up=COUNT, down=COUNT), errors=COUNT)
    retention = obj(retention_days={"type": ["integer", "null"]}, effective_days={"type": ["integer", "null"]})
    erased = obj(visitor_id=STRING, deleted={"type": "object", "additionalProperties": COUNT})
    return {"Event": event, "EventPage": page, "Summary": summary, "Retention": retention, "Erasure": erased}


def char_class(chars: str) -> str:
    """A regular-expression character class body for these characters, as \\uXXXX ranges (read alike by
    ECMA-262, Python and Rust)."""
    points = sorted({ord(c) for c in chars})
    ranges: list[list[int]] = []
    for p in points:
        if ranges and p == ranges[-1][1] + 1:
            ranges[-1][1] = p
        else:
            ranges.append([p, p])
    return "".join(f"\\u{a:04x}" if a == b else f"\\u{a:04x}-\\u{b:04x}" for a, b in ranges)


# What the domain refuses in a visitor's message: control characters (tab and newlines aside) and bidi controls
# (conversations.check_text); and a message must have something besides whitespace (str.strip's whitespace).
_CONTROLS = "".join(chr(c) for c in (*range(0x20), *range(0x7f, 0xa0)) if chr(c) not in "\t\n\r")
NO_CONTROLS = f"^[^{char_class(_CONTROLS + ''.join(BIDI))}]*$"
_SPACE = "".join(chr(c) for c in range(0x3001) if chr(c).isspace())  # what str.strip() removes
NOT_BLANK = f"[^{char_class(_SPACE)}]"
TRIMMED = _SPACE.translate(dict.fromkeys(range(0x1c, 0x20)))  # what pydantic's str_strip_whitespace removes
STREAM_EVENTS = ("message.accepted", "reply.start", "reply.delta", "reply.end", "guardrail", "escalation", "error")
SPAN = obj(["start", "end"], start={"type": "integer", "minimum": 0}, end={"type": "integer", "minimum": 0})
ANNOTATION = obj(["action", "reason", "source"], action={"enum": ["refuse", "mask", "escalate", "block"]},
                 reason=NULLABLE_STRING, source={"enum": ["input", "output"]},
                 spans={"type": "array", "items": SPAN,
                        "description": "a mask's stretches of the visitor's message as written, [start, end) in "
                                       "code points (input masks)"})


def visitor_id() -> Schema:
    return _nullable({"type": "string", "minLength": 1, "maxLength": MAX_VISITOR_ID, "pattern": NO_CONTROLS,
                      "description": "printable characters (no control, format or bidi characters); "
                                     "null or absent: a new visitor"})


def request_schemas(settings: Settings) -> dict[str, Schema]:
    message = {"type": "string", "minLength": 1, "maxLength": settings.max_message_chars,
               "allOf": [{"pattern": NO_CONTROLS}, {"pattern": NOT_BLANK}],
               "description": "the visitor's message: not blank; no control characters but tab and newlines, "
                              "no bidi controls, no lone surrogates"}
    name = {"type": "string", "minLength": 1, "maxLength": 80, "allOf": [{"pattern": NO_CONTROLS},
                                                                      {"pattern": NOT_BLANK}]}
    agent = obj(["id", "name"], id={**name, "description": "the agent's id in the integration"},
                name={**name, "description": "shown to the visitor"},
                avatar_url={"type": "string", "maxLength": 500, "allOf": [{"pattern": NO_CONTROLS},
                                                                          {"pattern": "^https://"}]})
    user = obj(["id"], id=STRING, name=STRING, email=STRING, hash={
        "type": "string", "description": "hex HMAC-SHA256 of id under the tenant's identity secret"})
    return {
        "Prompt": obj(["message"], message=message, conversation_id=_nullable(STRING), visitor_id=visitor_id()),
        "Claim": obj(["agent"], agent=agent),
        "AgentMessage": obj(["text", "agent"], text=message, agent=agent,
                            internal={"type": "boolean", "default": False}),
        "Resolve": obj([], note=_nullable({"type": "string", "maxLength": 2000}), agent=_nullable(agent)),
        "Close": obj([], agent=_nullable(agent)),
        "WebhookBody": obj(["url"], url={"type": "string", "format": "uri", "maxLength": 2000,
                                         "pattern": "^https?://[^/?#]", "description": "http(s), no #fragment"},
                           event_types={"type": "array", "minItems": 1, "default": ["*"], "description": "* for all",
                                        "items": {"enum": ["*", *EVENT_TYPES]}}),
        "WidgetSessionBody": obj(["key", "persona"], key={"type": "string", "description": "a pk_… key"},
                                 persona={"type": "string", "description": "slug or id"}, visitor_id=visitor_id(),
                                 user=_nullable(user)),
    }


def test_run_schemas() -> dict[str, Schema]:
    status = {"enum": ["queued", "running", "passed", "failed", "error"]}
    summary = {"type": ["object", "null"], "description": "cases, passed, failed, errors (once it ended)"}
    run = obj(id=STRING, suite=STRING, status=status, source={"enum": ["api", "console"]},
              options=obj(["repeat", "only"], repeat={"type": "integer"}, only=NULLABLE_STRING,
                          no_judge={"type": "boolean"}, strict_judge={"type": "boolean"}), summary=summary,
              error=NULLABLE_STRING, created_at=TIME, started_at=_nullable(TIME), finished_at=_nullable(TIME),
              result={"type": ["object", "null"], "description": "the report, as `widget-server test --json`"})
    listed = {**run, "properties": {k: v for k, v in run["properties"].items() if k != "result"},
              "required": [k for k in run["required"] if k != "result"]}
    return {
        "TestRunBody": {**obj([], suite={"type": "object", "description": "the suite document: it must load as "
                                                                          "GET /v1/test-suites/schema describes it "
                                                                          "(a 400 names the field otherwise)"},
                              persona={"type": "string", "minLength": 1, "maxLength": 80,
                                       "description": "run this persona's saved test cases (its slug or id)"},
                              repeat={"type": "integer", "minimum": 1, "maximum": 10, "default": 1},
                              only={"type": "string", "minLength": 1, "maxLength": 200},
                              no_judge={"type": "boolean", "default": False,
                                        "description": "skip the judged assertions (--no-judge)"},
                              strict_judge={"type": "boolean", "default": False, "description":
                                            "a judged assertion skipped or failed fails the run (--strict-judge); "
                                            "not with no_judge"}),
                        "oneOf": [{"required": ["suite"]}, {"required": ["persona"]}]},
        "TestRun": run,
        "TestRunEvent": obj(["event", "data"], event={"enum": ["run", "status", "progress", "done"]}, data={
            "type": "string", "contentMediaType": "application/json",
            "description": "run: the run as listed; progress: {case, status, done, total}; done: {status, summary}"}),
        "TestRunPage": obj(data={"type": "array", "items": listed}, next_before=NULLABLE_STRING),
    }


def response_schemas() -> dict[str, Schema]:
    conversation = obj(id=STRING, persona_id=STRING, visitor_id=STRING,
                       channel={"enum": ["widget", "api", "openai", "mcp", "console", "test"]},
                       status={"enum": ["bot", "escalated", "agent", "closed"]}, created_at=TIME, updated_at=TIME,
                       escalated_at=_nullable(TIME), escalation_reason=NULLABLE_STRING,
                       agent=_nullable(obj(id=STRING, name=STRING)), claimed_at=_nullable(TIME),
                       visitor_online={"type": ["boolean", "null"],
                                       "description": "while escalated or with an agent: the widget is connected"},
                       visitor_seen_at=_nullable(TIME))
    message = obj(id=STRING, role={"enum": ["visitor", "persona", "agent", "system"]}, text=STRING,
                  finish_reason=NULLABLE_STRING, guardrail=_nullable(ANNOTATION), usage={"type": ["object", "null"]},
                  timing={"type": ["object", "null"]},
                  agent=_nullable(obj(["id", "name"], id=STRING, name=STRING, avatar_url=STRING)),
                  internal={"type": "boolean"}, created_at=TIME,
                  feedback=_nullable(obj(rating={"enum": ["up", "down"]}, comment=NULLABLE_STRING)))
    webhook = {"id": STRING, "url": STRING, "event_types": {"type": "array", "items": STRING}, "created_at": TIME}
    attempt = obj(id=STRING, webhook_id=STRING, event_id=STRING, event_type=STRING, attempt=COUNT,
                  outcome={"enum": ["delivered", "retrying", "failed"]}, status_code={"type": ["integer", "null"]},
                  error=NULLABLE_STRING, duration_ms=COUNT, created_at=TIME)
    answer = obj(["conversation_id", "message_id", "text", "finish_reason", "usage", "timing", "guardrails"],
                 conversation_id=STRING, message_id=STRING, text=STRING,
                 finish_reason={"enum": ["stop", "length", "guardrail", "cancelled", "error"]},
                 usage=obj(input_tokens=COUNT, output_tokens=COUNT),
                 timing=obj(ttft_ms={"type": ["integer", "null"]}, total_ms=COUNT),
                 guardrails={"type": "array", "items": ANNOTATION}, guardrail=ANNOTATION)
    shown = obj(name=STRING, avatar_url=NULLABLE_STRING, greeting=STRING, starters={"type": "array", "items": STRING})
    part = {"type": "object", "required": ["status"], "properties": {"status": STRING}}
    return {
        "PersonaList": obj(data={"type": "array", "items": ref("Persona")}, next_cursor=NULLABLE_STRING),
        "PromptAnswer": answer,
        "PromptEvent": obj(["event", "data"], event={"enum": list(STREAM_EVENTS)}, data={
            "type": "string", "contentMediaType": "application/json", "description": "the frame, with its type"}),
        "Conversation": conversation,
        "ConversationPage": obj(data={"type": "array", "items": ref("Conversation")}, next_cursor=NULLABLE_STRING),
        "Message": {**message, "properties": {k: v for k, v in message["properties"].items() if k != "feedback"},
                    "required": [k for k in message["required"] if k != "feedback"]},
        "ConversationDetail": {**conversation, "properties": {**conversation["properties"], "messages": {
            "type": "array", "items": message}}, "required": [*conversation["required"], "messages"]},
        "Webhook": obj(**webhook),
        "WebhookCreated": obj(**webhook, secret=STRING),
        "WebhookList": obj(data={"type": "array", "items": ref("Webhook")}),
        "AttemptPage": obj(data={"type": "array", "items": attempt}, next_cursor=NULLABLE_STRING,
                           has_more={"type": "boolean"}),
        "WidgetSession": obj(token=STRING, expires_at=TIME, ws_url=STRING, visitor_id=STRING, persona=shown),
        "Health": obj(status={"enum": ["ok", "degraded", "error"]}, version=STRING, storage=part, provider=part,
                      events=obj(status={"enum": ["ok", "retrying"]}, pending=COUNT),
                      bus=obj(status={"enum": ["ok", "reconnecting"]}, kind={"enum": ["memory", "redis"]})),
    }


def key_schemas() -> dict[str, Schema]:
    stamp: Schema = {"type": ["string", "null"], "format": "date-time"}
    quota: Schema = {"type": ["integer", "null"], "minimum": 0, "maximum": keys.MAX_PERSONA_QUOTA,
                     "description": "GET /v1/persona requests a month (null: the server's default)"}
    key = dict(id=STRING, kind={"enum": list(keys.KINDS)}, hint=STRING, origins={"type": "array", "items": STRING},
               created_at=TIME, expires_at=stamp, revoked_at=stamp, persona_quota=quota)
    origins = {"type": "array", "items": {"type": "string", "pattern": "^[^\\u0000]*$"}, "minItems": 1,
               "maxItems": 50, "description": "exact origins or one wildcard level, https://*.example.com "
               "(not over a public suffix); a publishable key needs at least one"}
    return {
        "Key": obj(**key),
        "KeyCreated": obj(**key, key={"type": "string", "description": "the key: only in this response"}),
        "KeyList": obj(data={"type": "array", "items": ref("Key")}),
        "KeyBody": {**obj(["kind"], kind={"enum": list(keys.KINDS)}, origins=origins, persona_quota=quota),
                    "if": {"properties": {"kind": {"const": "publishable"}}},
                    "then": {"required": ["kind", "origins"]}, "else": {"not": {"required": ["origins"]}}},
        "KeyRotate": obj([], grace_s={"type": "integer", "minimum": 0, "maximum": keys.MAX_GRACE_S,
                                      "default": keys.DEFAULT_GRACE_S}),
        "Identity": obj(require_identity={"type": "boolean"}, secret_set={"type": "boolean"}),
        "IdentityBody": obj(require_identity={"type": "boolean"}),
        "IdentitySecret": obj(require_identity={"type": "boolean"}, secret_set={"type": "boolean"},
                              secret={"type": "string", "description": "user.hash = hex HMAC-SHA256(secret, user.id)"}),
        "Empty": obj([]),
    }
