"""The suite file (issue 15): a persona, a policy and cases of visitor turns with what to expect of each.

The models are strict (`extra="forbid"`, no coercion) so that a typo is an error, never an assertion silently
skipped. `load_suite` reads YAML (or JSON, which is YAML) and turns any problem into a `SuiteInvalid` naming the
file, the line and the field path: pydantic's `loc` is walked down PyYAML's composed nodes to the node it names.
`suite_schema()` is the JSON Schema of the file, published by the server and usable by editors.

The console's playground saves its exchanges as `Case`s (`edges/console/testcases.py` imports these models).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import yaml
from pydantic import ConfigDict, Discriminator, Field, Tag, ValidationError, field_validator, model_validator

from widget_server.domain.guardrails.policy import Policy, Topics, compile_re2
from widget_server.domain.personas import ProviderSettings
from widget_server.domain.testing.personas import MAX_HEADERS, check_headers
from widget_server.errors import InvalidRequest
from widget_server.text import StorableText

Short = Annotated[str, Field(min_length=1, max_length=200)]
Said = Annotated[str, Field(min_length=1, max_length=2000)]
Millis = Annotated[int, Field(ge=0, le=3_600_000)]
MAX_CASES = 1000
MAX_BYTES = 2_000_000  # a suite file larger than this is refused before it is parsed
MESSAGES = {"extra_forbidden": "unknown field (a typo?)", "missing": "required field missing"}
SIMULATED_ONLY = ("visitor_persona", "goal", "max_turns", "at_some_turn", "never")


class SuiteInvalid(InvalidRequest):
    """A suite that cannot run: its message names the file, the line and the field."""

    code = "request.invalid_suite"


class Strict(StorableText):
    model_config = ConfigDict(extra="forbid", strict=True, str_strip_whitespace=True)


class GuardrailExpect(Strict):
    action: Literal["allow", "refuse", "mask", "escalate", "block"] | None = None
    reason: Short | None = None
    source: Literal["input", "output"] | None = None


class SimilarTo(Strict):
    text: Said
    min: float = Field(ge=-1, le=1)


def _re2(patterns: list[str] | None) -> list[str] | None:
    for pattern in patterns or []:
        try:
            compile_re2(pattern)
        except Exception as exc:  # re2.error: its message is bytes
            why = exc.args[0].decode(errors="replace") if exc.args and isinstance(exc.args[0], bytes) else exc
            raise ValueError(f"{pattern!r} is not a valid RE2 regular expression: {why}") from None
    return patterns


class Judge(Strict):
    """A judged assertion: an OpenAI-compatible model reads the conversation and answers whether it meets the
    `rubric`, `k` times (pass^k: every one of them passed)."""

    rubric: Annotated[str, Field(min_length=1, max_length=4000)]
    model: Short | None = None  # the judge's model (default: WIDGET_JUDGE_MODEL, or the suite's judge.model)
    k: Annotated[int, Field(ge=1, le=20)] | None = None  # default: the suite's judge.k, else 1


class JudgeDefaults(Strict):
    """The suite's defaults for its judged assertions."""

    model: Short | None = None
    k: Annotated[int, Field(ge=1, le=20)] = 1


class Simulator(Strict):
    """The suite's settings of the model that plays its simulated visitors (the server's simulator endpoint,
    `WIDGET_SIMULATOR_*`, or the bundled local model)."""

    model: Short | None = None  # a model of the simulator's endpoint (ignored by the local model)
    temperature: float = Field(0.7, ge=0, le=2)
    max_tokens: Annotated[int, Field(ge=1, le=2048)] = 200


class Expect(Strict):
    """What a turn must do. Every field is optional; a field left out is not checked."""

    refused: bool | None = None
    escalated: bool | None = None
    guardrail: GuardrailExpect | None = None
    masked: list[Short] | None = Field(None, max_length=20)
    contains: list[Said] | None = Field(None, max_length=20)
    not_contains: list[Said] | None = Field(None, max_length=20)
    regex: list[Annotated[str, Field(min_length=1, max_length=500)]] | None = Field(None, max_length=20)
    not_regex: list[Annotated[str, Field(min_length=1, max_length=500)]] | None = Field(None, max_length=20)
    finish_reason: Literal["stop", "length", "guardrail", "cancelled", "error", "agent"] | None = None
    max_ttft_ms: Millis | None = None
    max_total_ms: Millis | None = None
    max_output_tokens: Annotated[int, Field(ge=0, le=1_000_000)] | None = None
    similar_to: SimilarTo | None = None
    no_prompt_leak: bool | None = None
    events: list[Short] | None = Field(None, max_length=20)
    provider_called: bool | None = None
    judge: Judge | None = None

    _regexes = field_validator("regex", "not_regex")(_re2)


