"""Guardrails: pure functions over a compiled tenant policy (no I/O, nothing imported from the floors above).

`policy` validates the document, `compile` builds the matchers once, `check` judges a visitor's message and
`stream` filters the streamed reply in strict mode. `topics` matches messages against the topics' examples;
the one exception to "no I/O" is `embed`, which loads the embedding model from its package on first use (only
for a policy with topics).
"""

from __future__ import annotations

from widget_server.domain.guardrails.check import CheckContext, check_input
from widget_server.domain.guardrails.compile import CompiledPolicy, compile_policy
from widget_server.domain.guardrails.policy import Policy, parse_policy
from widget_server.domain.guardrails.stream import StrictFilter

__all__ = ["CheckContext", "CompiledPolicy", "Policy", "StrictFilter", "check_input", "compile_policy",
           "parse_policy"]
