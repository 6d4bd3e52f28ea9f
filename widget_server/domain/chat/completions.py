"""A chat completion of the OpenAI-compatible endpoint, as the chat domain reads it: the same turn as the widget's.

The caller's message list is the conversation: its last message (a `user` one) is the visitor's message of the
turn, checked by the guardrails exactly as a widget visitor's; the `user` and `assistant` messages before it are
the model's context as given (not read from storage, not cut to `WIDGET_HISTORY_TURNS`); its `system` and
`developer` messages follow the persona's system prompt, which always leads, or are refused
(`WIDGET_OPENAI_SYSTEM_MESSAGES=refuse`). What the server cannot honour and would change the answer's shape (`n` > 1,
tools and functions, log probabilities, a structured `response_format`, audio) is refused naming the parameter;
sampling parameters are accepted and the persona's provider settings decide; other fields are accepted and
ignored (LangChain and agent frameworks send their own).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from widget_server.backends.providers import Turn
from widget_server.domain.chat import conversations
from widget_server.domain.chat.conversations import Conversation, check_message, check_text
from widget_server.domain.chat.deps import Deps
from widget_server.domain.chat.frames import Emit
from widget_server.domain.chat.memory import Memory
from widget_server.domain.chat.turn import Reply, run_turn
from widget_server.domain.guardrails.check import CheckContext
from widget_server.errors import InvalidRequest, PersonaNotFound
from widget_server.settings import Settings

MAX_MESSAGES = 256
MAX_CONTENT_CHARS = 32_000  # any one message of the context; the turn's own message has the widget's limit
ROLES = {"user": "visitor", "assistant": "persona"}
INSTRUCTIONS = ("system", "developer")
UNSUPPORTED = "request.unsupported_parameter"


@dataclass(frozen=True)
class ChatCall:
    model: str  # a persona's slug or id
    message: str  # the last user message: the visitor's message of the turn
    turns: tuple[Turn, ...]  # the messages before it, as context
    instructions: tuple[str, ...]  # the caller's system and developer messages, in order
    stream: bool
    include_usage: bool
    user: str | None  # OpenAI's end-user id, kept as the conversation's visitor id


def _invalid(message: str, param: str | None, code: str = "request.invalid") -> InvalidRequest:
    return InvalidRequest(message, code=code, details={"param": param})


def _unsupported(param: str, what: str) -> InvalidRequest:
    return _invalid(f"{param}: {what} is not supported by this server", param, UNSUPPORTED)


def _check_unsupported(body: dict[str, Any]) -> None:
    """What would change the shape of the answer, and that a persona cannot do, refused by name."""
    if body.get("n") is not None and (not isinstance(body["n"], int) or isinstance(body["n"], bool)
                                      or body["n"] != 1):
        raise _unsupported("n", "more than one choice")
    for name in ("tools", "functions"):
        if body.get(name) not in (None, []):
            raise _unsupported(name, "tool and function calling")
    for name in ("tool_choice", "function_call"):
        if body.get(name) not in (None, "none"):
            raise _unsupported(name, "tool and function calling")
    if body.get("logprobs") not in (None, False):
        raise _unsupported("logprobs", "log probabilities")
    if body.get("top_logprobs") is not None:
        raise _unsupported("top_logprobs", "log probabilities")
    fmt = body.get("response_format")
    if fmt is not None and (not isinstance(fmt, dict) or fmt.get("type") != "text"):
        raise _unsupported("response_format", "a response format other than text")
    if body.get("modalities") not in (None, ["text"]):
        raise _unsupported("modalities", "output other than text")
    if body.get("audio") is not None:
        raise _unsupported("audio", "audio output")


def _content(message: dict[str, Any], param: str) -> str:
    """A message's text: a string, or a list of text parts (joined by newlines). Images, audio and files are
    refused: no persona model here reads them."""
    content = message.get("content")
    if content is None:
        return ""
    if isinstance(content, list) and content:
        texts = []
        for j, part in enumerate(content):
            if not isinstance(part, dict) or part.get("type") != "text" or not isinstance(part.get("text"), str):
                raise _invalid("only text content parts ({\"type\": \"text\", \"text\": …}) are supported",
                               f"{param}[{j}]")
            texts.append(part["text"])
        content = "\n".join(texts)
    if not isinstance(content, str):
        raise _invalid("content must be a string or a list of text parts", param)
    if len(content) > MAX_CONTENT_CHARS:
        raise _invalid(f"content is longer than {MAX_CONTENT_CHARS} characters", param)
    try:
        return check_text(content, param)
    except InvalidRequest as exc:
        raise _invalid(exc.message, param) from None


def _messages(value: Any, settings: Settings) -> tuple[list[tuple[str, str]], tuple[str, ...]]:
    """(role, text) of the conversation's user and assistant messages, and the caller's instructions."""
    if not isinstance(value, list) or not 1 <= len(value) <= MAX_MESSAGES:
        raise _invalid(f"messages must be a list of 1 to {MAX_MESSAGES} messages", "messages")
    said: list[tuple[str, str]] = []
    instructions: list[str] = []
    for i, message in enumerate(value):
        param = f"messages[{i}]"
        if not isinstance(message, dict):
            raise _invalid("each message must be an object with a role and content", param)
        role = message.get("role")
        if role in ("tool", "function"):
            raise _unsupported(f"{param}.role", "tool and function calling")
        if role not in (*ROLES, *INSTRUCTIONS):
            raise _invalid("role must be one of system, developer, user, assistant", f"{param}.role")
        if message.get("tool_calls") not in (None, []) or message.get("function_call") is not None:
            raise _unsupported(f"{param}.tool_calls", "tool and function calling")
        text = _content(message, f"{param}.content")
        if role in INSTRUCTIONS:
            if settings.openai_system_messages == "refuse":
                raise _invalid("this server does not take system messages: the persona's system prompt is its "
                               "instructions (WIDGET_OPENAI_SYSTEM_MESSAGES=refuse)", f"{param}.role",
                               "request.system_message_refused")
            if text.strip():
                instructions.append(text)
        else:
            said.append((str(role), text))
    return said, tuple(instructions)


def parse_call(body: Any, settings: Settings) -> ChatCall:
    """The request as a turn: a 400 naming the parameter for anything it cannot be."""
    if not isinstance(body, dict):
        raise _invalid("the body must be a JSON object", None)
    model = body.get("model")
    if not isinstance(model, str) or not model or "\x00" in model:
        raise _invalid("model must be the slug or id of a persona", "model")
    _check_unsupported(body)
    if body.get("stream") is not None and not isinstance(body["stream"], bool):
        raise _invalid("stream must be a boolean", "stream")
    options = body.get("stream_options")
    if options is not None and not isinstance(options, dict):
        raise _invalid("stream_options must be an object", "stream_options")
    options = options or {}
    if options.get("include_usage") is not None and not isinstance(options["include_usage"], bool):
        raise _invalid("include_usage must be a boolean", "stream_options.include_usage")
    said, instructions = _messages(body.get("messages"), settings)
    if not said or said[-1][0] != "user":
        raise _invalid("the last message (after any system messages) must be a user message", "messages")
    try:
        message = check_message(said[-1][1], settings.max_message_chars)
    except InvalidRequest as exc:
        raise _invalid(exc.message, f"messages[{_last_user(body['messages'])}].content") from None
    user = body.get("user")
    if user is not None:
        try:
            user = conversations.visitor_id(user)
        except InvalidRequest as exc:
            raise _invalid(exc.message.replace("visitor_id", "user"), "user") from None
    turns = tuple(Turn(ROLES[role], text) for role, text in said[:-1] if text)
    return ChatCall(model, message, turns, instructions, bool(body.get("stream")), bool(options.get("include_usage")),
                    user)


def _last_user(messages: list[Any]) -> int:
    return max(i for i, m in enumerate(messages) if isinstance(m, dict) and m.get("role") == "user")


class GivenContext(Memory):
    """The caller's messages as the turn's context. It is never read again from storage (`loaded` stays true):
    the caller's list is the conversation, also when it attaches the call to a stored one."""

    def __init__(self, turns: tuple[Turn, ...], guard: CheckContext) -> None:
        super().__init__(len(turns), guard)
        self.turns.extend(turns)

    @property
    def loaded(self) -> bool:
        return True

    @loaded.setter
    def loaded(self, value: bool) -> None:
        pass


