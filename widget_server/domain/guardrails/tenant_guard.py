"""`TenantGuard`: applies a tenant's compiled guardrail policy (and a persona's own topics) to a conversation.

The one part of guardrails that reads storage, through the `PolicyStore` it is handed (the engine modules stay
pure). A policy is compiled when saved and the compiled form kept until the policy changes: after `ttl_s` only
its `updated_at` is compared, so another node's change is compiled once, within `ttl_s`. Sooner than that, a
save or delete is announced (`changed`; the app hands it to the conversation bus, which tells every node), and a
node told of a change (`forget`) reads the stamp again on its next message. Compiling (regexes, embedding topic
examples) runs in a worker thread within a time budget, never on the event loop.

A tenant without a policy (and a persona without topics) is let through. A policy or persona topics that cannot
be compiled (the stored document no longer validates, the embedding model is missing) fail closed: every message
is refused as `policy.unavailable`, never let through unchecked.

The guard keeps no per-conversation state: the caller hands in the conversation's `CheckContext` (refusals in a
row, the previous turn) and stores the one it gets back with the conversation.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any, Generic, Protocol, TypeVar

from pydantic import ValidationError

from widget_server.domain.guardrails import multilingual
from widget_server.domain.guardrails.check import CheckContext, check_input, masked_input
from widget_server.domain.guardrails.compile import CompiledPolicy, compile_policy
from widget_server.domain.guardrails.decision import Decision, OutputFilter, PassThroughFilter
from widget_server.domain.guardrails.embeddings import embed_cached
from widget_server.domain.guardrails.policy import Refusals, Topics, parse_policy
from widget_server.domain.guardrails.stream import StrictFilter
from widget_server.domain.guardrails.topics import CompiledTopics, compile_topics, has_examples, refers_back
from widget_server.errors import PersonaInvalid, PolicyError, PolicyNotFound, WidgetError

log = logging.getLogger(__name__)
Row = dict[str, Any]
T = TypeVar("T")
UNAVAILABLE = "policy.unavailable"
COMPILE_BUDGET_S = 120.0  # the largest policy allowed compiles in about 5 s on two busy cores


class PolicyStore(Protocol):
    """What the guard reads and writes (the storage backend has these)."""

    async def get_policy(self, tenant_id: str) -> Row | None: ...

    async def put_policy(self, tenant_id: str, doc: dict[str, Any]) -> Row: ...

    async def delete_policy(self, tenant_id: str) -> bool: ...

    async def get_persona(self, tenant_id: str, ref: str) -> Row | None: ...


@dataclasses.dataclass(frozen=True)
class GuardContext:
    tenant_id: str
    persona_id: str
    conversation_id: str
    channel: str


class Unavailable:
    """A stored policy or persona topics that cannot be compiled: the guard refuses instead of letting through."""


BROKEN = Unavailable()
Compiled = CompiledPolicy | Unavailable | None
PersonaTopics = CompiledTopics | Unavailable | None


class Stored:
    """In a draft: use what is stored (this part of the draft was not given)."""


STORED = Stored()


def validate(doc: Any) -> tuple[dict[str, Any], CompiledPolicy]:
    """The policy as stored (defaults filled in) and compiled; a `PolicyError` names a bad field."""
    policy = parse_policy(doc)
    return policy.model_dump(mode="json", exclude_none=True), compile_policy(policy)


def compile_persona_topics(doc: Any) -> CompiledTopics | None:
    """A persona's `topics` compiled, or None when it has none; raises when they cannot be."""
    topics = Topics.model_validate(doc) if doc else None
    if topics is None or not has_examples(topics):
        return None
    return compile_topics(topics, embed_cached, multilingual.embed_cached)


def unavailable() -> Decision:
    return Decision("refuse", UNAVAILABLE, Refusals().default)


async def off_loop(fn: Callable[[Any], T], arg: Any) -> T:
    """`fn(arg)` in a worker thread within `COMPILE_BUDGET_S`: compiling regexes and embedding topic examples
    must not stall every tenant's replies (a policy with 150 examples held the event loop for 3.8 s)."""
    try:
        return await asyncio.wait_for(asyncio.to_thread(fn, arg), COMPILE_BUDGET_S)
    except TimeoutError:
        raise PolicyError(f"compiling this policy took longer than {COMPILE_BUDGET_S:g} s: make it smaller") from None


