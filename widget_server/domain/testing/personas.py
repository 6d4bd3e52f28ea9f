"""Test personas: the simulated visitors a test suite's case may be driven by (issue 15), validated strictly.

A test persona is played by a model: its `system_prompt` says who the visitor is, `goal` what they want, and
`max_turns` how long they may take; `headers` are what the visitor's requests carry (an `Accept-Language`, a
`User-Agent`). Header names are RFC 9110 tokens and values printable ASCII, so a stored persona can always be sent;
the headers the runner itself sets (authentication, framing, the connection) cannot be named.

Statuses, as the issue has them: 400 for the body's shape (not an object, an unknown or missing field: `name` is
required), 422 `test_persona.invalid` for a value refused (naming the field), 404 `test_persona.not_found`, 409
`test_persona.name_taken` (names are unique per tenant, compared folded: "Ada" is "ada"; the database decides a
race).
"""

from __future__ import annotations

import re
import unicodedata
from typing import Annotated, Any

from pydantic import ConfigDict, Field, ValidationError, field_validator

from widget_server.backends.storage import Storage
from widget_server.backends.storage.test_personas import NameTaken
from widget_server.clock import now
from widget_server.domain.guardrails.policy import INTEGRAL
from widget_server.errors import Conflict, InvalidRequest, NotFound
from widget_server.ids import new_id
from widget_server.text import StorableText

MAX_TEST_PERSONAS = 500  # per tenant
MAX_HEADERS = 20
HEADER_NAME = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]{1,64}\Z")  # an RFC 9110 token
HEADER_VALUE = re.compile(r"^(?:[\x21-\x7e](?:[\x20-\x7e]{0,998}[\x21-\x7e])?)?\Z")  # printable, trimmed, ≤ 1000
# Set by whoever sends the visitor's requests (the runner, the HTTP client), never by the persona.
RESERVED = frozenset({
    "authorization", "x-api-key", "cookie", "host", "content-length", "content-type", "transfer-encoding",
    "connection", "upgrade", "te", "trailer", "keep-alive", "proxy-authorization", "proxy-connection", "expect",
})
RESERVED_PREFIXES = ("sec-websocket-",)


class TestPersonaNotFound(NotFound):
    __test__ = False
    code = "test_persona.not_found"


class TestPersonaNameTaken(Conflict):
    __test__ = False
    code = "test_persona.name_taken"


class TestPersonaInvalid(InvalidRequest):
    """A well-formed test persona whose values are refused (a header name, a turn budget out of range)."""

    __test__ = False
    status_code = 422
    code = "test_persona.invalid"


class Strict(StorableText):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True, strict=True)


def check_headers(value: Any) -> Any:
    """The headers of a test persona (stored or written in a suite): RFC 9110 names, none twice, none the runner
    sets itself, printable values. A value that is not a mapping is left to the type check."""
    if not isinstance(value, dict):
        return value
    seen: set[str] = set()
    for name, text in value.items():
        if not isinstance(name, str) or not HEADER_NAME.match(name):
            raise ValueError(f"{str(name)[:64]!r} is not a header name (letters, digits and !#$%&'*+.^_`|~-, "
                             "at most 64)")
        folded = name.lower()
        if folded in RESERVED or folded.startswith(RESERVED_PREFIXES):
            raise ValueError(f"{name} is set by the test runner, not by a test persona")
        if folded in seen:
            raise ValueError(f"{name} is given twice (header names are case-insensitive)")
        seen.add(folded)
        if isinstance(text, str) and not HEADER_VALUE.match(text):
            raise ValueError(f"the value of {name} must be printable ASCII without surrounding spaces, at most "
                             "1000 characters")
    return value


class TestPersonaBody(Strict):
    """A test persona as a tenant writes it (POST and PUT)."""

    __test__ = False  # a model, not a test class

    name: str = Field(min_length=1, max_length=100)
    description: str = Field("", max_length=2000)
    system_prompt: str = Field("", max_length=20000)
    headers: dict[str, str] = Field(default_factory=dict, max_length=MAX_HEADERS)
    goal: str = Field("", max_length=2000)
    max_turns: Annotated[int, Field(ge=1, le=50), INTEGRAL] = 10

    _headers = field_validator("headers", mode="before")(check_headers)


