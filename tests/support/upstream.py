"""A scriptable OpenAI-compatible upstream for tests and benchmarks: `POST /v1/chat/completions` streams
chunks the way OpenAI does. The `model` name picks the behaviour, so one upstream serves every case:

- `echo`           the last user message back, one word per chunk
- `words-N`        N numbered words (`w1 w2 …`), one per chunk
- `pace-MS-N`      N numbered words, one every MS milliseconds
- `fail…`          HTTP 500 every time (`fail-x`, `fail-y`: separate counters in `hits`)
- `fail-then-ok`   HTTP 500 on odd requests of this model, a normal reply on even ones
- `stall`          three words, then nothing: the stream stays open
- `late-MS`        the default reply, after a pause of MS milliseconds before the first word
- `spell:TEXT`     TEXT one character per chunk
- `say-NAME`       the scripted answer `SAY[NAME]` (reads like a real reply: markdown, several lines), word by word
- `leak-MS`        the system prompt back (a persona that gives its prompt away), word by word, after MS ms
- `hold-NAME`      the default reply once the test sets `holds[NAME]` (a request kept in flight until then)
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import AsyncIterator
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route


def _chunk(model: str, content: str | None, finish: str | None = None, usage: dict[str, int] | None = None) -> str:
    choices = [] if usage else [{"index": 0, "delta": {"content": content} if content is not None else {},
                                 "finish_reason": finish}]
    body: dict[str, Any] = {"id": "chatcmpl-test", "object": "chat.completion.chunk", "created": int(time.time()),
                            "model": model, "choices": choices}
    if usage:
        body["usage"] = usage
    return f"data: {json.dumps(body)}\n\n"


# Scripted answers that read like a real persona's (the README's screenshots show them).
SAY = {
    "cake": (
        "Yes, we can! Custom cakes need **48 hours' notice**, so for Saturday please order by Thursday, 6 pm.\n\n"
        "To get started, tell me:\n"
        "- how many people it should serve\n"
        "- the flavour: *chocolate hazelnut* or *lemon elderflower*\n"
        "- any writing for the top\n\n"
        "You can collect it from 8 am at our Market Street shop."
    ),
    "hours": (
        "We're open **Tuesday to Sunday**, and closed on Mondays:\n\n"
        "- Tue–Fri: 7 am – 6 pm\n"
        "- Sat: 7 am – 4 pm\n"
        "- Sun: 8 am – 1 pm\n\n"
        "The sourdough comes out of the oven at 7:30, and it usually sells out by noon on Saturdays."
    ),
}


def plan(model: str, messages: list[dict[str, Any]]) -> tuple[list[str], float]:
    """The pieces to stream and the pause between them."""
    if model == "echo":
        words = str(messages[-1]["content"]).split(" ")
        return [w if i == 0 else " " + w for i, w in enumerate(words)], 0.0
    if model.startswith("leak-"):
        words = str(messages[0]["content"]).split(" ")
        return [w if i == 0 else " " + w for i, w in enumerate(words)], 0.0
    if model.startswith("spell:"):
        return list(model[6:]), 0.0
    if model.startswith("say-"):
        words = SAY[model[4:]].split(" ")
        return [w if i == 0 else " " + w for i, w in enumerate(words)], 0.005
    if model.startswith("pace-"):
        _, ms, n = model.split("-")
        return [f"w{i} " for i in range(1, int(n) + 1)], int(ms) / 1000
    if model.startswith("words-"):
        return [f"w{i} " for i in range(1, int(model.split("-")[1]) + 1)], 0.0
    return ["Hello", " from", " the", " test", " upstream", "."], 0.005


class Upstream:
    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.keys: list[str] = []  # the bearer key of each request, in order
        self.hits: dict[str, int] = {}
        self.closed_early = 0  # streams the client closed before the end (cancellation reached us)
        self.holds: dict[str, threading.Event] = {}  # `hold-NAME` waits for holds[NAME] to be set

    def hold(self, name: str) -> threading.Event:
        return self.holds.setdefault(name, threading.Event())

    async def completions(self, request: Request) -> Response:
        body = await request.json()
        self.requests.append(body)
        self.keys.append(request.headers.get("authorization", "").removeprefix("Bearer "))
        model = body.get("model", "")
        self.hits[model] = self.hits.get(model, 0) + 1
        if model.startswith("fail") and (model != "fail-then-ok" or self.hits[model] % 2 == 1):
            return JSONResponse({"error": {"message": "upstream exploded", "type": "server_error"}}, status_code=500)
        return StreamingResponse(self.stream(model, body["messages"]), media_type="text/event-stream")

    async def stream(self, model: str, messages: list[dict[str, Any]]) -> AsyncIterator[str]:
        pieces, pause = plan(model, messages)
        if model == "stall":
            pieces, pause = ["one", " two", " three"], 0.0
        finished = False
        try:
            if model.startswith("hold-"):
                await asyncio.to_thread(self.hold(model[5:]).wait, 60)
            if model.startswith(("late-", "leak-")):
                await asyncio.sleep(int(model.split("-")[1]) / 1000)
            for piece in pieces:
                yield _chunk(model, piece)
                if pause:
                    await asyncio.sleep(pause)
            if model == "stall":
                await asyncio.sleep(3600)
            yield _chunk(model, None, "stop")
            yield _chunk(model, None, usage={"prompt_tokens": 11, "completion_tokens": len(pieces),
                                             "total_tokens": 11 + len(pieces)})
            yield "data: [DONE]\n\n"
            finished = True
        finally:
            if not finished:
                self.closed_early += 1

    def app(self) -> Starlette:
        return Starlette(routes=[Route("/v1/chat/completions", self.completions, methods=["POST"]),
                                 Route("/v1/models", self.models, methods=["GET"])])

    async def models(self, request: Request) -> Response:
        return JSONResponse({"object": "list", "data": [{"id": "echo", "object": "model", "owned_by": "test"}]})
