"""Reports of suite runs: JUnit XML for CI systems, the JSON results document, a terminal summary table, and a
progress bar drawn only on a terminal.

JUnit: `<testsuites>` with one `<testsuite>` per suite file, one `<testcase>` per case; a failed case has one
`<failure>` whose `message` names the first failed assertion and whose text lists every assertion with its
expected and actual values; a case that could not complete has an `<error>`; the transcript (with each turn's
decisions) is in `<system-out>`. `time` is the turns' own latency (in replay, the recorded one), so a replayed
report is the same every time too.
"""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from typing import IO, Any

from widget_server.domain.testing.results import CaseResult, SuiteResult, judged_summary

BAR = 30


def _value(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, sort_keys=True)


def _seconds(ms: int) -> str:
    return f"{ms / 1000:.3f}"


def where(turn: int) -> str:
    """A failure's place: its turn, or (0) the whole conversation of a simulated case."""
    return f"turn {turn}" if turn else "conversation"


def _judged_line(j: dict[str, Any]) -> str:
    rate = f", pass^{j['k']} {j['pass_k']}, pass rate {j['pass_rate']}" if j["pass_rate"] is not None else ""
    reason = f": {j['reason']}" if j["reason"] else ""
    return f"judge ({where(j['turn'])}, {j['model']}): {j['status']}{rate}{reason} [rubric: {j['rubric']}]"


def transcript(case: CaseResult) -> str:
    lines = []
    if case.simulated is not None:
        sim = case.simulated
        headers = ", ".join(f"{k}: {v}" for k, v in sim["headers"].items())
        lines.append(f"simulated visitor {sim['name']!r}, goal: {sim['goal'] or '(none)'}, at most {sim['max_turns']}"
                     f" turns{f', headers: {headers}' if headers else ''}")
    for i, turn in enumerate(case.shown.turns, 1):
        lines.append(f"[turn {i}] visitor: {turn.shown}")
        for d in turn.decisions:
            lines.append(f"  guardrail: {d['action']} {d['reason'] or ''} ({d['source']})".replace(" ()", ""))
        if turn.escalated:
            lines.append("  escalated to a person")
        lines.append(f"[turn {i}] persona ({turn.finish_reason}): {turn.text}")
    if case.simulated is not None and case.shown.ended:
        lines.append(f"ended: {case.shown.ended}")
    lines += [_judged_line(j) for j in case.shown.judged]
    if case.shown.error:
        lines.append(f"error: {case.shown.error}")
    return "\n".join(lines) + "\n"


def _failure_text(case: CaseResult) -> str:
    return "\n".join(f"{where(f.turn)}: {f.assertion}: expected {_value(f.expected)}, actual {_value(f.actual)}"
                     for f in case.shown.failures) + "\n"


def _testcase(parent: ET.Element, suite: SuiteResult, case: CaseResult) -> None:
    el = ET.SubElement(parent, "testcase", name=case.name, classname=suite.suite, time=_seconds(case.total_ms))
    if case.status == "error":
        ET.SubElement(el, "error", message=case.shown.error or "error", type="error").text = case.shown.error
    elif case.status == "failed":
        first = case.shown.failures[0]
        message = f"{where(first.turn)}: {first.assertion}: {first.message}"
        ET.SubElement(el, "failure", message=message, type=first.assertion).text = _failure_text(case)
    ET.SubElement(el, "system-out").text = transcript(case)


def junit(results: list[SuiteResult]) -> str:
    """The runs as one JUnit XML document."""
    root = ET.Element("testsuites", name="widget-server test")
    totals = {"tests": 0, "failures": 0, "errors": 0}
    for suite in results:
        s = suite.summary
        ms = sum(c.total_ms for c in suite.cases)
        el = ET.SubElement(root, "testsuite", name=suite.suite, tests=str(s["cases"]), failures=str(s["failed"]),
                           errors=str(s["errors"]), skipped="0", time=_seconds(ms))
        for case in suite.cases:
            _testcase(el, suite, case)
        totals = {"tests": totals["tests"] + s["cases"], "failures": totals["failures"] + s["failed"],
                  "errors": totals["errors"] + s["errors"]}
    for k, v in totals.items():
        root.set(k, str(v))
    ET.indent(root)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"