class CompileCache(Generic[T]):
    """Compiled forms by key, each kept until its source changes: the source's stamp (a policy's `updated_at`,
    a persona's topics) is read again after `ttl_s`, and compiled again only when it differs, so another node's
    change is seen within `ttl_s` and nothing is compiled twice. Concurrent callers share one compilation."""

    def __init__(self, ttl_s: float) -> None:
        self.ttl_s = ttl_s
        self._entries: dict[Any, tuple[float, str, T]] = {}
        self._running: dict[tuple[Any, str], asyncio.Task[T]] = {}

    def peek(self, key: Any) -> T | None:
        entry = self._entries.get(key)
        return entry[2] if entry is not None else None

    def put(self, key: Any, stamp: str, value: T) -> None:
        self._entries[key] = (time.monotonic(), stamp, value)

    def stale(self, key: Any) -> None:
        """The source may have changed: its stamp is read again on the next `get` (compiled only if it differs)."""
        if (entry := self._entries.get(key)) is not None:
            self._entries[key] = (-float("inf"), entry[1], entry[2])

    async def get(self, key: Any, load: Callable[[], Awaitable[tuple[str, Any]]],
                  compile_: Callable[[Any], Awaitable[T]]) -> T:
        entry = self._entries.get(key)
        if entry is not None and time.monotonic() - entry[0] < self.ttl_s:
            return entry[2]
        stamp, source = await load()
        if entry is not None and entry[1] == stamp:
            self.put(key, stamp, entry[2])
            return entry[2]
        task = self._running.get((key, stamp))
        if task is None:
            task = self._running[(key, stamp)] = asyncio.ensure_future(compile_(source))
            task.add_done_callback(lambda _: self._running.pop((key, stamp), None))
        value = await asyncio.shield(task)
        self.put(key, stamp, value)
        return value


class TenantGuard:
    def __init__(self, store: PolicyStore, ttl_s: float = 5.0) -> None:
        self.store = store
        self._policies: CompileCache[Compiled] = CompileCache(ttl_s)
        self._persona_topics: CompileCache[CompiledTopics | Unavailable | None] = CompileCache(ttl_s)
        self._bare: CompiledPolicy | None = None  # the empty policy, for persona topics without a tenant policy
        # Told of every save and delete of a policy: ("policy", [tenant]); the app announces it to every node.
        self.changed: Callable[[str, list[str]], None] = lambda kind, key: None

    def forget(self, kind: str, key: list[str]) -> None:
        """A policy ("policy", [tenant]) or a persona ("persona", [tenant, persona]) changed, maybe on another
        node: what is cached of it is checked against storage on its next use."""
        if kind == "policy" and len(key) == 1:
            self._policies.stale(key[0])
        elif kind == "persona" and len(key) == 2:
            self._persona_topics.stale((key[0], key[1]))

    async def policy(self, tenant_id: str) -> Compiled:
        async def load() -> tuple[str, Any]:
            row = await self.store.get_policy(tenant_id)
            return (row["updated_at"].isoformat(), row["doc"]) if row is not None else ("", None)

        async def compile_(doc: Any) -> Compiled:
            if doc is None:
                return None
            try:
                return (await off_loop(validate, doc))[1]
            except (WidgetError, ValueError, RuntimeError) as exc:
                log.error("stored policy cannot be compiled; refusing every message",
                          extra={"tenant_id": tenant_id, "error": repr(exc)})
                return BROKEN

        return await self._policies.get(tenant_id, load, compile_)

    async def save(self, tenant_id: str, doc: Any) -> Row:
        stored, compiled = await off_loop(validate, doc)
        row = await self.store.put_policy(tenant_id, stored)
        self._policies.put(tenant_id, row["updated_at"].isoformat(), compiled)
        self.changed("policy", [tenant_id])
        return row

    async def delete(self, tenant_id: str) -> None:
        found = await self.store.delete_policy(tenant_id)
        self._policies.put(tenant_id, "", None)
        self.changed("policy", [tenant_id])
        if not found:
            raise PolicyNotFound("this tenant has no safety policy")

    async def persona_topics(self, ctx: GuardContext) -> CompiledTopics | Unavailable | None:
        """The persona's own topics, compiled (and cached like policies); None when it has none."""
        async def load() -> tuple[str, Any]:
            row = await self.store.get_persona(ctx.tenant_id, ctx.persona_id)
            doc = ((row or {}).get("doc") or {}).get("topics")
            return repr(doc), doc

        async def compile_(doc: Any) -> CompiledTopics | Unavailable | None:
            try:
                return await off_loop(compile_persona_topics, doc)
            except (ValidationError, WidgetError, RuntimeError) as exc:
                log.error("persona topics cannot be compiled; refusing every message",
                          extra={"tenant_id": ctx.tenant_id, "persona_id": ctx.persona_id, "error": repr(exc)})
                return BROKEN

        return await self._persona_topics.get((ctx.tenant_id, ctx.persona_id), load, compile_)

    async def _effective(self, ctx: GuardContext) -> Compiled:
        compiled = await self.policy(ctx.tenant_id)
        persona = await self.persona_topics(ctx)
        if isinstance(compiled, Unavailable) or isinstance(persona, Unavailable):
            return BROKEN
        if persona is not None:  # the persona's topics take the place of the tenant's
            if compiled is None:
                self._bare = self._bare or validate({"version": 1})[1]
                compiled = self._bare
            compiled = dataclasses.replace(compiled, topics=persona)
        return compiled

    async def check_input(self, ctx: GuardContext, text: str, state: CheckContext) -> tuple[Decision, CheckContext]:
        """The decision on a visitor's message, and the conversation's guardrail state after it."""
        compiled = await self._effective(ctx)
        if isinstance(compiled, Unavailable):
            return unavailable(), counted(state, unavailable())
        if compiled is None:
            return Decision("allow", text=text), state
        decision = check_input(compiled, text, state)
        after = counted(state, decision)
        if compiled.topics is not None and not decision.stops and not (state.previous and refers_back(text)):
            # A follow-up that points back ("and that one?") keeps the turn it points at as the context of the
            # next one, so that "and in red?" after it is still read with what it is about.
            after = dataclasses.replace(after, previous=decision.text or text)
        return decision, after

    async def mask_context(self, ctx: GuardContext, texts: list[str]) -> list[str]:
        """Visitors' messages given as context, masked as the policy masks a visitor's message (see
        `check.masked_input`); unchanged without a policy."""
        compiled = await self._effective(ctx)
        if not isinstance(compiled, CompiledPolicy):
            return texts
        return [masked_input(compiled, t) for t in texts]

    def output_filter(self, ctx: GuardContext) -> OutputFilter:
        # The turn checked its input first, so the policy is cached (a stale entry beats none here).
        return _filter(self._policies.peek(ctx.tenant_id))

    async def draft(self, policy: Any = STORED, topics: Any = STORED) -> DraftGuard:
        """This guard with an unsaved draft in place of what is stored: a policy document (None: no policy) and/or
        a persona's topics (None: none). Each is validated and compiled as a saved one would be (`PolicyError`
        for the policy, `PersonaInvalid` for the topics, naming the field), and stored nowhere."""
        compiled_policy: Compiled | Stored = STORED
        if not isinstance(policy, Stored):
            compiled_policy = None if policy is None else (await off_loop(validate, policy))[1]
        compiled_topics: PersonaTopics | Stored = STORED
        if not isinstance(topics, Stored):
            try:
                compiled_topics = await off_loop(compile_persona_topics, topics)
            except ValidationError as exc:
                found = [{"field": ".".join(["topics", *(str(p) for p in e["loc"])]),
                          "message": e["msg"].removeprefix("Value error, "), "type": e["type"]}
                         for e in exc.errors(include_url=False)]
                raise PersonaInvalid(f"invalid field: {found[0]['field']}", details={"errors": found}) from None
        return DraftGuard(self, compiled_policy, compiled_topics)


