"""What the OpenAPI document can only say in words, told to schemathesis, so that the requests it makes as valid
are valid.

A JSON Schema describes each value on its own. A few rules of this API relate two values, or the world: `to` must
be later than `from`; `level=conversation` takes no `type`; a webhook's host (and a prompt job's callback_url's)
must resolve to public addresses (and a test machine resolves no name); a policy's `regex` must compile in RE2
and, on output, match at most 256 characters; rule ids are unique; a visitor id is printable (Unicode's own
definition, which no portable regex spells); no text holds a NUL or a lone surrogate (no database here stores
them). The document states each rule, and the server answers a request that breaks one with the documented 400 or
422, which tests/test_analytics.py, test_export.py, test_webhooks.py, test_safety_policy.py and
test_prompt_jobs.py check.

For a request schemathesis generates as valid, the hook below repairs only what such a rule is about and keeps
the request valid against the document, so every check still judges it. Requests generated to violate the
document are left as they are. Used by tests/test_schemathesis.py, and by `schemathesis run` from the repository
root (schemathesis.toml).
"""

from __future__ import annotations

import os
import secrets
import unicodedata
from collections.abc import Callable
from typing import Any

import httpx
import schemathesis
from schemathesis import Case

from widget_server.domain.analytics.query import parse_time
from widget_server.domain.chat.conversations import BIDI
from widget_server.domain.guardrails.policy import MAX_OUTPUT_PATTERN, compile_re2
from widget_server.domain.guardrails.regex_info import max_width
from widget_server.errors import InvalidRequest

PUBLIC_ADDRESS = "93.184.215.14"  # a global unicast address: no DNS needed to know it is public


def ordered_range(case: Case) -> None:
    """`to` later than `from` (analytics.query.parse_filter): swap them, or drop `to` when they are equal."""
    query = case.query or {}
    if not (isinstance(query.get("from"), str) and isinstance(query.get("to"), str)):
        return
    try:
        start, end = parse_time("from", query["from"]), parse_time("to", query["to"])
    except InvalidRequest:
        return  # not valid after all: the server must say so, and the checks judge that
    if end == start:
        del query["to"]
    elif end < start:
        query["from"], query["to"] = query["to"], query["from"]


def no_type_per_conversation(case: Case) -> None:
    """level=conversation counts several types per row, so it takes no `type` (analytics.export.parse_export)."""
    query = case.query or {}
    if query.get("level") == "conversation":
        query.pop("type", None)


def public_webhook_host(case: Case, field: str = "url") -> None:
    """A webhook's host must resolve to public addresses (analytics.destinations.resolve): use one."""
    body = case.body if isinstance(case.body, dict) else {}
    if isinstance(body.get(field), str):
        try:
            body[field] = str(httpx.URL(body[field]).copy_with(host=PUBLIC_ADDRESS))
        except (httpx.InvalidURL, ValueError, TypeError):
            pass


def public_callback_host(case: Case) -> None:
    """A prompt job's callback_url is checked as a webhook's URL is (prompt_jobs.jobs.callback_url)."""
    public_webhook_host(case, "callback_url")


def printable_visitor(case: Case) -> None:
    """A visitor id is printable and has no bidi controls (chat.conversations.visitor_id)."""
    body = case.body if isinstance(case.body, dict) else {}
    if isinstance(body.get("visitor_id"), str):
        body["visitor_id"] = "".join(c if c.isprintable() and c not in BIDI and unicodedata.category(c) != "Cs"
                                     else "_" for c in body["visitor_id"])


def compilable_patterns(case: Case) -> None:
    """A policy's patterns compile in RE2 and match at most 256 characters; rule ids are unique within a list
    (guardrails.policy.Pattern and Policy._unique_ids). A pattern that breaks this becomes the literal of its
    first characters, punctuation escaped."""
    policy = case.body if isinstance(case.body, dict) else {}
    for rule in _rules(policy, "patterns"):
        regex = rule.get("regex")
        if isinstance(regex, str) and regex and not _usable(regex):
            literal = "".join("\\" + c if c.isascii() and c.isprintable() and not c.isalnum() and c != " " else c
                              for c in regex[:64])
            rule["regex"] = literal if _usable(literal) else "x"
    for name in ("blocked_terms", "patterns"):
        seen: set[str] = set()
        for i, rule in enumerate(_rules(policy, name)):
            if isinstance(rule.get("id"), str) and rule["id"] in seen:
                rule["id"] = f"{rule['id'][:50]}-{i}"
            seen.add(rule.get("id"))


