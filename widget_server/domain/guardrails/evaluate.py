"""`widget-server guard check|eval`: judge texts against a policy file, and score a policy on labelled cases.

A case is one JSON object a line: `{"text": …, "expect": {"action": …, "reason": "<prefix>"?},
"source": "input|output"?}`. Output cases are streamed through the strict filter in one piece.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from widget_server.domain.guard import Decision
from widget_server.domain.guardrails import CompiledPolicy, StrictFilter, check_input, compile_policy, parse_policy
from widget_server.errors import WidgetError

ACTIONS = ("allow", "refuse", "mask", "escalate", "block")


def load_policy(path: Path) -> CompiledPolicy:
    try:
        doc = yaml.safe_load(path.read_text())
    except OSError as exc:
        raise WidgetError(f"cannot read {path}: {exc.strerror or exc}") from exc
    except yaml.YAMLError as exc:
        raise WidgetError(f"cannot read {path}: {' '.join(str(exc).split())}") from exc
    return compile_policy(parse_policy(doc))


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


def read_cases(path: Path) -> list[Case]:
    try:
        lines = path.read_text().splitlines()
    except OSError as exc:
        raise WidgetError(f"cannot read {path}: {exc.strerror or exc}") from exc
    cases = []
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            raw = json.loads(line)
            expect = raw["expect"]
            case = Case(n, str(raw["text"]), str(expect["action"]), expect.get("reason"), raw.get("source", "input"))
        except (ValueError, KeyError, TypeError) as exc:
            raise WidgetError(f"{path}, line {n}: not a case ({exc})") from exc
        if case.action not in ACTIONS or case.source not in ("input", "output"):
            raise WidgetError(f"{path}, line {n}: unknown action {case.action!r} or source {case.source!r}")
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


def report(result: dict[str, Any]) -> str:
    """The evaluation as text for a terminal."""
    used = [a for a in ACTIONS if result["per_action"][a]["support"]
            or any(result["confusion"][e][a] for e in ACTIONS)]
    lines = [f"{result['passed']}/{result['cases']} cases passed", "",
             "confusion (rows: expected, columns: got)", " " * 10 + "".join(f"{a:>10}" for a in used)]
    lines += [f"{e:<10}" + "".join(f"{result['confusion'][e][a]:>10}" for a in used) for e in used]
    lines += ["", f"{'action':<10}{'precision':>10}{'recall':>10}{'f1':>10}{'support':>10}"]
    lines += [f"{a:<10}" + "".join(f"{result['per_action'][a][k]:>10}" for k in ("precision", "recall", "f1",
                                                                                   "support")) for a in used]
    if result["failed"]:
        lines += ["", "failed:"]
        lines += [f"  line {f['line']}: expected {f['expected']['action']} {f['expected']['reason'] or ''}".rstrip()
                  + f", got {f['got']['action']} {f['got']['reason'] or ''}".rstrip() + f"  {f['text']!r}"
                  for f in result["failed"]]
    lat = result["latency_ms"]
    lines += ["", f"latency: p50 {lat['p50']} ms, p95 {lat['p95']} ms"]
    return "\n".join(lines)