def _filter(compiled: Compiled) -> OutputFilter:
    return StrictFilter(compiled) if isinstance(compiled, CompiledPolicy) else PassThroughFilter()


class DraftGuard(TenantGuard):
    """A tenant's guard with a draft policy and/or draft persona topics in place of the stored ones (the console's
    playground runs a turn against a draft with it). What the draft leaves out is read through the tenant's guard,
    so the same decisions come out of the same documents; nothing of the draft is cached or stored."""

    def __init__(self, base: TenantGuard, policy: Compiled | Stored, topics: PersonaTopics | Stored) -> None:
        super().__init__(base.store)
        self.base, self.draft_policy, self.draft_topics = base, policy, topics

    async def policy(self, tenant_id: str) -> Compiled:
        if isinstance(self.draft_policy, Stored):
            return await self.base.policy(tenant_id)
        return self.draft_policy

    async def persona_topics(self, ctx: GuardContext) -> PersonaTopics:
        if isinstance(self.draft_topics, Stored):
            return await self.base.persona_topics(ctx)
        return self.draft_topics

    def output_filter(self, ctx: GuardContext) -> OutputFilter:
        if isinstance(self.draft_policy, Stored):
            return self.base.output_filter(ctx)
        return _filter(self.draft_policy)

    async def save(self, tenant_id: str, doc: Any) -> Row:
        raise RuntimeError("a draft guard saves nothing: save through the tenant's guard")

    async def delete(self, tenant_id: str) -> None:
        raise RuntimeError("a draft guard deletes nothing: delete through the tenant's guard")


def counted(state: CheckContext, decision: Decision) -> CheckContext:
    """Refusals in a row: a refusal or block adds one; anything else starts the count again."""
    refusals = state.refusals + 1 if decision.action in ("refuse", "block") else 0
    return dataclasses.replace(state, refusals=refusals)