async def open_call(deps: Deps, tenant_id: str, call: ChatCall, conversation_id: str | None,
                    persona: dict[str, Any] | None = None) -> Conversation:
    """The call's conversation: the stored one `X-Persona-Conversation-Id` names (404 unless it is this persona's,
    and this `user`'s when one is given), or a new one on channel `openai`. An unknown model is `PersonaNotFound`.
    `persona`: the row `call.model` names, when the caller has read it already."""
    if len(call.model) > 200:
        raise PersonaNotFound(f"no persona {call.model[:40]!r}")
    conv = await conversations.open_api(deps, tenant_id, call.model, call.message, conversation_id, call.user,
                                        channel="openai", persona=persona)
    return dataclasses.replace(conv, instructions=call.instructions)


async def run_call(deps: Deps, conv: Conversation, call: ChatCall, emit: Emit) -> Reply:
    """The turn, as on every channel: input check, provider stream, output check, store, events. The caller's
    earlier user messages reach the model masked, as a widget visitor's stored messages do."""
    said = iter(await deps.guard.mask_context(conv.guard_context, [t.text for t in call.turns if t.role == "visitor"]))
    turns = tuple(Turn(t.role, next(said)) if t.role == "visitor" else t for t in call.turns)
    return await run_turn(deps, conv, call.message, None, emit, memory=GivenContext(turns, conv.guard))


def refused(reply: Reply) -> bool:
    """Whether the visitor's message was refused (or blocked) before the model was called: the caller is told
    with an error, not with a completion. An escalation is answered (with its message)."""
    mark = reply.guardrail or {}
    return reply.finish_reason == "guardrail" and mark.get("source") == "input" and mark.get("action") != "escalate"
