"""The judged tier: an OpenAI-compatible model (`WIDGET_JUDGE_BASE_URL`, `_API_KEY`, `_MODEL`) reads a
conversation and a rubric and answers a strict JSON verdict `{"pass": bool, "reason": str}`, `k` times; the
assertion holds when all k passed (pass^k), and its pass rate is reported beside it.

Never needed for the deterministic tier: with no judge configured (or `--no-judge`) a judged assertion is
`skipped`, with the reason. An answer that is not the verdict is that assertion's error, never a crash.

Answers are cached by `verdict_key` (the judge's model, the rubric, the transcript and the sample's index, so that
k samples are k questions): in memory for the run, and in the cassette, so that a replay needs no judge. A replay
asks the judge only for what its cassette lacks (a rubric changed since the recording), and only when one is
configured; the cassette is not written then.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
from dataclasses import dataclass
from typing import Any

from widget_server.backends.providers import Finish, ProviderRequest, Providers
from widget_server.domain.testing.suite import Judge, JudgeDefaults
from widget_server.errors import ProviderError

SYSTEM = ("You are a strict evaluator of a customer-support chat. You are given a rubric and a transcript. Decide "
          "whether the transcript meets the rubric. Answer with one JSON object and nothing else: "
          '{"pass": true or false, "reason": "one short sentence"}.')
TIMEOUT_S = 60.0
MAX_ANSWER = 4000  # characters of an answer kept (a judge that rambles is cut, and then not a verdict)
_FENCE = re.compile(r"^```(?:json)?\s*(.*?)\s*```$", re.DOTALL)


class NotAVerdict(ValueError):
    """The judge answered something other than `{"pass": bool, "reason": str}`."""


def verdict_key(model: str, rubric: str, transcript: str, sample: int) -> str:
    return hashlib.sha256(json.dumps([model, rubric, transcript, sample]).encode()).hexdigest()[:32]


def verdict(answer: str) -> dict[str, Any]:
    """The judge's answer as `{"pass", "reason"}`: a JSON object of exactly these two (a ```json fence around it
    is allowed), or `NotAVerdict` saying what it was instead."""
    text = answer.strip()
    fenced = _FENCE.match(text)
    try:
        doc = json.loads(fenced.group(1) if fenced else text)
    except ValueError:
        raise NotAVerdict(f"not JSON: {answer[:120]!r}") from None
    if not isinstance(doc, dict) or set(doc) != {"pass", "reason"}:
        raise NotAVerdict(f"not the object {{\"pass\", \"reason\"}}: {answer[:120]!r}")
    if not isinstance(doc["pass"], bool) or not isinstance(doc["reason"], str):
        raise NotAVerdict(f"pass must be true or false and reason a string: {answer[:120]!r}")
    return {"pass": doc["pass"], "reason": doc["reason"]}


@dataclass
class Judging:
    """How a run judges: whether at all (`--no-judge`), strictly (`--strict-judge`), with what defaults."""

    enabled: bool = True
    strict: bool = False
    defaults: JudgeDefaults | None = None


class Judges:
    """The judge of one suite's run: its answers cached in memory and in the cassette (`answers`)."""

    def __init__(self, providers: Providers, answers: dict[str, str], *, record: bool, replaying: bool,
                 judging: Judging) -> None:
        self.providers, self.answers, self.judging = providers, answers, judging
        self.record, self.replaying = record, replaying
        self.memo: dict[str, str] = {}

    @property
    def configured(self) -> bool:
        return self.providers.settings.judge_base_url is not None

    def model(self, judge: Judge) -> str:
        defaults = self.judging.defaults
        return judge.model or (defaults.model if defaults else None) or self.providers.settings.judge_model

    def k(self, judge: Judge) -> int:
        return judge.k or (self.judging.defaults.k if self.judging.defaults else 1)

    async def _ask(self, model: str, rubric: str, transcript: str) -> str:
        request = ProviderRequest(persona_name="Judge", system_prompt=SYSTEM, history=(), model=model,
                                  message=f"Rubric: {rubric}\n\nTranscript:\n{transcript}", temperature=0.0,
                                  max_tokens=300)
        parts: list[str] = []
        async with asyncio.timeout(TIMEOUT_S):
            async for item in self.providers.get("judge").stream(request):
                if not isinstance(item, Finish):
                    parts.append(item)
        return "".join(parts)[:MAX_ANSWER]

    async def _answer(self, model: str, rubric: str, transcript: str, sample: int) -> str | None:
        """The judge's answer to this sample: cached, in the cassette, or asked (None: no judge to ask)."""
        key = verdict_key(model, rubric, transcript, sample)
        found = self.memo[key] if key in self.memo else self.answers.get(key)
        if found is None:
            if not self.configured:
                return None
            found = await self._ask(model, rubric, transcript)
            if self.record:
                self.answers[key] = found
        self.memo[key] = found
        return found

    def _skipped(self, doc: dict[str, Any]) -> dict[str, Any]:
        why = ("--no-judge: judged assertions are skipped" if not self.judging.enabled else
               "no judge configured (WIDGET_JUDGE_BASE_URL)"
               + (", and the cassette has no verdict for it" if self.replaying else ""))
        if self.judging.strict:
            return {**doc, "status": "failed", "reason": f"{why} (--strict-judge)"}
        return {**doc, "status": "skipped", "reason": why}

    async def assess(self, judge: Judge, transcript: str, turn: int) -> dict[str, Any]:
        """The judged assertion's result: status passed | failed | skipped | error, its k verdicts, pass^k and the
        pass rate. `turn` is 1-based, 0 for the whole conversation."""
        model, k = self.model(judge), self.k(judge)
        doc: dict[str, Any] = {"turn": turn, "rubric": judge.rubric, "model": model, "k": k, "verdicts": [],
                               "passed": 0, "pass_k": None, "pass_rate": None, "reason": ""}
        if not self.judging.enabled:
            return self._skipped(doc)
        for sample in range(k):
            try:
                answer = await self._answer(model, judge.rubric, transcript, sample)
            except (ProviderError, TimeoutError) as exc:
                why = exc.message if isinstance(exc, ProviderError) else "no answer in time"
                return {**doc, "status": "error", "reason": f"the judge could not be asked: {why}"}
            if answer is None:
                return self._skipped(doc)
            try:
                doc["verdicts"].append(verdict(answer))
            except NotAVerdict as exc:
                doc["verdicts"].append({"error": str(exc)})
                return {**doc, "status": "error", "reason": f"the judge's answer is not the verdict: {exc}"}
        passed = sum(v["pass"] for v in doc["verdicts"])
        failed = next((v["reason"] for v in doc["verdicts"] if not v["pass"]), "")
        return {**doc, "passed": passed, "pass_k": passed == k, "pass_rate": round(passed / k, 4),
                "status": "passed" if passed == k else "failed", "reason": failed}