class CaseTurn(Strict):
    visitor: str = Field(min_length=1, max_length=20000)
    expect: Expect = Field(default_factory=Expect)


class TestPersonaInline(Strict):
    __test__ = False  # (not a pytest class)
    name: Short
    description: str = Field("", max_length=2000)
    system_prompt: str = Field("", max_length=20000)
    headers: dict[str, str] = Field(default_factory=dict, max_length=MAX_HEADERS)

    _headers = field_validator("headers", mode="before")(check_headers)


class VisitorPersona(Strict):
    """The simulated visitor of a case: a test persona by name (`/v1/test-personas`), or one written inline."""

    name: Short | None = None
    inline: TestPersonaInline | None = None

    @model_validator(mode="after")
    def _one(self) -> VisitorPersona:
        if (self.name is None) == (self.inline is None):
            raise ValueError("give either name (a stored test persona) or inline (one written here)")
        return self


class Case(Strict):
    """A case: scripted `turns`, or (simulated) a `visitor_persona` with a `goal` and a turn budget, checked on
    the whole conversation by `at_some_turn` (one turn does all of it) and `never` (no turn does any of it), and
    judged on it by `judge`."""

    name: str = Field(min_length=1, max_length=200)
    turns: list[CaseTurn] | None = Field(None, min_length=1, max_length=50)
    tags: list[Short] | None = Field(None, max_length=20)
    repeat: Annotated[int, Field(ge=1, le=100)] | None = None
    visitor_persona: VisitorPersona | None = None
    goal: Said | None = None  # default: the test persona's
    max_turns: Annotated[int, Field(ge=1, le=50)] | None = None  # default: the test persona's (10 inline)
    at_some_turn: Expect | None = None
    never: Expect | None = None
    judge: Judge | None = None  # of the whole conversation

    @model_validator(mode="after")
    def _kind(self) -> Case:
        if self.visitor_persona is None:
            given = [k for k in SIMULATED_ONLY if getattr(self, k) is not None]
            if given:
                raise ValueError(f"{given[0]} belongs to a simulated case: give it a visitor_persona (or drop it)")
            if self.turns is None:
                raise ValueError("a case needs turns (a list of {visitor, expect}) or a visitor_persona")
            if self.judge is not None:
                raise ValueError("judge on a case judges a simulated conversation: put it on a turn's expect")
            return self
        if self.turns is not None:
            raise ValueError("a simulated case (visitor_persona) has no turns: the visitor model writes them")
        for where in ("at_some_turn", "never"):
            expect = getattr(self, where)
            if expect is not None and expect.judge is not None:
                raise ValueError(f"{where}.judge: judge the whole conversation with the case's judge")
        return self

    @property
    def simulated(self) -> bool:
        return self.visitor_persona is not None

class PersonaDraft(Strict):
    """A persona written in the suite (a draft, saved nowhere): the fields of `POST /v1/personas`. With the slug
    of a stored persona, it is that persona with these fields in place of the stored ones."""

    slug: Annotated[str, Field(min_length=1, max_length=80)] | None = None
    name: Annotated[str, Field(min_length=1, max_length=100)] | None = None
    description: str | None = Field(None, max_length=2000)
    system_prompt: str | None = Field(None, max_length=20000)
    greeting: str | None = Field(None, max_length=2000)
    language: str | None = Field(None, max_length=16)
    provider: ProviderSettings | None = None
    topics: Topics | None = None


def _kind_of(value: Any) -> str:
    return "<slug>" if isinstance(value, str) else "<inline>"


def _policy_kind(value: Any) -> str:
    return "<tenant>" if isinstance(value, str) else "<inline>"


class Suite(Strict):
    suite: str = Field(min_length=1, max_length=200)
    description: str | None = Field(None, max_length=2000)
    persona: Annotated[Annotated[Annotated[str, Field(min_length=1, max_length=80)], Tag("<slug>")]
                       | Annotated[PersonaDraft, Tag("<inline>")], Discriminator(_kind_of)]
    policy: Annotated[Annotated[Literal["tenant"], Tag("<tenant>")] | Annotated[Policy, Tag("<inline>")],
                      Discriminator(_policy_kind)] = "tenant"
    simulator: Simulator | None = None
    judge: JudgeDefaults | None = None
    cases: list[Case] = Field(min_length=1, max_length=MAX_CASES)

    @model_validator(mode="after")
    def _names(self) -> Suite:
        seen: set[str] = set()
        for case in self.cases:
            if case.name in seen:
                raise ValueError(f"two cases are named {case.name!r}: a case's name must be unique in its suite")
            seen.add(case.name)
        return self

    @property
    def plants_canary(self) -> bool:
        return any(t.expect.no_prompt_leak for c in self.cases for t in c.turns or []) or any(
            e is not None and e.no_prompt_leak for c in self.cases for e in (c.at_some_turn, c.never))


