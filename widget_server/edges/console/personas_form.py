"""The console's persona form: a persona as form fields and back, and the domain's errors beside their field.

Each control is named by its field's path in the persona document (`provider.temperature`,
`topics.allowed.0.examples`), so the `field` of a `PersonaInvalid` error finds its control. Lists are typed one
item a line (starters, a topic's examples): blank lines are skipped, and an item's index in the document maps
back to the line it was typed on. Topics are fieldsets: the persona's own, then a blank one to add another (a
topic left blank, or marked to remove, is left out).

What was typed is kept as typed (strings) until it is saved, so a refused form comes back as the user wrote it;
only a new provider api_key is never sent back to the browser.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Any

from starlette.datastructures import FormData

from widget_server.domain.guardrails.policy import LIMITS
from widget_server.errors import WidgetError

TEXT = ("name", "slug", "description", "system_prompt", "greeting", "starters", "avatar_url", "language")
PROVIDER = ("kind", "model", "base_url", "temperature", "max_tokens")
FIELDS = (*TEXT, *(f"provider.{f}" for f in PROVIDER), "topics.off_topic")
TOPIC_FIELDS = ("id", "description", "examples", "refusal")
SIDES = ("allowed", "denied")
MAX_ROWS = LIMITS["topics"] + 10  # rows read from a form: past the limit, the domain names the list as too long
TOPIC_KEY = re.compile(r"^topics\.(allowed|denied)\.(\d{1,4})\.(id|description|examples|refusal|remove)$")
FRIENDLIER = {"string_pattern_mismatch": "use 1 to 64 letters, digits, '_', '.' or '-'"}


def _text(value: object) -> str:
    """A form value as text (a file where text was expected is none), with the browser's CRLF as LF."""
    return value.replace("\r\n", "\n") if isinstance(value, str) else ""


def lines_of(text: str) -> tuple[list[str], list[int]]:
    """The non-blank lines of `text` and the number (from 1) of each."""
    kept = [(n, line.strip()) for n, line in enumerate(text.split("\n"), 1) if line.strip()]
    return [line for _, line in kept], [n for n, _ in kept]


def _number(text: str, kind: type[float] | type[int]) -> Any:
    """A number field: blank is None (the default); anything not a finite number stays text, for the domain to
    refuse by name."""
    text = text.strip()
    if not text:
        return None
    if kind is int:
        return int(text) if re.fullmatch(r"[+-]?\d{1,12}", text) else text
    try:
        value = float(text)
    except ValueError:
        return text
    return value if math.isfinite(value) else text


@dataclass
class TopicRow:
    id: str = ""
    description: str = ""
    examples: str = ""
    refusal: str = ""

    def blank(self) -> bool:
        return not any(v.strip() for v in (self.id, self.description, self.examples, self.refusal))

    def doc(self) -> dict[str, Any]:
        return {"id": self.id.strip(), "description": self.description.strip() or None,
                "examples": lines_of(self.examples)[0], "refusal": self.refusal.strip() or None}


