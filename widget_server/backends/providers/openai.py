"""Any OpenAI-compatible endpoint (OpenAI, vLLM, Ollama, llama.cpp's server) through `openai.AsyncOpenAI`."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import AsyncGenerator
from typing import Any

import httpx2
import openai

from widget_server.backends.providers.base import Finish, ProviderRequest, Usage
from widget_server.errors import ProviderError, ProviderTimeout

log = logging.getLogger(__name__)
ROLES = {"visitor": "user", "persona": "assistant", "agent": "assistant"}


def chat_messages(request: ProviderRequest) -> list[dict[str, str]]:
    out = [{"role": "system", "content": request.system_prompt}]
    out += [{"role": ROLES.get(t.role, "user"), "content": t.text} for t in request.history]
    out.append({"role": "user", "content": request.message})
    return out


# How long an idle pooled connection to the upstream is reused. httpx's default, 5 s, is exactly uvicorn's idle
# timeout (so llama.cpp's server's, vLLM's, LiteLLM's): a request sent on a connection idle for just under 5 s
# crossed the server's close and failed with a read error: 63 and 3 of 2,000 streamed replies in two runs of
# bench/keepalive.py (bursts 2.8-5.2 s apart, a loaded machine), against 0 and 1 with 3 s. It costs a new
# connection after 3 s of silence. What a loaded server still drops that way is retried once (`_stale`).
KEEPALIVE_S = 3.0


def _pool() -> openai.DefaultAsyncHttpxClient:
    return openai.DefaultAsyncHttpxClient(limits=httpx2.Limits(max_connections=1000, max_keepalive_connections=100,
                                                               keepalive_expiry=KEEPALIVE_S))


def _stale(exc: Exception) -> bool:
    """The server closed the connection before answering anything: a pooled connection it dropped as the request
    went out (the expiry above makes it rare, a loaded server can still do it), so the request was not processed."""
    cause = exc.__cause__
    return isinstance(exc, openai.APIConnectionError) and not isinstance(exc, openai.APITimeoutError) and (
        isinstance(cause, httpx2.RemoteProtocolError) or (isinstance(cause, httpx2.ReadError) and not str(cause)))


def _retryable(exc: Exception) -> bool:
    if isinstance(exc, openai.APIStatusError):
        return exc.status_code == 429 or exc.status_code >= 500
    return isinstance(exc, openai.APIConnectionError)  # includes timeouts


class _Upstream:
    """One endpoint and key: the SDK's client (the health check) and, for the chat stream, a plain streamed POST
    on the same connection pool. Sent through the SDK's `client.post` the request cost ~0.8 ms more of CPU per
    reply (option merging, header building, its response wrapper) for a body we build ourselves anyway; its
    errors are still raised as the SDK's, so that what is retried and what a visitor is told stays as it was."""

    def __init__(self, sdk: openai.AsyncOpenAI, pool: httpx2.AsyncClient, timeout_s: float) -> None:
        self.sdk, self.pool = sdk, pool
        self.url = str(sdk.base_url).rstrip("/") + "/chat/completions"
        self.timeout = httpx2.Timeout(timeout_s)
        headers = {**sdk.default_headers, **sdk.auth_headers, "Accept": "text/event-stream"}
        self.headers = {k: v for k, v in headers.items() if isinstance(v, str)}  # without the SDK's `Omit`s

    async def post_stream(self, body: bytes) -> httpx2.Response:
        request = self.pool.build_request("POST", self.url, content=body, headers=self.headers, timeout=self.timeout)
        try:
            response = await self.pool.send(request, stream=True)
        except httpx2.TimeoutException as exc:
            raise openai.APITimeoutError(request=request) from exc
        except httpx2.TransportError as exc:
            raise openai.APIConnectionError(request=request) from exc
        if response.status_code >= 400:
            with contextlib.suppress(httpx2.HTTPError):
                await response.aread()  # read to its end, so that the connection goes back to the pool
            await response.aclose()
            raise openai.APIStatusError(f"HTTP {response.status_code}", response=response, body=None)
        return response


