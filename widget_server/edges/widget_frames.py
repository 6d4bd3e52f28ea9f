"""Client frames of the widget protocol, parsed strictly: any text frame gets either a clean frame or an
`InvalidRequest` naming the field and the problem, never an exception the socket cannot answer.

What a frame may hold is what storage and the other side can hold: identifiers are printable strings of at most
80 characters, text has no lone surrogates (they cannot be encoded as UTF-8), no control characters and no bidi
overrides, JSON is at most a few levels deep, and every number in it is finite (no NaN, Infinity or 1e400, which
PostgreSQL's JSON refuses: an analytics batch holding one would be retried forever) and, if an integer, one a
JavaScript client can count to (a 5,000-digit literal is not even parsed). Such a number is refused wherever it
is, naming the field that holds it. Other fields a frame type does not use are ignored, so a newer widget still
talks to an older server.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterator
from typing import Any

from widget_server.domain.chat.conversations import BIDI, check_text
from widget_server.domain.chat.feedback import RATINGS, WIDGET_EVENTS
from widget_server.errors import InvalidRequest

MAX_ID = 80
MAX_TOKEN = 4096
MAX_INT = 2**53  # what a JavaScript client can count to exactly, anywhere in a frame
MAX_SEQ = MAX_INT
MAX_DEPTH = 8  # of a whole frame: {"type": "event", "props": {…}} leaves props a few levels
MAX_PROPS = 2000  # characters of an event's props as JSON
Frame = dict[str, Any]
_NAME = re.compile(r"[A-Za-z0-9_-]{1,40}")  # a key that an error may name in a path


def invalid(field: str, problem: str, code: str = "frame.invalid") -> InvalidRequest:
    return InvalidRequest(f"{field}: {problem}", code=code, details={"field": field, "problem": problem})


def _integer(literal: str) -> int | float:
    # Past 17 characters a JSON integer is beyond 2**53 (JSON has no leading zeros): not worth converting, and
    # past 4,300 digits Python refuses to. Infinity stands in, for `_bad_number` to name its field.
    return int(literal) if len(literal) <= 17 else math.inf


def _number_ok(value: Any) -> bool:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return True
    return math.isfinite(value) if isinstance(value, float) else abs(value) <= MAX_INT


def _leaves(value: Any, path: str) -> Iterator[tuple[str, Any]]:
    """Every key and scalar under `value` (depth already bounded), with the path that names it in an error:
    `props.a[0].b`. A key is named only where it is a plain name, else it is `*`: an error frame must never
    echo what the client sent (a lone surrogate in it would break the frame). A key itself is its object's."""
    if isinstance(value, dict):
        for key, item in value.items():
            yield path, key
            yield from _leaves(item, f"{path}.{key if _NAME.fullmatch(key) else '*'}")
    elif isinstance(value, list):
        for i, item in enumerate(value):
            yield from _leaves(item, f"{path}[{i}]")
    else:
        yield path, value


def _bad_number(frame: Frame) -> str | None:
    """The path in `frame` of a number that is NaN, infinite or an integer out of range."""
    return next((path.lstrip(".") for path, leaf in _leaves(frame, "") if not _number_ok(leaf)), None)


def _depth(value: Any, limit: int) -> bool:
    """Whether `value` nests at most `limit` levels of arrays and objects."""
    if isinstance(value, dict | list):
        if limit == 0:
            return False
        items = value.values() if isinstance(value, dict) else value
        return all(_depth(v, limit - 1) for v in items)
    return True


def decode(text: str) -> Frame:
    """A JSON object with a string `type`, or `InvalidRequest`."""
    try:  # NaN and Infinity are not JSON, but taken here so that the error can name their field
        frame = json.loads(text, parse_constant=float, parse_int=_integer)
    except RecursionError:
        raise InvalidRequest("frame is nested too deeply", code="frame.too_deep") from None
    except ValueError:
        raise InvalidRequest("frame is not valid JSON", code="frame.invalid_json") from None
    if not isinstance(frame, dict) or not isinstance(frame.get("type"), str):
        raise InvalidRequest("a frame is a JSON object with a type", code="frame.invalid")
    if not _depth(frame, MAX_DEPTH):
        raise InvalidRequest(f"frame is nested more than {MAX_DEPTH} levels deep", code="frame.too_deep")
    if (field := _bad_number(frame)) is not None:
        raise invalid(field, "numbers must be finite, and integers at most 2**53 in magnitude")
    return frame