def name_key(name: str) -> str:
    """A name as it is compared: NFKC, case folded."""
    return unicodedata.normalize("NFKC", name).casefold()


def _errors(exc: ValidationError) -> dict[str, Any]:
    return {"errors": [{"field": ".".join(str(p) for p in e["loc"]) or "(body)",
                        "message": e["msg"].removeprefix("Value error, "), "type": e["type"]}
                       for e in exc.errors(include_url=False)]}


def parse(body: Any) -> TestPersonaBody:
    """A POST/PUT body: 400 for its shape, 422 `test_persona.invalid` for a value refused, naming the field."""
    if not isinstance(body, dict):
        raise InvalidRequest("the body must be a JSON object")
    try:
        return TestPersonaBody.model_validate(body)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "body"
        if first["type"] in ("missing", "extra_forbidden"):
            label = "missing field" if first["type"] == "missing" else "unknown field"
            raise InvalidRequest(f"{label}: {where}", details=_errors(exc)) from exc
        raise TestPersonaInvalid(f"invalid field: {where}", details=_errors(exc)) from exc


def to_public(row: dict[str, Any]) -> dict[str, Any]:
    """`avatar_url` (and `imageUrl`, the name the test-persona contract uses) once generate-image made one."""
    avatar = row.get("avatar_url")
    return {"id": row["id"], **row["doc"], "avatar_url": avatar, "imageUrl": avatar,
            "created_at": row["created_at"].isoformat(), "updated_at": row["updated_at"].isoformat()}


def _taken(name: str) -> TestPersonaNameTaken:
    return TestPersonaNameTaken(f"a test persona named {name!r} exists", details={"name": name})


def _not_found(persona_id: str) -> TestPersonaNotFound:
    return TestPersonaNotFound(f"no test persona {persona_id!r}")


async def create(storage: Storage, tenant_id: str, body: Any) -> dict[str, Any]:
    persona = parse(body)
    if await storage.test_personas.count(tenant_id) >= MAX_TEST_PERSONAS:
        raise TestPersonaInvalid(f"a tenant may have at most {MAX_TEST_PERSONAS} test personas; delete one first",
                             code="test_persona.limit_reached", details={"limit": MAX_TEST_PERSONAS})
    stamp = now()
    row = {"id": new_id("tper"), "tenant_id": tenant_id, "name_key": name_key(persona.name),
           "doc": persona.model_dump(mode="json"), "created_at": stamp, "updated_at": stamp}
    try:
        await storage.test_personas.add(row)
    except NameTaken as exc:
        raise _taken(persona.name) from exc
    return to_public(row)


async def get(storage: Storage, tenant_id: str, persona_id: str) -> dict[str, Any]:
    row = await storage.test_personas.get(tenant_id, persona_id)
    if row is None:
        raise _not_found(persona_id)
    return to_public(row)


async def page(storage: Storage, tenant_id: str, *, after: str | None, limit: int) -> dict[str, Any]:
    """Oldest first, `limit` at a time: `next_cursor` until the last page."""
    rows = await storage.test_personas.page(tenant_id, after=after, limit=limit + 1)
    kept = rows[:limit]
    return {"data": [to_public(r) for r in kept], "next_cursor": kept[-1]["id"] if len(rows) > limit else None}


async def replace(storage: Storage, tenant_id: str, persona_id: str, body: Any) -> dict[str, Any]:
    """PUT: every field replaced (one left out gets its default); 404 before anything is said of the body."""
    await get(storage, tenant_id, persona_id)
    persona = parse(body)
    try:
        found = await storage.test_personas.update(tenant_id, persona_id, name_key(persona.name),
                                                   persona.model_dump(mode="json"))
    except NameTaken as exc:
        raise _taken(persona.name) from exc
    if not found:
        raise _not_found(persona_id)
    return await get(storage, tenant_id, persona_id)


async def delete(storage: Storage, tenant_id: str, persona_id: str) -> None:
    if not await storage.test_personas.delete(tenant_id, persona_id):
        raise _not_found(persona_id)
