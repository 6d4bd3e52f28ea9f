"""A simulated visitor: a test persona played by a model, writing the visitor's side of a test conversation.

The visitor model is the server's `simulator` provider: `WIDGET_SIMULATOR_BASE_URL` (with `_API_KEY` and
`_MODEL`; the suite's `simulator: {model, temperature, max_tokens}` refines it), else the bundled local model. It
is told who it is (the test persona's `system_prompt` and `description`), what it wants (`goal`) and what its
browser sends (`headers`: an `Accept-Language` is the language it writes in), and it reads the conversation so
far with the roles swapped: the persona's replies are what it is told, its own messages what it said. It writes
the next visitor message, or `STOP` when it is done (its goal reached, or given up); text before `STOP` is sent
as its last message.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

from widget_server.backends.providers import Finish, Provider, ProviderRequest, Turn
from widget_server.backends.storage import Storage
from widget_server.domain.testing.personas import name_key
from widget_server.domain.testing.suite import Case, Simulator, SuiteInvalid

STOP = "[END]"
DEFAULT_MAX_TURNS = 10
OPENING = "(The chat window opens.)"
TIMEOUT_S = 120.0


@dataclass(frozen=True)
class Visitor:
    """A test persona, as a case plays it."""

    name: str
    description: str
    system_prompt: str
    headers: dict[str, str] = field(default_factory=dict)
    goal: str = ""
    max_turns: int = DEFAULT_MAX_TURNS

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "goal": self.goal, "max_turns": self.max_turns, "headers": dict(self.headers)}

    def header(self, name: str) -> str | None:
        return next((v for k, v in self.headers.items() if k.lower() == name.lower()), None)


async def visitor_of(storage: Storage, tenant_id: str, case: Case) -> Visitor:
    """The case's simulated visitor: its test persona (stored, by name; or inline), its goal and turn budget (the
    case's, else the test persona's). A name the tenant has no test persona of is a `SuiteInvalid` naming it."""
    ref = case.visitor_persona
    assert ref is not None  # (a simulated case)
    if ref.inline is not None:
        doc: dict[str, Any] = ref.inline.model_dump()
    else:
        assert ref.name is not None
        row = await storage.test_personas.get_by_name(tenant_id, name_key(ref.name))
        if row is None:
            raise SuiteInvalid(f"cases: {case.name!r}: visitor_persona.name: the tenant has no test persona named "
                               f"{ref.name!r} (see GET /v1/test-personas)",
                               details={"errors": [{"field": "visitor_persona.name", "message": "no such test persona",
                                                    "name": ref.name}]})
        doc = row["doc"]
    return Visitor(str(doc["name"]), str(doc.get("description") or ""), str(doc.get("system_prompt") or ""),
                   dict(doc.get("headers") or {}), case.goal or str(doc.get("goal") or ""),
                   case.max_turns or int(doc.get("max_turns") or DEFAULT_MAX_TURNS))


def instructions(visitor: Visitor, persona_name: str) -> str:
    """The visitor model's system prompt."""
    parts = [visitor.system_prompt.strip(), f"About you: {visitor.description.strip()}" if visitor.description
             else "", f"Your goal in this conversation: {visitor.goal.strip()}" if visitor.goal else ""]
    if (language := visitor.header("Accept-Language")) is not None:
        parts.append(f"Your browser asks for the language {language}: write in it.")
    parts.append(f"You are a visitor of a website, chatting with {persona_name}, its assistant. Write only your "
                 f"next message, short, as a visitor would type it. When your goal is reached, or you give up, "
                 f"write {STOP}.")
    return "\n\n".join(p for p in parts if p)


def request(visitor: Visitor, persona: dict[str, Any], said: list[tuple[str, str]],
            simulator: Simulator | None) -> ProviderRequest:
    """The visitor model's request for the next message. `said` is the conversation so far, as (visitor message,
    persona reply) pairs; the roles are swapped: the persona's replies come to the visitor model as the other
    side's messages, and the visitor's own as its answers."""
    doc = persona["doc"]
    sim = simulator or Simulator()
    history: list[Turn] = []
    heard = str(doc.get("greeting") or "") or OPENING
    for sent, reply in said:
        history += [Turn("visitor", heard), Turn("persona", sent)]
        heard = reply or "(no answer)"
    return ProviderRequest(persona_name=visitor.name, system_prompt=instructions(visitor, str(doc["name"])),
                           history=tuple(history), message=heard, model=sim.model, temperature=sim.temperature,
                           max_tokens=sim.max_tokens)


def parse(written: str) -> tuple[str, bool]:
    """What the visitor model wrote, as the message to send ("" for none) and whether the visitor is done."""
    before, stop, _ = written.partition(STOP)
    return " ".join(before.split()), bool(stop)


async def write(provider: Provider, req: ProviderRequest) -> str:
    """The visitor model's whole answer (its stream, joined)."""
    parts: list[str] = []
    async with asyncio.timeout(TIMEOUT_S):
        async for item in provider.stream(req):
            if not isinstance(item, Finish):
                parts.append(item)
    return "".join(parts)