def ident(frame: Frame, field: str, *, required: bool = False, path: str | None = None) -> str | None:
    """An identifier the client sends back (a client or message id): a printable string of 1 to 80 characters.
    `path` names the field in errors where it is nested (`resume.conversation_id`)."""
    value = frame.get(field)
    name = path or field
    if value is None:
        if required:
            raise invalid(name, "is required")
        return None
    if not isinstance(value, str):
        raise invalid(name, "must be a string")
    if not 1 <= len(value) <= MAX_ID:
        raise invalid(name, f"must be 1 to {MAX_ID} characters")
    if not value.isprintable() or BIDI.intersection(value):
        raise invalid(name, "must be printable (no control, format or bidi characters)")
    return value


def integer(value: Any, field: str, low: int, high: int) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise invalid(field, "must be an integer")
    if not low <= value <= high:
        raise invalid(field, f"must be from {low} to {high}")
    return value


def _strings_clean(value: Any, field: str) -> None:
    for path, leaf in _leaves(value, field):
        if isinstance(leaf, str):
            check_text(leaf, path)


def hello(frame: Frame) -> tuple[Any, str | None, int | None, str | None]:
    """The token, and the conversation to resume with the client's last `seq` and the epoch of the log it counted
    in (None, None, None without resume)."""
    token = frame.get("token")
    # A session token is printable ASCII (itsdangerous, URL-safe): anything else is refused here, before the
    # signer, which would fail to encode a lone surrogate as UTF-8 (a server error, not a bad token).
    if token is not None and (not isinstance(token, str) or len(token) > MAX_TOKEN or not token.isascii()
                              or not token.isprintable()):
        raise invalid("token", f"must be a printable ASCII string of at most {MAX_TOKEN} characters")
    resume = frame.get("resume")
    if resume is None:
        return token, None, None, None
    if not isinstance(resume, dict):
        raise invalid("resume", "must be an object with conversation_id and last_seq")
    conversation_id = ident(resume, "conversation_id", path="resume.conversation_id")
    last_seq = resume.get("last_seq")
    if last_seq is not None:
        last_seq = integer(last_seq, "resume.last_seq", 0, MAX_SEQ)
    return token, conversation_id, last_seq, ident(resume, "epoch", path="resume.epoch")


def message(frame: Frame) -> tuple[Any, str | None]:
    """The text (checked by the chat domain, as on every channel) and the client's id for the message."""
    return frame.get("text"), ident(frame, "client_id")


def message_id(frame: Frame) -> str:
    found = ident(frame, "message_id", required=True)
    assert found is not None
    return found


def typing(frame: Frame) -> bool:
    """Whether the visitor is typing (`active`), during a takeover."""
    active = frame.get("active")
    if not isinstance(active, bool):
        raise invalid("active", "must be true or false")
    return active


def feedback(frame: Frame) -> tuple[str, str, str | None]:
    """The rated reply, the rating (`up` or `down`) and an optional comment of at most 2000 characters."""
    rated = message_id(frame)
    rating = frame.get("rating")
    if rating not in RATINGS:
        raise invalid("rating", "must be up or down", code="feedback.invalid")
    comment = frame.get("comment")
    if comment is not None:
        if not isinstance(comment, str) or len(comment) > 2000:
            raise invalid("comment", "must be a string of at most 2000 characters", code="feedback.invalid")
        check_text(comment, "comment")
    return rated, rating, comment


def event(frame: Frame) -> tuple[str, dict[str, Any]]:
    """A widget event's name and its props (a JSON object of at most 2000 characters)."""
    name = frame.get("name")
    if name not in WIDGET_EVENTS:
        raise invalid("name", f"must be one of {', '.join(WIDGET_EVENTS)}", code="event.invalid")
    props = frame.get("props")
    if props is None:
        return name, {}
    if not isinstance(props, dict) or len(json.dumps(props)) > MAX_PROPS:
        raise invalid("props", f"must be an object of at most {MAX_PROPS} characters as JSON", code="event.invalid")
    _strings_clean(props, "props")
    return name, props
