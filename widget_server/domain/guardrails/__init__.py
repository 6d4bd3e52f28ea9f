"""Guardrails: everything that judges a visitor's message or a streamed reply against a tenant's policy.

The engine is pure functions over a compiled policy (no I/O, nothing imported from the floors above):
`policy` validates the document, `compile` builds the matchers once, `check` judges a visitor's message,
`stream` filters the streamed reply in strict mode, `topics` matches messages against the topics' examples,
`decision` holds what they decide. The one exception to "no I/O" is `embeddings`, which loads the embedding model
from its package on first use (only for a policy with topics).

Around the engine: `tenant_guard` applies a tenant's policy to a conversation (the only module that reads
policies, through the store it is handed) and `evaluate` scores a policy on labelled cases.
"""

from __future__ import annotations

from widget_server.domain.guardrails.check import CheckContext, check_input
from widget_server.domain.guardrails.compile import CompiledPolicy, compile_policy
from widget_server.domain.guardrails.decision import Decision
from widget_server.domain.guardrails.policy import Policy, parse_policy
from widget_server.domain.guardrails.stream import StrictFilter

__all__ = ["CheckContext", "CompiledPolicy", "Decision", "Policy", "StrictFilter", "check_input", "compile_policy",
           "parse_policy"]