def _rules(policy: dict[str, Any], name: str) -> list[dict[str, Any]]:
    rules = policy.get(name)
    return [r for r in rules if isinstance(r, dict)] if isinstance(rules, list) else []


def _usable(regex: str) -> bool:
    try:
        compile_re2(regex)
    except Exception:
        return False
    return max_width(regex) <= MAX_OUTPUT_PATTERN


def storable_strings(case: Case) -> None:
    """No NUL and no lone surrogate in any text of a persona or a policy (widget_server.text.unstorable: no
    database here holds them), which a JSON Schema string cannot say: such characters become U+FFFD."""
    def clean(value: Any) -> Any:
        if isinstance(value, str):
            return "".join("\ufffd" if c == "\x00" or 0xD800 <= ord(c) <= 0xDFFF else c for c in value)
        if isinstance(value, list):
            return [clean(v) for v in value]
        if isinstance(value, dict):
            return {clean(k): clean(v) for k, v in value.items()}
        return value

    if isinstance(case.body, dict):
        case.body = clean(case.body)


def real_origins(case: Case) -> None:
    """A publishable key's origins are origins (domain.origins.normalize_rule): https://HOST, one wildcard level
    at most, not over a public suffix. Each generated one becomes such an origin, as many as were generated."""
    body = case.body if isinstance(case.body, dict) else {}
    if isinstance(body.get("origins"), list):
        body["origins"] = [f"https://site{i}.shop.example" for i in range(len(body["origins"]))]