def suite_schema() -> dict[str, Any]:
    """The JSON Schema of a suite file."""
    schema = Suite.model_json_schema()
    schema["title"] = "widget_server test suite"
    return schema


# ---- loading, with lines ----

def _printable(part: Any) -> str:
    return str(part).encode("utf-8", "backslashreplace").decode()


def _locate(node: yaml.Node | None, loc: tuple[Any, ...]) -> tuple[int | None, list[str]]:
    """The line (1-based) of the deepest node `loc` reaches, and the field path (union tags left out)."""
    line = node.start_mark.line + 1 if node is not None else None
    path: list[str] = []
    for part in loc:
        if isinstance(part, str) and part.startswith("<"):
            continue  # a union's tag, not a field
        path.append(_printable(part))
        if isinstance(node, yaml.MappingNode):
            found = next(((k, v) for k, v in node.value if isinstance(k, yaml.ScalarNode) and k.value == str(part)),
                         None)
            # a field the file has: its value's line (an unknown field: its key's line); a missing one: the
            # mapping that misses it
            node = found[1] if found is not None else None
            if found is not None:
                line = found[0].start_mark.line + 1
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) and 0 <= part < len(node.value):
            node = node.value[part]
            line = node.start_mark.line + 1
        else:
            node = None
    return line, path


def _where(source: str, line: int | None) -> str:
    return f"{source}, line {line}" if line is not None else source


def _invalid(source: str, line: int | None, field: str, message: str) -> SuiteInvalid:
    return SuiteInvalid(f"{_where(source, line)}: {field}: {message}",
                        details={"errors": [{"field": field, "line": line, "message": message}]})


def _parse(text: str, source: str) -> tuple[Any, yaml.Node | None]:
    try:
        if any(isinstance(e, yaml.AliasEvent) for e in yaml.parse(text, Loader=yaml.CSafeLoader)):
            raise _invalid(source, None, "(file)", "YAML aliases (*name) are not accepted")
        node = yaml.compose(text, Loader=yaml.CSafeLoader)
        data = yaml.load(text, Loader=yaml.CSafeLoader)  # noqa: S506 (the C twin of safe_load)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else None
        problem = str(getattr(exc, "problem", None) or "not valid YAML")
        raise _invalid(source, line, "(file)", f"not valid YAML: {problem}") from None
    except (RecursionError, ValueError, OverflowError) as exc:  # nested too deep; a date PyYAML cannot build
        raise _invalid(source, None, "(file)", f"not a suite file: {type(exc).__name__}") from None
    return data, node


def parse_suite(doc: Any, source: str = "suite", node: yaml.Node | None = None) -> Suite:
    """A suite document (already parsed) as a `Suite`, or a `SuiteInvalid` naming the first bad field (and its
    line, when the composed YAML `node` is given)."""
    if not isinstance(doc, dict):
        raise _invalid(source, node.start_mark.line + 1 if node is not None else None, "(suite)",
                       "a suite is a mapping with suite, persona, policy and cases")
    try:
        return Suite.model_validate(doc)
    except ValidationError as exc:
        errors: list[dict[str, Any]] = []
        # An unknown field first: a typo in a key is also reported as the field it meant being required.
        for err in sorted(exc.errors(include_url=False), key=lambda e: e["type"] != "extra_forbidden"):
            line, path = _locate(node, tuple(err["loc"]))
            message = MESSAGES.get(err["type"]) or err["msg"].removeprefix("Value error, ")
            errors.append({"field": ".".join(path) or "(suite)", "line": line, "message": message,
                           "type": err["type"]})
        first = errors[0]
        raise SuiteInvalid(f"{_where(source, first['line'])}: {first['field']}: {first['message']}",
                           details={"errors": errors}) from None
    except RecursionError:
        raise _invalid(source, None, "(suite)", "nested too deeply") from None


def load_suite(text: str | bytes, source: str = "suite") -> Suite:
    """A suite file's text (YAML or JSON) as a `Suite`; a `SuiteInvalid` names the file, line and field."""
    if len(text) > MAX_BYTES:
        raise _invalid(source, None, "(file)", f"larger than {MAX_BYTES} bytes")
    if isinstance(text, bytes):
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise _invalid(source, None, "(file)", f"not UTF-8 text (byte {exc.start})") from None
    data, node = _parse(text, source)
    return parse_suite(data, source, node)


def checked(document: Any, source: str = "suite") -> Suite:
    """A suite given as a document or as its YAML text (what an HTTP body carries)."""
    if isinstance(document, str | bytes):
        return load_suite(document, source)
    return parse_suite(document, source)
