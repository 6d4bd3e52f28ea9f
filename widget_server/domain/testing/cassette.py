"""Record and replay: the model's output per suite, case, repeat and turn, so that CI reruns a suite byte for byte
with no model call, and a guardrail or policy change is tested against fixed replies.

A cassette is JSON with a stable key order: `{"version": 1, "suites": {name: {"canary", "cases": {case: [[turn,
…] per repeat]}, "judge": {key: answer}}}}`, each turn `{"output": {"chunks": […], "finish": {…}} | null, "timing":
{ttft_ms, total_ms}, "visitor"?: text}` (`output` is null where the model was not called; `visitor` is what the
visitor model wrote, in a simulated case, where the last turn may hold only that: the visitor said it was done).
`judge` keeps the judge's answers by `judge.verdict_key` (model, rubric, transcript, sample), so a replay needs
no judge either. Recording wraps the turn's provider and keeps every chunk as it
came; replaying substitutes a provider that streams the stored chunks (the same chunking, so the output check
sees the same splits) and never builds a real one. A turn the cassette lacks fails with `NotInCassette`, a
provider error that ends the turn: the runner reports it as the case's error, never as a model call.

Latency in replay: a replayed turn reports the timing recorded with it, so `max_ttft_ms` and `max_total_ms` judge
the recorded run and a replayed result is the same every time.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncGenerator
from dataclasses import dataclass, field
from typing import Any

from widget_server.backends.providers import Finish, Provider, ProviderRequest, Providers, Usage
from widget_server.errors import InvalidRequest, ProviderError

VERSION = 1


class NotInCassette(ProviderError):
    code = "test.not_in_cassette"
    retryable = False


class CassetteInvalid(InvalidRequest):
    code = "request.invalid_cassette"


def _chunks(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(c, str) for c in value)


def _turn_ok(turn: Any) -> bool:
    if not isinstance(turn, dict) or not isinstance(turn.get("timing"), dict):
        return False
    out = turn.get("output")
    if not isinstance(turn.get("visitor", ""), str):
        return False
    return out is None or (isinstance(out, dict) and _chunks(out.get("chunks")) and isinstance(out.get("finish"), dict))


def _answers(value: Any) -> bool:
    return value is None or (isinstance(value, dict) and all(isinstance(a, str) for a in value.values()))


def _valid(data: Any) -> bool:
    if not isinstance(data, dict) or data.get("version") != VERSION or not isinstance(data.get("suites"), dict):
        return False
    for entry in data["suites"].values():
        if not isinstance(entry, dict) or not isinstance(entry.get("cases"), dict) or not _answers(entry.get("judge")):
            return False
        for runs in entry["cases"].values():
            if not isinstance(runs, list) or not all(isinstance(r, list) and all(map(_turn_ok, r)) for r in runs):
                return False
    return True


@dataclass
class Cassette:
    data: dict[str, Any] = field(default_factory=lambda: {"version": VERSION, "suites": {}})

    @classmethod
    def from_json(cls, text: str, source: str = "cassette") -> Cassette:
        try:
            data = json.loads(text)
        except (ValueError, RecursionError) as exc:
            raise CassetteInvalid(f"{source}: not a cassette (not JSON: {exc})") from None
        if not _valid(data):
            raise CassetteInvalid(f"{source}: not a cassette of version {VERSION} (record it again with --record)")
        return cls(data)

    def to_json(self) -> str:
        return json.dumps(self.data, sort_keys=True, indent=1, ensure_ascii=False) + "\n"

    def suite(self, name: str) -> dict[str, Any]:
        entry: dict[str, Any] = self.data["suites"].setdefault(name, {"canary": None, "cases": {}})
        return entry


class Tape:
    """Where a suite's run is in its cassette: the runner moves it turn by turn, the providers read or write it."""

    def __init__(self, entry: dict[str, Any] | None, *, record: bool) -> None:
        self.entry = entry
        self.record = record
        self.at: tuple[str, int, int] = ("", 0, 0)
        self.output: dict[str, Any] | None = None  # what the model said in this turn (recording)
        self.visitor: str | None = None  # what the visitor model wrote for this turn (recording, simulated)
        self.missed = False

    @property
    def replaying(self) -> bool:
        return self.entry is not None and not self.record

    def begin(self, case: str, repeat: int, turn: int) -> None:
        self.at, self.output, self.visitor, self.missed = (case, repeat, turn), None, None, False
        if self.record and self.entry is not None and turn == 0:
            runs = self.entry["cases"].setdefault(case, [])
            del runs[repeat:]
            runs.append([])

    def stored(self) -> dict[str, Any] | None:
        """The recorded turn here, or None when the cassette does not have it."""
        case, repeat, turn = self.at
        runs = (self.entry or {}).get("cases", {}).get(case) or []
        turns = runs[repeat] if repeat < len(runs) else []
        return turns[turn] if turn < len(turns) else None

    def keep(self, timing: dict[str, Any]) -> None:
        """Recording: this turn, as it went."""
        if self.record and self.entry is not None:
            case, repeat, _ = self.at
            turn: dict[str, Any] = {"output": self.output, "timing": dict(timing)}
            if self.visitor is not None:
                turn["visitor"] = self.visitor
            self.entry["cases"][case][repeat].append(turn)

    def stored_visitor(self) -> str | None:
        """Replaying: what the visitor model wrote for this turn, or None when the cassette does not have it."""
        turn = self.stored()
        return turn.get("visitor") if turn is not None else None

    @property
    def answers(self) -> dict[str, str]:
        """The judge's answers this suite's cassette keeps (an empty mapping without a cassette)."""
        if self.entry is None:
            return {}
        kept: dict[str, str] = self.entry.setdefault("judge", {})
        return kept