class OpenAIProvider:
    kind = "openai"

    def __init__(
        self, *, base_url: str | None, api_key: str, model: str, timeout_s: float = 30.0, retries: int = 1
    ) -> None:
        self._base_url = base_url
        self._api_key = api_key
        self._model = model
        self._timeout = timeout_s
        self._retries = retries
        self._clients: dict[tuple[str | None, str], _Upstream] = {}
        self._health: tuple[float, dict[str, Any]] | None = None

    def client(self, base_url: str | None, api_key: str | None = None) -> openai.AsyncOpenAI:
        """The server's endpoint with the server's key, or a persona's endpoint with its own key (or none):
        the operator's key is never sent to a URL a tenant chose."""
        return self._upstream(base_url, api_key).sdk

    def _upstream(self, base_url: str | None, api_key: str | None) -> _Upstream:
        url, key = (base_url, api_key or "not-needed") if base_url else (self._base_url, self._api_key)
        if (url, key) not in self._clients:
            # Our own retry loop decides what is retried (only before the first token), so the SDK's is off.
            pool = _pool()
            sdk = openai.AsyncOpenAI(base_url=url, api_key=key, timeout=self._timeout, max_retries=0,
                                     http_client=pool)
            self._clients[(url, key)] = _Upstream(sdk, pool, self._timeout)
        return self._clients[(url, key)]

    async def _open(self, request: ProviderRequest) -> httpx2.Response:
        upstream = self._upstream(request.base_url, request.api_key)
        body = json.dumps({
            "model": request.model or self._model, "messages": chat_messages(request),
            "temperature": request.temperature, "max_tokens": request.max_tokens,
            "stream": True, "stream_options": {"include_usage": True},
        }).encode()
        attempt, stale_retried = 0, False
        while True:
            try:
                return await upstream.post_stream(body)
            except Exception as exc:
                if _stale(exc) and not stale_retried:
                    stale_retried = True  # once, at once, whatever the retry setting: the upstream saw nothing
                    log.info("provider stale connection", extra={"error": _describe(exc)})
                    continue
                if attempt >= self._retries or not _retryable(exc):
                    raise _error(exc, "upstream refused the request") from exc
                log.warning("provider retry", extra={"attempt": attempt + 1, "error": _describe(exc)})
                await asyncio.sleep(0.2 * 2**attempt)
                attempt += 1

    async def stream(self, request: ProviderRequest) -> AsyncGenerator[str | Finish, None]:
        response = await self._open(request)
        reason, usage, n_out, model = "stop", None, 0, request.model or self._model
        try:
            async for chunk in _chunks(response):
                model = chunk.get("model") or model
                if chunk.get("usage"):
                    u = chunk["usage"]
                    usage = Usage(u.get("prompt_tokens") or 0, u.get("completion_tokens") or 0)
                if not chunk.get("choices"):
                    continue
                choice = chunk["choices"][0]
                if content := (choice.get("delta") or {}).get("content"):
                    n_out += 1
                    yield content
                if choice.get("finish_reason"):
                    reason = "length" if choice["finish_reason"] == "length" else "stop"
        except ProviderError:
            raise
        except Exception as exc:
            raise _error(exc, "upstream stream failed") from exc
        finally:
            await response.aclose()  # stops the upstream generation when the visitor cancels or leaves
        yield Finish(reason, usage or Usage(estimate_tokens(request), n_out), model)

    async def health(self) -> dict[str, Any]:
        """Whether the upstream answers `GET /models`; checked at most every 10 s, never longer than 2 s."""
        stamp = time.monotonic()
        if self._health is None or stamp - self._health[0] > 10:
            status: dict[str, Any] = {"status": "ok"}
            try:
                await self.client(None).models.list(timeout=2.0)
            except Exception as exc:
                status = {"status": "error", "error": _describe(exc)}
            self._health = (stamp, status)
        return {**self._health[1], "kind": self.kind}  # no URL or model: /health needs no key

    async def aclose(self) -> None:
        for upstream in self._clients.values():
            await upstream.sdk.close()


async def _chunks(response: httpx2.Response) -> AsyncGenerator[dict[str, Any], None]:
    """The stream's JSON chunks, read as Server-Sent Events line by line (an event's `data:` lines joined, as the
    SDK's decoder does), instead of through the SDK's byte decoder and its per-chunk model building. Errors are
    told as the SDK told them: an `error` chunk, a timeout, a broken connection. The body is read to its end after
    `[DONE]`, so that the connection goes back to the pool."""
    data: list[str] = []
    done = False
    try:
        async for line in response.aiter_lines():
            if line.startswith("data:"):
                data.append(line[6:] if line.startswith("data: ") else line[5:])
            elif not line and data:  # the blank line that ends an event
                text, data = "\n".join(data), []
                done = done or text.startswith("[DONE]")
                if not done and (chunk := _chunk(text)) is not None:
                    yield chunk
        if data and not done and (chunk := _chunk("\n".join(data))) is not None:
            yield chunk  # the last event, without its blank line
    except httpx2.TimeoutException as exc:
        raise ProviderTimeout("upstream stream failed: no answer in time") from exc
    except httpx2.TransportError as exc:
        raise ProviderError("upstream stream failed: APIConnectionError") from exc


def _chunk(text: str) -> dict[str, Any] | None:
    chunk = json.loads(text)
    if isinstance(chunk, dict) and chunk.get("error"):
        raise ProviderError("upstream stream failed: APIError")
    return chunk if isinstance(chunk, dict) else None


def estimate_tokens(request: ProviderRequest) -> int:
    """For upstreams that report no usage while streaming (llama.cpp's server): about four characters a token."""
    chars = sum(len(m["content"]) for m in chat_messages(request))
    return max(1, -(-chars // 4))


def _error(exc: Exception, what: str) -> ProviderError:
    if isinstance(exc, openai.APITimeoutError):
        return ProviderTimeout(f"{what}: no answer in time")
    return ProviderError(f"{what}: {_describe(exc)}")


def _describe(exc: Exception) -> str:
    if isinstance(exc, openai.APIStatusError):
        return f"HTTP {exc.status_code}"
    return type(exc).__name__