def topics_within_the_total(case: Case) -> None:
    """At most LIMITS["examples"] topic examples in all (guardrails.policy.Topics._bounded): trim each topic."""
    from widget_server.domain.guardrails.policy import LIMITS

    body = case.body if isinstance(case.body, dict) else {}
    topics = body.get("topics")
    rules = [t for side in ("allowed", "denied") for t in (topics.get(side) or [])
             if isinstance(t, dict) and isinstance(t.get("examples"), list)] if isinstance(topics, dict) else []
    while sum(len(t["examples"]) for t in rules) > LIMITS["examples"]:
        longest = max(rules, key=lambda t: len(t["examples"]))
        del longest["examples"][len(longest["examples"]) // 2:]


def ordinary_headers(case: Case) -> None:
    """A test persona's headers name each header once, whatever its case, and none the runner sets itself
    (domain.testing.personas.RESERVED): the generated ones that do are left out."""
    from widget_server.domain.testing.personas import RESERVED, RESERVED_PREFIXES

    body = case.body if isinstance(case.body, dict) else {}
    if isinstance(body.get("headers"), dict):
        kept: dict[str, Any] = {}
        for name, value in body["headers"].items():
            folded = name.lower()
            if folded not in RESERVED and not folded.startswith(RESERVED_PREFIXES) and folded not in {
                    k.lower() for k in kept}:
                kept[name] = value
        body["headers"] = kept


def printable_user(case: Case) -> None:
    """OpenAI's `user` is the conversation's visitor id: printable, no bidi controls (as printable_visitor)."""
    body = case.body if isinstance(case.body, dict) else {}
    if isinstance(body.get("user"), str):
        body["user"] = "".join(c if c.isprintable() and c not in BIDI and unicodedata.category(c) != "Cs"
                               else "_" for c in body["user"])


def user_message_last(case: Case) -> None:
    """A chat completion's last message is the visitor's message of the turn (domain.chat.completions): a user
    message, not blank, within WIDGET_MAX_MESSAGE_CHARS (4,000 in the tests' server). Another last message is
    replaced by one."""
    body = case.body if isinstance(case.body, dict) else {}
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        return
    last = messages[-1]
    content = last.get("content") if isinstance(last, dict) else None
    if isinstance(content, list):
        content = "\n".join(p.get("text", "") for p in content if isinstance(p, dict))
    if not (isinstance(last, dict) and last.get("role") == "user" and isinstance(content, str)
            and content.strip() and len(content) <= 4000):
        messages[-1] = {"role": "user", "content": "hello"}


def loadable_suite(case: Case) -> None:
    """A test run's suite must load as a suite file (unique case names, RE2 patterns, a known assertion…: its own
    schema, GET /v1/test-suites/schema, and the rules beyond it); one that does not is replaced by a small one."""
    from widget_server.domain.testing.suite import checked

    body = case.body if isinstance(case.body, dict) else {}
    if isinstance(body.get("suite"), dict):
        try:
            named = [c for c in checked(body["suite"]).cases if c.visitor_persona and c.visitor_persona.name]
        except Exception:
            named = [None]
        if named:  # (a test persona named must be the tenant's: none is)
            body["suite"] = {"suite": "generated", "persona": "schemathesis",
                             "cases": [{"name": "a", "turns": [{"visitor": "hello"}]}]}
    if body.get("no_judge") is True and body.get("strict_judge") is True:
        del body["strict_judge"]  # (one or the other)


def satisfiable_filters(case: Case) -> None:
    """A group's filters must admit `size` people within the draws allowed (people_groups.groups.member_seeds):
    which do depends on the generator, not on the document, so a generated group is drawn without filters."""
    body = case.body if isinstance(case.body, dict) else {}
    if "filters" in body:
        body["filters"] = {}


RULES: dict[tuple[str, str], tuple[Callable[[Case], None], ...]] = {
    ("POST", "/v1/keys"): (real_origins,),
    ("POST", "/v1/personas"): (storable_strings, topics_within_the_total),
    ("POST", "/v1/personas/import"): (storable_strings, topics_within_the_total),
    ("PUT", "/v1/personas/{id}"): (storable_strings, topics_within_the_total),
    ("PATCH", "/v1/personas/{id}"): (storable_strings, topics_within_the_total),
    ("GET", "/v1/analytics/events"): (ordered_range,),
    ("GET", "/v1/analytics/export"): (ordered_range, no_type_per_conversation),
    ("GET", "/v1/analytics/summary"): (ordered_range,),
    ("POST", "/v1/webhooks"): (public_webhook_host,),
    ("POST", "/v1/personas/{id}/prompt"): (printable_visitor,),
    ("POST", "/v1/personas/{id}/prompt/stream"): (printable_visitor,),
    ("POST", "/v1/personas/{id}/prompt/jobs"): (printable_visitor, public_callback_host),
    ("POST", "/v1/widget/sessions"): (printable_visitor,),
    ("POST", "/v1/openai/chat/completions"): (printable_user, user_message_last),
    ("PUT", "/v1/safety-policy"): (storable_strings, compilable_patterns, topics_within_the_total),
    ("POST", "/v1/test-personas"): (storable_strings, ordinary_headers),
    ("PUT", "/v1/test-personas/{id}"): (storable_strings, ordinary_headers),
    ("POST", "/v1/test-runs"): (loadable_suite,),
    ("POST", "/v1/projects/{project_id}/persona-groups"): (storable_strings, satisfiable_filters),
    ("POST", "/v1/projects/{project_id}/persona-groups/{group_id}/personas"): (storable_strings,),
    ("POST", "/v1/test-personas/from-person"): (storable_strings,),
}


def spare_own_key(case: Case) -> None:
    """The run authenticates with one secret key: rotating it without grace, or revoking it, would leave every
    later request a 401 and test nothing more. That one key is left alone (WIDGET_SCHEMATHESIS_OWN_KEY)."""
    own = os.environ.get("WIDGET_SCHEMATHESIS_OWN_KEY")
    if own and (case.path_parameters or {}).get("id") == own:
        case.path_parameters["id"] = "key_not_the_one_this_run_uses"


def one_request_per_key(case: Case) -> None:
    """An Idempotency-Key names one request (edges/idempotency.py): the same key with another body is a 422 by
    design, and the generator repeats short values ("0") across requests. Each valid request's key is made its
    own by a suffix, within the 255 characters allowed."""
    headers = case.headers or {}
    for name, value in list(headers.items()):
        if name.lower() == "idempotency-key" and isinstance(value, str) and value.strip():
            headers[name] = f"{value.strip()[:200]}-{secrets.token_hex(8)}"


@schemathesis.hook
def before_call(context: Any, case: Case, kwargs: dict[str, Any]) -> None:
    if case.operation.path in ("/v1/keys/{id}", "/v1/keys/{id}/rotate"):
        spare_own_key(case)  # positive or not: a request generated as invalid may still name the key
    if case.meta is None or not case.meta.generation.mode.is_positive:
        return
    one_request_per_key(case)
    for rule in RULES.get((case.operation.method.upper(), case.operation.path), ()):
        rule(case)
