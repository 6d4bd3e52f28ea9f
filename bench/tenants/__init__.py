"""Development sets for guardrail tuning: three realistic tenants, each a policy and the visitors' messages.

Each `<name>.yaml` holds the policy document a tenant would write (few, short, English examples per topic, as
tenants write them) and at least 160 labelled messages written the way visitors write: typos, slang, no
punctuation, seven languages, code-switching, and the trade's own words rather than the examples' words. The
messages were written by hand for this project, not taken from any data set, and were not run through the engine
to choose or edit them: they are for tuning it, so they must not have been fitted to it.

`expect` is what the engine should decide (`EXPECTS`; `denied:<id>` names a denied topic of the same policy);
`entities` lists the personal data a message carries, which must be masked whatever the decision. A message that
asks two things at once has the decision that wins: the bench README gives the order.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

NAMES = ("bank", "saas", "restaurant")
EXPECTS = ("on_topic", "off_topic", "escalate", "pii", "role_override")  # and "denied:<topic id>"
LANGS = ("en", "de", "es", "fr", "it", "pt", "nl")
ENTITIES = ("email", "phone", "credit_card", "iban", "national_id")  # national_id: DNI, BSN, codice fiscale, NIR
HERE = Path(__file__).parent
DENIED = re.compile(r"^denied:([A-Za-z0-9_.-]{1,64})$")


@dataclass(frozen=True)
class Message:
    text: str
    expect: str
    lang: str
    entities: tuple[str, ...] = ()

    @property
    def category(self) -> str:
        """`expect` without the topic id: `denied` for every `denied:<id>`."""
        return self.expect.partition(":")[0]


@dataclass(frozen=True)
class Tenant:
    name: str
    policy: dict[str, Any]
    messages: list[Message] = field(default_factory=list)


def load(name: str) -> Tenant:
    """The tenant `name` of `NAMES`, its messages checked against the labels and its own policy."""
    if name not in NAMES:
        raise ValueError(f"no tenant {name!r}; the tenants are {', '.join(NAMES)}")
    doc = yaml.safe_load((HERE / f"{name}.yaml").read_text(encoding="utf-8"))
    policy = doc["policy"]
    denied = {topic["id"] for topic in policy.get("topics", {}).get("denied", [])}
    messages = [_message(raw, denied, f"{name}.yaml messages[{i}]") for i, raw in enumerate(doc["messages"])]
    return Tenant(name=name, policy=policy, messages=messages)


def _message(raw: dict[str, Any], denied: set[str], where: str) -> Message:
    unknown = set(raw) - {"text", "expect", "lang", "entities"}
    if unknown:
        raise ValueError(f"{where}: unknown keys {sorted(unknown)}")
    text, expect, lang = raw.get("text"), raw.get("expect"), raw.get("lang")
    if not isinstance(text, str) or not text.strip():
        raise ValueError(f"{where}: text must be a non-empty string")
    if expect not in EXPECTS:
        match = DENIED.match(expect) if isinstance(expect, str) else None
        if match is None:
            raise ValueError(f"{where}: expect {expect!r} is not one of {EXPECTS} or denied:<id>")
        if match.group(1) not in denied:
            raise ValueError(f"{where}: {expect!r} names no denied topic of the policy ({sorted(denied)})")
    if lang not in LANGS:
        raise ValueError(f"{where}: lang {lang!r} is not one of {LANGS}")
    entities = tuple(raw.get("entities") or ())
    if any(entity not in ENTITIES for entity in entities):
        raise ValueError(f"{where}: entities {list(entities)} not all in {ENTITIES}")
    if expect == "pii" and not entities:
        raise ValueError(f"{where}: a pii message must list its entities")
    return Message(text=text, expect=expect, lang=lang, entities=entities)