class RecordingProvider:
    def __init__(self, inner: Provider, tape: Tape) -> None:
        self.inner, self.tape, self.kind = inner, tape, inner.kind

    async def stream(self, request: ProviderRequest) -> AsyncGenerator[str | Finish, None]:
        chunks: list[str] = []
        async with contextlib.aclosing(self.inner.stream(request)) as items:
            async for item in items:
                if isinstance(item, Finish):
                    self.tape.output = {"chunks": chunks, "finish": {
                        "reason": item.reason, "model": item.model, "input_tokens": item.usage.input_tokens,
                        "output_tokens": item.usage.output_tokens}}
                else:
                    chunks.append(item)
                yield item

    async def health(self) -> dict[str, Any]:
        return await self.inner.health()

    async def aclose(self) -> None:
        return None  # the inner provider is its owner's to close


class ReplayProvider:
    kind = "replay"

    def __init__(self, tape: Tape) -> None:
        self.tape = tape

    async def stream(self, request: ProviderRequest) -> AsyncGenerator[str | Finish, None]:
        turn = self.tape.stored()
        output = turn.get("output") if turn else None
        if output is None:
            self.tape.missed = True
            case, repeat, n = self.tape.at
            raise NotInCassette(f"the cassette has no model output for case {case!r}, run {repeat + 1}, "
                                f"turn {n + 1}: record it again (--record)")
        for chunk in output["chunks"]:
            yield chunk
        f = output["finish"]
        yield Finish(str(f.get("reason") or "stop"), Usage(int(f.get("input_tokens") or 0),
                                                           int(f.get("output_tokens") or 0)), str(f.get("model") or ""))

    async def health(self) -> dict[str, Any]:
        return {"status": "ok", "kind": self.kind}

    async def aclose(self) -> None:
        return None


class TapeProviders(Providers):
    """The server's providers as a suite run sees them: recorded, or replaced by the cassette."""

    def __init__(self, inner: Providers, tape: Tape) -> None:
        super().__init__(inner.settings)
        self.inner, self.tape = inner, tape
        self._replay = ReplayProvider(tape)

    def get(self, kind: str | None = None) -> Provider:
        if self.tape.replaying:
            return self._replay
        inner = self.inner.get(kind)
        return RecordingProvider(inner, self.tape) if self.tape.record else inner

    async def aclose(self) -> None:
        return None
