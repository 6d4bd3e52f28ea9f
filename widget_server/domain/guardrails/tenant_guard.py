"""`PolicyGuard`: the `Guard` that applies a tenant's compiled guardrail policy.

Policies are compiled when saved and kept in a per-process cache; `save` and `delete` invalidate it, and an
entry is read again from storage after `ttl_s` so that other nodes see a change soon. A tenant without a
policy gets the same pass-through as `AllowAll`.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any

from pydantic import ValidationError

from widget_server.backends.storage import Storage
from widget_server.domain.guard import Decision, GuardContext, OutputFilter, PassThroughFilter
from widget_server.domain.guardrails import (
    CheckContext,
    CompiledPolicy,
    StrictFilter,
    check_input,
    compile_policy,
    parse_policy,
)
from widget_server.domain.guardrails.embed import embed_cached
from widget_server.domain.guardrails.policy import Topics
from widget_server.domain.guardrails.topics import CompiledTopics, compile_topics, refers_back
from widget_server.errors import PolicyNotFound

MAX_CONVERSATIONS = 100_000  # refusal counters kept; the oldest are dropped past this


def validate(doc: Any) -> tuple[dict[str, Any], CompiledPolicy]:
    """The policy as stored (defaults filled in) and compiled; a `PolicyError` names a bad field."""
    policy = parse_policy(doc)
    return policy.model_dump(mode="json", exclude_none=True), compile_policy(policy)


class CountingFilter:
    """The strict filter, telling the guard when it refused."""

    def __init__(self, inner: StrictFilter, guard: PolicyGuard, conversation_id: str) -> None:
        self.inner, self.guard, self.conversation_id = inner, guard, conversation_id

    @property
    def stopped(self) -> Decision | None:
        return self.inner.stopped

    @property
    def masked(self) -> list[str]:
        return self.inner.masked

    def feed(self, text: str) -> tuple[str, Decision | None]:
        released, decision = self.inner.feed(text)
        if decision is not None and decision.stops:
            self.guard.count(self.conversation_id, decision)
        return released, decision

    def flush(self) -> str:
        tail = self.inner.flush()
        if self.inner.stopped is not None:
            self.guard.count(self.conversation_id, self.inner.stopped)
        return tail


class PolicyGuard:
    def __init__(self, storage: Storage, ttl_s: float = 5.0) -> None:
        self.storage = storage
        self.ttl_s = ttl_s
        self._cache: dict[str, tuple[float, CompiledPolicy | None]] = {}
        self._persona_topics: dict[tuple[str, str], tuple[float, str, CompiledTopics | None]] = {}
        self._bare: CompiledPolicy | None = None  # the empty policy, for persona topics without a tenant policy
        self._refusals: dict[str, int] = {}
        self._previous: dict[str, str] = {}  # the visitor's last turn let through, the context of a follow-up

    async def policy(self, tenant_id: str) -> CompiledPolicy | None:
        cached = self._cache.get(tenant_id)
        if cached is not None and time.monotonic() - cached[0] < self.ttl_s:
            return cached[1]
        row = await self.storage.get_policy(tenant_id)
        compiled = validate(row["doc"])[1] if row else None
        self._cache[tenant_id] = (time.monotonic(), compiled)
        return compiled

    async def save(self, tenant_id: str, doc: Any) -> dict[str, Any]:
        stored, compiled = validate(doc)
        row = await self.storage.put_policy(tenant_id, stored)
        self._cache[tenant_id] = (time.monotonic(), compiled)
        return row

    async def delete(self, tenant_id: str) -> None:
        found = await self.storage.delete_policy(tenant_id)
        self._cache[tenant_id] = (time.monotonic(), None)
        if not found:
            raise PolicyNotFound("this tenant has no safety policy")

    def count(self, conversation_id: str, decision: Decision) -> None:
        """Refusals in a row per conversation; anything that is not a refusal starts the count again."""
        if decision.action in ("refuse", "block"):
            if len(self._refusals) >= MAX_CONVERSATIONS and conversation_id not in self._refusals:
                self._refusals.pop(next(iter(self._refusals)))
            self._refusals[conversation_id] = self._refusals.get(conversation_id, 0) + 1
        else:
            self._refusals.pop(conversation_id, None)

    async def persona_topics(self, ctx: GuardContext) -> CompiledTopics | None:
        """The persona's own topics, compiled (and cached like policies); None when it has no examples.
        Rules without examples are left out (the persona document allows them)."""
        key = (ctx.tenant_id, ctx.persona_id)
        cached = self._persona_topics.get(key)
        if cached is not None and time.monotonic() - cached[0] < self.ttl_s:
            return cached[2]
        row = await self.storage.get_persona(ctx.tenant_id, ctx.persona_id)
        doc = ((row or {}).get("doc") or {}).get("topics") or {}
        stamp = repr(doc)
        if cached is not None and cached[1] == stamp:
            self._persona_topics[key] = (time.monotonic(), stamp, cached[2])
            return cached[2]
        rules = {side: [r for r in doc.get(side, []) if r.get("examples")] for side in ("allowed", "denied")}
        compiled = None
        if rules["allowed"] or rules["denied"]:
            try:
                topics = Topics.model_validate({**rules, "off_topic": doc.get("off_topic", "refuse")})
            except ValidationError:  # an id the policy would refuse (the persona document is laxer)
                topics = None
            compiled = compile_topics(topics, embed_cached) if topics is not None else None
        self._persona_topics[key] = (time.monotonic(), stamp, compiled)
        return compiled

    async def check_input(self, ctx: GuardContext, text: str) -> Decision:
        compiled = await self.policy(ctx.tenant_id)
        persona = await self.persona_topics(ctx)
        if persona is not None:  # the persona's topics take the place of the tenant's
            if compiled is None:
                self._bare = self._bare or validate({"version": 1})[1]
                compiled = self._bare
            compiled = dataclasses.replace(compiled, topics=persona)
        if compiled is None:
            return Decision("allow", text=text)
        context = CheckContext(self._refusals.get(ctx.conversation_id, 0), self._previous.get(ctx.conversation_id))
        decision = check_input(compiled, text, context)
        self.count(ctx.conversation_id, decision)
        if compiled.topics is not None and not decision.stops and not (context.previous and refers_back(text)):
            # A follow-up that points back ("and that one?") keeps the turn it points at as the context of the
            # next one, so that "and in red?" after it is still read with what it is about.
            self.remember(ctx.conversation_id, decision.text or text)
        return decision

    def remember(self, conversation_id: str, text: str) -> None:
        if len(self._previous) >= MAX_CONVERSATIONS and conversation_id not in self._previous:
            self._previous.pop(next(iter(self._previous)))
        self._previous.pop(conversation_id, None)
        self._previous[conversation_id] = text

    def output_filter(self, ctx: GuardContext) -> OutputFilter:
        # The turn checked its input first, so the policy is cached (a stale entry beats none here).
        cached = self._cache.get(ctx.tenant_id)
        if cached is None or cached[1] is None:
            return PassThroughFilter()
        return CountingFilter(StrictFilter(cached[1]), self, ctx.conversation_id)
