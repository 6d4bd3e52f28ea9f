"""Judge texts against a compiled policy, and score a policy on labelled cases (`widget-server guard check|eval`).

A case is one JSON object a line: `{"text": …, "expect": {"action": …, "reason": "<prefix>"?},
"source": "input|output"?}`. Output cases are streamed through the strict filter in one piece. Pure: the CLI
reads the files and prints the report.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any

from widget_server.domain.guardrails.check import check_input
from widget_server.domain.guardrails.compile import CompiledPolicy
from widget_server.domain.guardrails.decision import Decision
from widget_server.domain.guardrails.stream import StrictFilter
from widget_server.errors import WidgetError

ACTIONS = ("allow", "refuse", "mask", "escalate", "block")


def judge(cp: CompiledPolicy, text: str, source: str = "input") -> Decision:
    """The decision on a text as a visitor's message, or as a whole reply streamed through the filter."""
    if source == "input":
        return check_input(cp, text)
    out = StrictFilter(cp)
    released, decision = out.feed(text)
    released += out.flush()
    decision = decision or out.stopped
    if decision is not None:
        return decision
    if out.masked:
        return Decision("mask", out.masked[0], released)
    return Decision("allow", text=released)


@dataclass
class Case:
    line: int
    text: str
    action: str
    reason: str | None
    source: str


def parse_cases(lines: list[str], name: str) -> list[Case]:
    """Cases from JSON lines (blank lines skipped); a `WidgetError` names the file (`name`) and the bad line."""
    cases = []
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            raw = json.loads(line)
            expect = raw["expect"]
            case = Case(n, str(raw["text"]), str(expect["action"]), expect.get("reason"), raw.get("source", "input"))
        except (ValueError, KeyError, TypeError) as exc:
            raise WidgetError(f"{name}, line {n}: not a case ({exc})") from exc
        if case.action not in ACTIONS or case.source not in ("input", "output"):
            raise WidgetError(f"{name}, line {n}: unknown action {case.action!r} or source {case.source!r}")
        cases.append(case)
    return cases


def _quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else 0.0


def evaluate(cp: CompiledPolicy, cases: list[Case]) -> dict[str, Any]:
    """The confusion matrix, precision/recall/F1 per action, the failed cases and latency of a policy."""
    confusion = {a: dict.fromkeys(ACTIONS, 0) for a in ACTIONS}
    failed, latencies = [], []
    for case in cases:
        started = time.perf_counter()
        got = judge(cp, case.text, case.source)
        latencies.append((time.perf_counter() - started) * 1000)
        confusion[case.action][got.action] += 1
        reason_ok = case.reason is None or (got.reason or "").startswith(case.reason)
        if got.action != case.action or not reason_ok:
            failed.append({"line": case.line, "text": case.text, "source": case.source,
                           "expected": {"action": case.action, "reason": case.reason},
                           "got": {"action": got.action, "reason": got.reason}})
    per_action = {}
    for a in ACTIONS:
        tp = confusion[a][a]
        predicted = sum(confusion[e][a] for e in ACTIONS)
        support = sum(confusion[a].values())
        precision = tp / predicted if predicted else 0.0
        recall = tp / support if support else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        per_action[a] = {"precision": round(precision, 4), "recall": round(recall, 4), "f1": round(f1, 4),
                         "support": support}
    return {"cases": len(cases), "passed": len(cases) - len(failed), "failed": failed, "confusion": confusion,
            "per_action": per_action, "latency_ms": {"p50": round(_quantile(latencies, 0.5), 3),
                                                     "p95": round(_quantile(latencies, 0.95), 3)}}
