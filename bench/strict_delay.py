"""The delay strict output checking adds to a streamed reply, end to end: prints figures, asserts nothing.

    .venv/bin/python -m bench.strict_delay [--rounds 25]

Everything runs on 127.0.0.1, each app under uvicorn in a process of its own: a paced OpenAI-compatible upstream
(`PacedUpstream`, the SSE format of `tests/support/upstream.py`) and the server under test
(`create_app(Settings(...))`, SQLite in a temporary directory, `bench/serve.py`). Three tenants share the
server: one without a policy, one whose policy has blocked terms, PII masking (all five entities) and an
output pattern (strict mode), and one with the same policy less PII. Each round, one visitor of each tenant
sends a message at the same moment and the three replies stream the same text from the upstream; so each
round compares the three under the same load.

For every token of the reply, its arrival is the moment the visitor's text first contains it whole (after the
`reply.delta` frame that completes it). The added delay of a token = its arrival with the policy minus its
arrival without, in the same round; the added TTFT = first `reply.delta` with minus without. Two ways of
chunking the same text: word tokens with a leading space, as BPE models send them, one every 20 ms; and one
character per chunk, one every 5 ms (the same text arrives in about the same time).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import re
import socket
import tempfile
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import httpx
import uvicorn

from bench.serve import AppSpec, Served
from bench.stream import ORIGIN, Stack, WidgetClient, create_tenant, ms, pct, server_settings
from tests.support.upstream import Upstream, _chunk

REPLY = ("Your parcel left our warehouse on Tuesday and the courier expects to deliver it by Friday afternoon. "
         "If nobody is home, they will leave a card and try again on the next working day. Is there anything "
         "else I can help you with?")
CHUNKINGS = {"tokens": (re.compile(r" ?\w+| ?[^\w\s]+|\s+"), 20), "chars": (re.compile(r".", re.S), 5)}
POLICY: dict[str, Any] = {
    "version": 1,
    "blocked_terms": [{"id": "rival", "terms": ["acme rival", "rivalco"], "match": "word", "action": "refuse"}],
    "patterns": [{"id": "ticket", "regex": r"TCK-\d{6}", "action": "mask", "applies_to": ["output"]}],
    "pii": {"entities": ["email", "phone", "credit_card", "iban", "us_ssn"], "action": "mask"},
    "output": {"mode": "strict"},
}
TENANTS = {"none": None, "strict": POLICY, "strict, no PII": {k: v for k, v in POLICY.items() if k != "pii"}}


def pieces(model: str) -> tuple[list[str], float]:
    """The chunks of the reply and the pause between them, for a model named after a chunking."""
    pattern, pause_ms = CHUNKINGS[model]
    return pattern.findall(REPLY), pause_ms / 1000


class PacedUpstream(Upstream):
    """`tests/support/upstream.py`'s upstream, streaming `REPLY` in the chunks its model names."""

    async def stream(self, model: str, messages: list[dict[str, Any]]) -> AsyncIterator[str]:
        chunks, pause = pieces(model)
        for chunk in chunks:
            yield _chunk(model, chunk)
            await asyncio.sleep(pause)
        yield _chunk(model, None, "stop")
        yield _chunk(model, None, usage={"prompt_tokens": 11, "completion_tokens": len(chunks),
                                         "total_tokens": 11 + len(chunks)})
        yield "data: [DONE]\n\n"


async def _serve_upstream(conn: Connection) -> None:
    # IPPROTO_TCP spelled out so that asyncio sets TCP_NODELAY (see bench/serve.py).
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(PacedUpstream().app(), log_level="warning"))
    serving = asyncio.create_task(server.serve(sockets=[sock]))
    while not server.started:
        if serving.done():
            serving.result()
        await asyncio.sleep(0.01)
    conn.send(f"http://127.0.0.1:{sock.getsockname()[1]}")
    await asyncio.to_thread(conn.recv)
    server.should_exit = True
    await serving


def _upstream_child(conn: Connection) -> None:
    asyncio.run(_serve_upstream(conn))


# ---------------------------------------------------------------- one reply, delta by delta


@dataclass
class Timed:
    """When each `reply.delta` arrived (seconds after the message was sent) and how long the text was then."""

    deltas: list[tuple[float, int]]
    text: str
    error: str | None

    def arrivals(self, ends: list[int]) -> list[float]:
        """The arrival of each token, given the offset where each ends."""
        out, i = [], 0
        for end in ends:
            while i < len(self.deltas) and self.deltas[i][1] < end:
                i += 1
            out.append(self.deltas[i][0] if i < len(self.deltas) else float("nan"))
        return out


