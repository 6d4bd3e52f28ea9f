"""A fake OpenAI-compatible model for the simulated visitor and the judge of test suites, on a local port: it
streams chat completions as OpenAI does, its behaviour spelled in the model's name, and counts its calls.

- `script:A|B|C`   a visitor: its n-th message is the n-th of A, B, C (n = the assistant messages it has been
                   sent, i.e. what it said before), then `[END]`
- `verdicts:PFX`   a judge: its i-th call (counted per model name) answers the i-th letter, round and round:
                   P `{"pass": true, …}`, F `{"pass": false, …}`, X a sentence that is not the JSON verdict
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from tests.support.servers import serve_in_thread
from tests.support.upstream import _chunk

ANSWERS = {"P": json.dumps({"pass": True, "reason": "the reply meets the rubric"}),
           "F": json.dumps({"pass": False, "reason": "the reply ignores the rubric"}),
           "X": "I think it mostly passes, yes."}


class Scripted:
    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.hits: dict[str, int] = {}

    def calls(self, prefix: str) -> int:
        return sum(n for model, n in self.hits.items() if model.startswith(prefix))

    def answer(self, model: str, messages: list[dict[str, Any]], hit: int) -> str:
        if model.startswith("script:"):
            script = model[len("script:"):].split("|")
            said = sum(m["role"] == "assistant" for m in messages)
            return script[said] if said < len(script) else "[END]"
        if model.startswith("verdicts:"):
            letters = model[len("verdicts:"):]
            return ANSWERS[letters[(hit - 1) % len(letters)]]
        return "[END]"

    async def completions(self, request: Request) -> Response:
        body = await request.json()
        self.requests.append(body)
        model = str(body.get("model", ""))
        self.hits[model] = self.hits.get(model, 0) + 1
        text = self.answer(model, body["messages"], self.hits[model])
        return StreamingResponse(self.stream(model, text), media_type="text/event-stream")

    async def stream(self, model: str, text: str) -> AsyncIterator[str]:
        words = text.split(" ")
        for i, word in enumerate(words):
            yield _chunk(model, word if i == 0 else " " + word)
        yield _chunk(model, None, "stop")
        yield _chunk(model, None, usage={"prompt_tokens": 7, "completion_tokens": len(words), "total_tokens": 7})
        yield "data: [DONE]\n\n"

    def app(self) -> Starlette:
        return Starlette(routes=[Route("/v1/chat/completions", self.completions, methods=["POST"])])


@contextmanager
def scripted_model() -> Iterator[tuple[Scripted, str]]:
    """A `Scripted` model served on a local port, and its OpenAI-compatible base URL."""
    fake = Scripted()
    with serve_in_thread(fake.app()) as url:
        yield fake, url + "/v1"
