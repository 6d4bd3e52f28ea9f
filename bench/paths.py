"""The per-request path of each surface, one request at a time: prints figures, asserts nothing.

    .venv/bin/python -m bench.paths [--rounds 60]

The fake upstream (`tests/support/upstream.py`, `pace-20-30`: 30 words, one every 20 ms) and the server under test
(SQLite, `bench/serve.py`) run in processes of their own. Each round sends, one after another in a rotating
order, the same message straight to the upstream and through each surface: the widget's WebSocket (one open
conversation), `POST /v1/personas/{id}/prompt/stream` (SSE) and `POST /v1/openai/chat/completions` with
`stream: true` (each a new conversation, as API clients call). The added time to first token of a surface is its
first token minus the direct request's, in the same round (p50/p95 over the rounds). CPU per request: the server
process's CPU time (all threads) over a block of requests of one surface, divided by their number; each reply
streams the same 30 tokens, so the differences between surfaces are the per-request work. The same blocks with a
one-token reply (`pace-20-1`, another persona) give the per-request part alone, what a request costs besides
streaming its tokens; and the server's CPU while idle (its sweepers and pollers), per second, is shown beside them,
measured in the same run: one request at a time takes ~0.7 s, so ~0.7 s of that is in each figure.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import httpx

from bench.serve import AppSpec, Served
from bench.stream import (
    PACED,
    PACED_TEXT,
    Stack,
    Turn,
    create_tenant,
    direct_turn,
    ms,
    pct,
    server_settings,
)

SHORT = "pace-20-1"  # one word: a request's own cost, without the tokens of a reply
IDLE_S = 10.0


async def _sse_turn(http: httpx.AsyncClient, url: str, sk: str, persona: str, text: str) -> Turn:
    turn = Turn(time.monotonic())
    async with http.stream("POST", f"{url}/v1/personas/{persona}/prompt/stream", json={"message": text},
                           headers={"Authorization": f"Bearer {sk}"}) as r:
        event = ""
        async for line in r.aiter_lines():
            if line.startswith("event: "):
                event = line[7:]
            elif line.startswith("data: ") and event == "reply.delta":
                turn.first_at = turn.first_at or time.monotonic()
                turn.text += json.loads(line[6:])["text"]
    turn.end_at = time.monotonic()
    return turn


async def _openai_turn(http: httpx.AsyncClient, url: str, sk: str, persona: str, text: str) -> Turn:
    turn = Turn(time.monotonic())
    body = {"model": persona, "stream": True, "messages": [{"role": "user", "content": text}]}
    async with http.stream("POST", f"{url}/v1/openai/chat/completions", json=body,
                           headers={"Authorization": f"Bearer {sk}"}) as r:
        async for line in r.aiter_lines():
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            for choice in json.loads(line[6:]).get("choices", []):
                if content := (choice.get("delta") or {}).get("content"):
                    turn.first_at = turn.first_at or time.monotonic()
                    turn.text += content
    turn.end_at = time.monotonic()
    return turn


def _paths(http: httpx.AsyncClient, stack: Stack, up: str, persona: str, widget: Callable[[str], Awaitable[Turn]]
           ) -> dict[str, Callable[[str], Awaitable[Turn]]]:
    return {
        "direct": lambda t: direct_turn(http, up, PACED, t),
        "widget WebSocket": widget,
        "REST SSE (prompt/stream)": lambda t: _sse_turn(http, stack.url, stack.sk, persona, t),
        "OpenAI stream": lambda t: _openai_turn(http, stack.url, stack.sk, persona, t),
    }


async def _cpu(server: Served, paths: dict[str, Callable[[str], Awaitable[Turn]]], rounds: int) -> dict[str, float]:
    cpu: dict[str, float] = {}
    for name in list(paths)[1:]:
        start = server.cpu_seconds()
        for r in range(rounds):
            await paths[name](f"cpu {r}")
        cpu[name] = (server.cpu_seconds() - start) / rounds
    return cpu


async def _measure(server: Served, stack: Stack, up: str, persona: str, short: str, rounds: int) -> None:
    (widget,) = await stack.clients(persona, 1)
    (widget_short,) = await stack.clients(short, 1)
    async with httpx.AsyncClient(timeout=60) as http:
        paths = _paths(http, stack, up, persona, widget.turn)
        names = list(paths)
        for name in names:  # warm-up: the first request of each path pays for imports and connections
            await paths[name]("warm up")
        ttft: dict[str, list[float]] = {name: [] for name in names}
        for r in range(rounds):
            order = names[r % len(names):] + names[:r % len(names)]
            got = {name: await paths[name](f"hello {r}") for name in order}
            for name, turn in got.items():
                if turn.ttft is None or turn.text.strip() != PACED_TEXT.strip():
                    raise RuntimeError(f"{name}: {turn.text!r} {turn.error}")
                ttft[name].append(turn.ttft - (got["direct"].ttft or 0.0))
        cpu = await _cpu(server, paths, rounds)
        shorts = _paths(http, stack, up, short, widget_short.turn)
        for name in list(shorts)[1:]:
            await shorts[name]("warm up")
        cpu_short = await _cpu(server, shorts, rounds)
        idle_from = server.cpu_seconds()
        await asyncio.sleep(IDLE_S)
        idle = (server.cpu_seconds() - idle_from) / IDLE_S
    await widget.close()
    await widget_short.close()
    print(f"{'surface':<28} {'added TTFT p50':>15} {'p95':>8} {'CPU/request, 30 tokens':>23} {'1 token':>10}")
    for name in names[1:]:
        print(f"{name:<28} {ms(pct(ttft[name], 50)):>15} {ms(pct(ttft[name], 95)):>8} {cpu[name] * 1000:>20.1f} ms"
              f" {cpu_short[name] * 1000:>7.1f} ms")
    print(f"server CPU while idle, same run: {idle * 1000:.1f} ms per second")
    print("targets (issue 16): added TTFT p50 <= 5 ms one request at a time, CPU per request <= 5 ms")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=60)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp, Served(AppSpec("upstream")) as upstream:
        settings = server_settings(Path(tmp), provider="openai", openai_base_url=upstream.url + "/v1")
        keys = asyncio.run(create_tenant(settings["database_url"]))
        with Served(AppSpec("server", settings=settings)) as server:
            stack = Stack(server.url, keys["sk"], keys["pk"])
            persona = stack.persona({"kind": "openai", "model": PACED})
            short = stack.persona({"kind": "openai", "model": SHORT})
            asyncio.run(_measure(server, stack, upstream.url, persona, short, args.rounds))


if __name__ == "__main__":
    main()