@dataclass
class PersonaForm:
    values: dict[str, str]
    topics: dict[str, list[TopicRow]] = field(default_factory=lambda: {side: [] for side in SIDES})
    api_key: str = ""  # a new key typed: sent on, never rendered back
    remove_api_key: bool = False
    api_key_set: bool = False

    @classmethod
    def blank(cls) -> PersonaForm:
        return cls({**dict.fromkeys(FIELDS, ""), "language": "en", "provider.temperature": "0.7",
                    "topics.off_topic": "refuse"})

    @classmethod
    def of_persona(cls, row: dict[str, Any]) -> PersonaForm:
        doc, provider = row["doc"], row["doc"].get("provider") or {}
        topics = doc.get("topics") or {}
        values = {name: str(doc.get(name) or "") for name in TEXT}
        values |= {"slug": row["slug"], "starters": "\n".join(doc.get("starters") or []),
                   "topics.off_topic": str(topics.get("off_topic") or "refuse")}
        values |= {f"provider.{name}": "" if provider.get(name) is None else str(provider[name]) for name in PROVIDER}
        rows = {side: [TopicRow(t["id"], t.get("description") or "", "\n".join(t.get("examples") or []),
                                t.get("refusal") or "") for t in topics.get(side) or []] for side in SIDES}
        return cls(values, rows, api_key_set=bool(provider.get("api_key")))

    @classmethod
    def of_form(cls, form: FormData, api_key_set: bool = False) -> PersonaForm:
        values = {name: _text(form.get(name)) for name in FIELDS}
        rows: dict[str, dict[int, dict[str, str]]] = {side: {} for side in SIDES}
        for key in form.keys():
            m = TOPIC_KEY.match(key)
            if m and (int(m[2]) in rows[m[1]] or len(rows[m[1]]) < MAX_ROWS):
                rows[m[1]].setdefault(int(m[2]), {})[m[3]] = _text(form.get(key))
        topics = {side: [TopicRow(*(row.get(f, "") for f in TOPIC_FIELDS)) for _, row in sorted(rows[side].items())
                         if not row.get("remove")] for side in SIDES}
        return cls(values, {side: [r for r in topics[side] if not r.blank()] for side in SIDES},
                   api_key=_text(form.get("provider.api_key")).strip(),
                   remove_api_key=bool(form.get("provider.api_key_remove")), api_key_set=api_key_set)

    def rows(self, side: str) -> list[TopicRow]:
        """The topics of one side to render: the persona's, then a blank one to add."""
        return [*self.topics[side], TopicRow()]

    def patch(self) -> dict[str, Any]:
        """Every field, as a JSON merge patch of the stored persona: `None` puts a field back to its default,
        and the stored api_key stays unless a new one is given or it is to be removed."""
        v = self.values
        provider: dict[str, Any] = {name: v[f"provider.{name}"].strip() or None for name in ("kind", "model",
                                                                                            "base_url")}
        provider |= {"temperature": _number(v["provider.temperature"], float),
                     "max_tokens": _number(v["provider.max_tokens"], int)}
        if self.api_key:
            provider["api_key"] = self.api_key
        elif self.remove_api_key:
            provider["api_key"] = None
        body: dict[str, Any] = {name: v[name] for name in ("name", "description", "system_prompt", "greeting")}
        body |= {"slug": v["slug"].strip() or None, "starters": lines_of(v["starters"])[0],
                 "avatar_url": v["avatar_url"].strip() or None, "language": v["language"].strip() or None,
                 "provider": provider,
                 "topics": {side: [r.doc() for r in self.topics[side]] for side in SIDES}
                 | {"off_topic": v["topics.off_topic"] or None}}
        return body

    def create(self) -> dict[str, Any]:
        """The persona to create: the patch without its defaults."""
        made: dict[str, Any] = _without_none(self.patch())
        return made

    def errors(self, exc: WidgetError) -> dict[str, list[str]]:
        """The error's messages by the key of the control they concern ("" for the form as a whole)."""
        found: dict[str, list[str]] = {}
        listed = exc.details.get("errors") if isinstance(exc.details.get("errors"), list) else None
        if exc.code == "persona.slug_taken":
            found["slug"] = [f"{exc.message}: choose another"]
        elif exc.code == "topics.unavailable":
            found["topics"] = [exc.message]
        elif listed:
            for err in listed:
                key, message = self._place(str(err.get("field", "")), _message(err))
                found.setdefault(key, []).append(message)
        else:
            found[""] = [exc.message]
        return found

    def _place(self, path: str, message: str) -> tuple[str, str]:
        parts = path.split(".")
        if parts[0] == "starters" and len(parts) == 2 and parts[1].isdigit():
            return "starters", f"line {_line(lines_of(self.values['starters'])[1], int(parts[1]))}: {message}"
        if parts[0] == "topics" and len(parts) >= 3 and parts[1] in SIDES and parts[2].isdigit():
            key = ".".join(parts[:3])
            rows = self.topics[parts[1]]
            if len(parts) >= 4 and parts[3] in TOPIC_FIELDS:
                key += "." + parts[3]
                if parts[3] == "examples" and len(parts) == 5 and parts[4].isdigit() and int(parts[2]) < len(rows):
                    lines = lines_of(rows[int(parts[2])].examples)[1]
                    message = f"line {_line(lines, int(parts[4]))}: {message}"
            return key, message
        known = {*FIELDS, "provider", "topics", "topics.allowed", "topics.denied"}
        for end in range(len(parts), 0, -1):
            if ".".join(parts[:end]) in known:
                return ".".join(parts[:end]), message
        return "", f"{path}: {message}" if path and path != "(body)" else message


def _line(lines: list[int], index: int) -> int:
    return lines[index] if index < len(lines) else index + 1


def _message(err: dict[str, Any]) -> str:
    kind = str(err.get("type", ""))
    if kind in FRIENDLIER and str(err.get("field", "")).endswith(".id"):
        return FRIENDLIER[kind]
    return str(err.get("message", "not valid")).removeprefix("Value error, ")


def _without_none(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _without_none(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_without_none(v) for v in value]
    return value


def control_id(key: str) -> str:
    """The HTML id of a control (`provider.temperature` → `f-provider-temperature`)."""
    return "f-" + key.replace(".", "-")