async def timed_turn(client: WidgetClient, text: str) -> Timed:
    await client.ws.send(json.dumps({"type": "message", "client_id": f"c{time.monotonic_ns()}", "text": text}))
    sent, deltas, received, error = time.monotonic(), [], "", None
    while True:
        frame = json.loads(await asyncio.wait_for(client.ws.recv(), 60))
        if frame["type"] == "reply.delta":
            received += frame["text"]
            deltas.append((time.monotonic() - sent, len(received)))
        elif frame["type"] == "reply.end":
            return Timed(deltas, received, error)
        elif frame["type"] in ("error", "guardrail"):
            error = str(frame.get("code") or frame.get("reason"))


async def rounds(stacks: dict[str, Stack], personas: dict[str, str], n: int) -> dict[str, list[Timed]]:
    clients = {name: (await stacks[name].clients(personas[name], 1))[0] for name in stacks}
    out: dict[str, list[Timed]] = {name: [] for name in stacks}
    for r in range(n + 1):  # the first round warms up
        turns = await asyncio.gather(*(timed_turn(c, f"round {r}") for c in clients.values()))
        if r:
            for name, turn in zip(clients, turns, strict=True):
                out[name].append(turn)
    await asyncio.gather(*(c.close() for c in clients.values()))
    return out


def report(chunking: str, runs: dict[str, list[Timed]]) -> None:
    chunks, pause = pieces(chunking)
    ends = [sum(len(c) for c in chunks[:i + 1]) for i in range(len(chunks))]
    base = runs["none"]
    bad = {name: sum(t.text != REPLY or t.error is not None for t in turns) for name, turns in runs.items()}
    print(f"\n{chunking}: {len(chunks)} chunks, one every {pause * 1000:.0f} ms; {len(base)} rounds; "
          f"replies not received whole: {bad}")
    first = [t.deltas[0][0] for t in base]
    print(f"  {'none':<15} TTFT p50 {ms(pct(first, 50))}, last token p50 "
          f"{ms(pct([t.arrivals(ends)[-1] for t in base], 50))}")
    for name, turns in runs.items():
        if name == "none":
            continue
        ttft = [t.deltas[0][0] - b.deltas[0][0] for t, b in zip(turns, base, strict=True)]
        added = [a - b for t, o in zip(turns, base, strict=True)
                 for a, b in zip(t.arrivals(ends), o.arrivals(ends), strict=True)]
        print(f"  {name:<15} added TTFT p50 {ms(pct(ttft, 50))}, p95 {ms(pct(ttft, 95))};  added per-token delay "
              f"p50 {ms(pct(added, 50))}, p95 {ms(pct(added, 95))}  ({len(added)} tokens)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=25)
    args = parser.parse_args()
    began = time.monotonic()
    ctx = multiprocessing.get_context("spawn")
    parent, child = ctx.Pipe()
    upstream = ctx.Process(target=_upstream_child, args=(child,), name="bench-paced-upstream", daemon=True)
    upstream.start()
    try:
        up = str(parent.recv())
        with tempfile.TemporaryDirectory(prefix="widget-strict-") as tmp:
            settings = server_settings(Path(tmp), provider="openai", openai_base_url=up + "/v1")
            keys = {name: asyncio.run(create_tenant(settings["database_url"])) for name in TENANTS}
            with Served(AppSpec("server", settings=settings)) as server:
                stacks = {name: Stack(server.url, k["sk"], k["pk"]) for name, k in keys.items()}
                for name, policy in TENANTS.items():
                    if policy is not None:
                        r = httpx.put(f"{server.url}/v1/safety-policy", json=policy,
                                      headers={"Authorization": f"Bearer {stacks[name].sk}"})
                        r.raise_for_status()
                print(f"server {server.url}, upstream {up}; coalescing of deltas: the server's default "
                      f"(coalesce_ms); origin {ORIGIN}")
                for chunking in CHUNKINGS:
                    personas = {name: s.persona({"kind": "openai", "model": chunking}) for name, s in stacks.items()}
                    report(chunking, asyncio.run(rounds(stacks, personas, args.rounds)))
    finally:
        parent.send("stop")
        upstream.join(timeout=10)
        if upstream.is_alive():
            upstream.terminate()  # only the process this bench started
    print(f"\nbench took {time.monotonic() - began:.0f} s")


if __name__ == "__main__":
    main()