def _judged_total(results: list[SuiteResult]) -> dict[str, Any]:
    return judged_summary([c for r in results for c in r.cases])


def summary_of(results: list[SuiteResult]) -> dict[str, Any]:
    keys = ("cases", "passed", "failed", "errors", "runs", "runs_passed")
    total: dict[str, Any] = {k: sum(r.summary[k] for r in results) for k in keys}
    total["pass_k"] = round(total["passed"] / total["cases"], 4) if total["cases"] else 1.0
    total["judged"] = _judged_total(results)
    return total


def json_report(results: list[SuiteResult]) -> str:
    """The runs as JSON (stable key order): each suite's results document, and the totals."""
    doc = {"suites": [r.to_json() for r in results], "summary": summary_of(results)}
    return json.dumps(doc, sort_keys=True, indent=2, ensure_ascii=False) + "\n"


def _cut(text: str, width: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[:width - 1] + "…"


def table(results: list[SuiteResult]) -> str:
    """The summary a terminal shows at the end: one row per case, then the totals."""
    rows = [("status", "suite", "case", "runs", "first failure")]
    for suite in results:
        for case in suite.cases:
            shown = case.shown
            first = (f"{where(shown.failures[0].turn)}: {shown.failures[0].assertion}: {shown.failures[0].message}"
                     if shown.failures else shown.error or "")
            rows.append((case.status.upper(), _cut(suite.suite, 24), _cut(case.name, 40),
                         f"{case.passes}/{len(case.attempts)}", _cut(first, 70)))
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    lines = ["  ".join(r[i].ljust(widths[i]) for i in range(4)) + "  " + r[4] for r in rows]
    t = summary_of(results)
    repeat = max((r.repeat for r in results), default=1)
    tail = f", pass^{repeat} {t['pass_k']:.2%}" if repeat > 1 or t["runs"] > t["cases"] else ""
    cases = f"{t['cases']} case" + ("s" if t["cases"] != 1 else "")
    lines.append(f"\n{cases}: {t['passed']} passed, {t['failed']} failed, {t['errors']} errors{tail}")
    if (judged := _judged_total(results))["assertions"]:
        rate = f", pass rate {judged['pass_rate']:.2%}" if judged["pass_rate"] is not None else ""
        why = next((j["reason"] for r in results for c in r.cases for a in c.attempts for j in a.judged
                    if j["status"] == "skipped"), "")
        lines.append(f"judged: {judged['assertions']} assertions: {judged['passed']} passed, {judged['failed']} "
                     f"failed, {judged['error']} errors, {judged['skipped']} skipped{f' ({why})' if why else ''}"
                     f"; {judged['samples_passed']}/{judged['samples']} verdicts passed{rate}")
    return "\n".join(line.rstrip() for line in lines)


class ProgressBar:
    """`[#####-----] 12/40 case name` redrawn in place, on a terminal only (CI logs get the table alone)."""

    def __init__(self, out: IO[str], total: int) -> None:
        self.out, self.total, self.done = out, total, 0
        self.on = out.isatty()

    def step(self, event: dict[str, Any]) -> None:
        self.done += 1
        if not self.on:
            return
        filled = BAR * self.done // max(self.total, 1)
        self.out.write(f"\r[{'#' * filled}{'-' * (BAR - filled)}] {self.done}/{self.total} "
                       f"{_cut(str(event.get('case', '')), 40):<40}")
        self.out.flush()

    def close(self) -> None:
        if self.on and self.done:
            self.out.write("\r" + " " * (BAR + 60) + "\r")
            self.out.flush()
