"""`guard check|eval`: a policy file judged on one text, or scored on labelled cases (JSON lines)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import yaml

from widget_server.domain.guardrails import CompiledPolicy, compile_policy, parse_policy
from widget_server.domain.guardrails.evaluate import ACTIONS, evaluate, judge, parse_cases
from widget_server.edges.cli.common import yaml_problem
from widget_server.errors import WidgetError


def load_policy(path: Path) -> CompiledPolicy:
    try:
        doc = yaml.safe_load(path.read_text())
    except OSError as exc:
        raise WidgetError(f"cannot read {path}: {exc.strerror or exc}") from exc
    except yaml.YAMLError as exc:
        raise WidgetError(f"cannot read {path}: {yaml_problem(exc)}") from exc
    return compile_policy(parse_policy(doc))


def read_cases(path: Path) -> list[Any]:
    try:
        lines = path.read_text().splitlines()
    except OSError as exc:
        raise WidgetError(f"cannot read {path}: {exc.strerror or exc}") from exc
    return parse_cases(lines, str(path))


def cmd_guard_check(args: argparse.Namespace) -> int:
    decision = judge(load_policy(args.policy), args.text, args.source)
    print(f"{decision.action} {decision.reason or ''}".rstrip())
    if decision.action != "allow":
        print(decision.text)
    return 0


def cmd_guard_eval(args: argparse.Namespace) -> int:
    result = evaluate(load_policy(args.policy), read_cases(args.cases))
    print(json.dumps(result) if args.json else report(result))
    return 1 if result["failed"] else 0


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
