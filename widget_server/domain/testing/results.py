"""What a suite run found: per case its runs (`repeat`), each run's turns and failures; the summary with pass^k.

`SuiteResult.to_json()` is the results document of every edge (the JSON report, `GET /v1/test-runs/{id}`). It
holds no id, clock time or run duration, so a replayed suite gives the same document every time; a case's
`turns` and `failures` are those of its first run that did not pass (or of its first run, when all passed).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from widget_server.domain.testing.assertions import Failure, Observation


@dataclass
class Attempt:
    """One run of a case: its turns as observed, what failed, or why it could not complete."""

    turns: list[Observation] = field(default_factory=list)
    failures: list[Failure] = field(default_factory=list)
    error: str | None = None
    judged: list[dict[str, Any]] = field(default_factory=list)  # each judged assertion's result (`judge.assess`)
    ended: str | None = None  # why a simulated conversation ended: escalated | visitor_done | max_turns | error

    @property
    def status(self) -> str:
        return "error" if self.error is not None else "failed" if self.failures else "passed"


@dataclass
class CaseResult:
    name: str
    tags: list[str] = field(default_factory=list)
    attempts: list[Attempt] = field(default_factory=list)
    simulated: dict[str, Any] | None = None  # the simulated visitor: name, goal, max_turns, headers

    @property
    def status(self) -> str:
        states = {a.status for a in self.attempts}
        return "error" if "error" in states else "failed" if "failed" in states else "passed"

    @property
    def passes(self) -> int:
        return sum(a.status == "passed" for a in self.attempts)

    @property
    def shown(self) -> Attempt:
        return next((a for a in self.attempts if a.status != "passed"), self.attempts[0] if self.attempts else
                    Attempt())

    @property
    def total_ms(self) -> int:
        return sum(int(t.timing.get("total_ms") or 0) for a in self.attempts for t in a.turns)

    def to_json(self) -> dict[str, Any]:
        shown = self.shown
        doc = {"name": self.name, "tags": self.tags, "status": self.status, "runs": len(self.attempts),
               "passes": self.passes, "turns": [t.to_json() for t in shown.turns],
               "failures": [f.to_json() for f in shown.failures], "error": shown.error, "judged": shown.judged}
        if self.simulated is not None:
            doc["simulated"] = {**self.simulated, "ended": shown.ended}
        return doc


def judged_summary(cases: list[CaseResult]) -> dict[str, Any]:
    """The judged assertions of every run: how many passed, failed, errored and were skipped; their samples."""
    every = [j for c in cases for a in c.attempts for j in a.judged]
    out: dict[str, Any] = {s: sum(j["status"] == s for j in every) for s in ("passed", "failed", "error", "skipped")}
    samples = sum(len(j["verdicts"]) for j in every if j["status"] in ("passed", "failed"))
    passed = sum(j["passed"] for j in every if j["status"] in ("passed", "failed"))
    return {"assertions": len(every), **out, "samples": samples, "samples_passed": passed,
            "pass_rate": round(passed / samples, 4) if samples else None}


@dataclass
class SuiteResult:
    suite: str
    mode: str  # live | record | replay
    repeat: int
    cases: list[CaseResult] = field(default_factory=list)

    @property
    def summary(self) -> dict[str, Any]:
        n = len(self.cases)
        passed = sum(c.status == "passed" for c in self.cases)
        runs = sum(len(c.attempts) for c in self.cases)
        return {"cases": n, "passed": passed, "failed": sum(c.status == "failed" for c in self.cases),
                "errors": sum(c.status == "error" for c in self.cases), "repeat": self.repeat, "runs": runs,
                "runs_passed": sum(c.passes for c in self.cases),
                "pass_k": round(passed / n, 4) if n else 1.0,  # the share of cases that passed every run
                "judged": judged_summary(self.cases)}

    @property
    def ok(self) -> bool:
        return all(c.status == "passed" for c in self.cases)

    def to_json(self) -> dict[str, Any]:
        return {"suite": self.suite, "mode": self.mode, "summary": self.summary,
                "cases": [c.to_json() for c in self.cases]}


def suite_result_of(doc: dict[str, Any]) -> SuiteResult:
    """A results document (`SuiteResult.to_json()`, as `GET /v1/test-runs/{id}` gives it) back as a result, so that
    a run on a remote server is reported like a local one. A case keeps its shown run and its pass count."""
    result = SuiteResult(str(doc["suite"]), str(doc.get("mode") or "live"), int(doc["summary"].get("repeat") or 1))
    for c in doc.get("cases", []):
        turns = [Observation(visitor=t["visitor"], shown=t["shown"], text=t["reply"], finish_reason=t["finish_reason"],
                             decisions=t["decisions"], usage=t["usage"], timing=t["timing"], events=t["events"],
                             provider_called=t["provider_called"], escalated=t["escalated"], error=t.get("error"))
                 for t in c.get("turns", [])]
        failures = [Failure(f["assertion"], f["expected"], f["actual"], int(f.get("turn") or 0), f.get("message", ""))
                    for f in c.get("failures", [])]
        shown = Attempt(turns, failures, c.get("error"), list(c.get("judged") or []),
                        (c.get("simulated") or {}).get("ended"))
        runs, passes = int(c.get("runs") or 1), int(c.get("passes") or 0)
        attempts = [shown] if shown.status != "passed" or runs == 0 else []
        attempts += [shown if not attempts and i == 0 else Attempt() for i in range(passes)]
        attempts += [Attempt(failures=failures, error=c.get("error")) for _ in range(max(runs - len(attempts), 0))]
        simulated = {k: v for k, v in c["simulated"].items() if k != "ended"} if c.get("simulated") else None
        result.cases.append(CaseResult(str(c["name"]), list(c.get("tags") or []), attempts, simulated))
    return result
