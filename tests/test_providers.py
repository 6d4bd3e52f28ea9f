"""Providers end to end over the socket: llama.cpp's real OpenAI-compatible server, failures, the local model."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.conftest import Stack
from tests.support.errors import assert_error
from tests.support.servers import free_port
from tests.support.upstream import Upstream
from widget_server.backends.providers.local import bundled_model_path


@pytest.fixture(scope="session")
def llama_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """llama-cpp-python's own OpenAI-compatible server, running the bundled model on loopback."""
    port = free_port()
    log = tmp_path_factory.mktemp("llama") / "server.log"
    proc = subprocess.Popen(
        [sys.executable, "-m", "llama_cpp.server", "--model", str(bundled_model_path()), "--host", "127.0.0.1",
         "--port", str(port), "--n_ctx", "1024", "--n_threads", "2"],
        stdout=subprocess.DEVNULL, stderr=log.open("wb"),  # a pipe would fill up with llama.cpp's logs and block it
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while True:
        try:
            if httpx.get(url + "/v1/models", timeout=1).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise RuntimeError(f"llama_cpp.server did not start: {log.read_text()[-2000:]}")
        time.sleep(0.2)
    yield url + "/v1"
    proc.terminate()
    proc.wait(timeout=15)


def _stored_reply(stack: Stack, conversation_id: str) -> dict:  # type: ignore[type-arg]
    conv = httpx.get(f"{stack.url}/v1/conversations/{conversation_id}", headers=stack.auth).json()
    return conv["messages"][-1]  # type: ignore[no-any-return]


def test_openai_provider_streams_from_llama_cpp_server(stack_factory, llama_server: str) -> None:  # type: ignore[no-untyped-def]
    stack = stack_factory(openai_base_url=llama_server, max_tokens=24, provider_timeout_s=60)
    ready, frames = stack.turn(stack.persona("gemma-3-270m"), "Hello, who are you?", timeout=60)
    deltas = [f for f in frames if f["type"] == "reply.delta"]
    end = frames[-1]
    assert end["finish_reason"] in ("stop", "length") and deltas, frames[-3:]  # (an error says which, if one)
    assert end["usage"]["output_tokens"] > 0 and end["usage"]["input_tokens"] > 0
    text = "".join(d["text"] for d in deltas)
    assert text.strip() and _stored_reply(stack, ready["conversation_id"])["text"] == text


def test_upstream_500_gives_a_retryable_error_after_one_retry(
    stack: Stack, upstream: tuple[Upstream, str]
) -> None:
    fake, _ = upstream
    ready, frames = stack.turn(stack.persona("fail-500"), "Hello, who are you?", timeout=60)
    error = next(f for f in frames if f["type"] == "error")
    assert error["code"] == "provider.error" and error["retryable"] is True
    assert frames[-1]["finish_reason"] == "error"
    assert fake.hits["fail-500"] == 2  # the first try and one retry, both before any token
    assert _stored_reply(stack, ready["conversation_id"])["finish_reason"] == "error"


def test_a_failure_before_the_first_token_is_retried(stack: Stack) -> None:
    _, frames = stack.turn(stack.persona("fail-then-ok"), "Hello, who are you?", timeout=60)
    assert frames[-1]["finish_reason"] == "stop"
    assert "".join(f["text"] for f in frames if f["type"] == "reply.delta") == "Hello from the test upstream."


def test_upstream_stalling_mid_stream_ends_in_an_error_within_the_timeout(
    stack_factory, upstream: tuple[Upstream, str]  # type: ignore[no-untyped-def]
) -> None:
    fake, _ = upstream
    closed_before = fake.closed_early
    stack = stack_factory(provider_stall_s=1)
    ready, frames = stack.turn(stack.persona("stall"), "Hello, who are you?", timeout=60)  # it never finishes
    error = next(f for f in frames if f["type"] == "error")
    assert error["code"] == "provider.timeout" and error["retryable"] is True
    assert "".join(f["text"] for f in frames if f["type"] == "reply.delta") == "one two three"
    assert _stored_reply(stack, ready["conversation_id"])["text"] == "one two three"
    deadline = time.monotonic() + 5
    while fake.closed_early == closed_before and time.monotonic() < deadline:
        time.sleep(0.05)
    assert fake.closed_early > closed_before  # the upstream stream was closed, not left running


def test_no_first_token_in_time_is_an_error(stack_factory) -> None:  # type: ignore[no-untyped-def]
    stack = stack_factory(provider_timeout_s=1, provider_retries=0)
    _, frames = stack.turn(stack.persona("late-4000"), "Hello, who are you?", timeout=60)
    assert next(f for f in frames if f["type"] == "error")["code"] == "provider.timeout"
    assert frames[-1]["finish_reason"] == "error"
    assert not [f for f in frames if f["type"] == "reply.delta"]  # cut off before the upstream's words came


def test_the_sdk_read_timeout_is_a_timeout_too(stack_factory) -> None:  # type: ignore[no-untyped-def]
    stack = stack_factory(provider_timeout_s=1, provider_stall_s=5)
    _, frames = stack.turn(stack.persona("pace-3000-2"), "Hello, who are you?", timeout=60)
    assert next(f for f in frames if f["type"] == "error")["code"] == "provider.timeout"
    assert "".join(f["text"] for f in frames if f["type"] == "reply.delta") == "w1 "


def test_a_visitor_who_leaves_stops_the_provider(stack_factory, upstream: tuple[Upstream, str]) -> None:  # type: ignore[no-untyped-def]
    fake, _ = upstream
    closed_before = fake.closed_early
    stack = stack_factory(resume_grace_s=0.2)
    ws = stack.open(stack.persona("pace-50-200"))
    conversation_id = ws.recv()["conversation_id"]
    ws.send({"type": "message", "client_id": "c1", "text": "go"})
    ws.until("reply.delta")
    ws.close()
    deadline = time.monotonic() + 5
    while fake.closed_early == closed_before and time.monotonic() < deadline:
        time.sleep(0.05)
    assert fake.closed_early > closed_before
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        stored = httpx.get(f"{stack.url}/v1/conversations/{conversation_id}", headers=stack.auth).json()["messages"]
        if stored[-1]["role"] == "persona":
            break
        time.sleep(0.05)
    assert stored[-1]["finish_reason"] == "cancelled" and stored[-1]["text"].startswith("w1 ")


def test_local_provider_replies_from_the_bundled_model(stack_factory) -> None:  # type: ignore[no-untyped-def]
    stack = stack_factory(provider="local", max_tokens=24, provider_timeout_s=120, provider_stall_s=60)  # a busy CPU
    r = httpx.post(f"{stack.url}/v1/personas", headers=stack.auth, json={
        "name": "Ada", "slug": "ada", "system_prompt": "Ada is the friendly assistant of a small bakery."})
    assert r.status_code == 201
    ready, frames = stack.turn("ada", "Hi, what bread do you have?", timeout=60)
    deltas = [f for f in frames if f["type"] == "reply.delta"]
    end = frames[-1]
    assert end["finish_reason"] in ("stop", "length") and end["usage"]["output_tokens"] > 0
    text = "".join(d["text"] for d in deltas)
    assert text.strip() and "Visitor:" not in text
    assert _stored_reply(stack, ready["conversation_id"])["text"] == text
    health = httpx.get(f"{stack.url}/health").json()
    assert health["provider"] == {"status": "ok", "kind": "local", "loaded": True}
    # A system prompt longer than the model's whole context window (schemathesis sent one: a 502 before) is cut
    # to what fits, and the visitor still gets a reply.
    long_prompt = "Ada bakes sourdough, rye and spelt bread every morning and knows every recipe by heart. " * 180
    r = httpx.post(f"{stack.url}/v1/personas", headers=stack.auth, json={
        "name": "Ada", "slug": "ada-long", "system_prompt": long_prompt})
    assert r.status_code == 201, r.text
    answer = httpx.post(f"{stack.url}/v1/personas/ada-long/prompt", headers=stack.auth, json={"message": "ä"},
                        timeout=120)
    assert answer.status_code == 200, answer.text
    assert answer.json()["finish_reason"] in ("stop", "length")


def test_local_trim_never_takes_back_sent_text() -> None:
    from widget_server.backends.providers.local import Trim

    trim = Trim()
    pieces = [" ", " Fresh", " rye", " ", "\n", "and", " spelt", " \n", " "]
    sent = "".join(trim.feed(p) for p in pieces)
    assert sent == "Fresh rye \nand spelt"


def _prompt(stack: Stack, persona: str) -> httpx.Response:
    return httpx.post(f"{stack.url}/v1/personas/{persona}/prompt", json={"message": "hello there"},
                      headers=stack.auth, timeout=30)


def test_a_personas_own_endpoint_never_gets_the_operators_key(
    stack_factory: Any, upstream: tuple[Upstream, str]
) -> None:
    fake, url = upstream
    stack = stack_factory(openai_api_key="sk-operator-secret", allow_persona_base_url=True,
                          allow_private_upstreams=True)
    persona = stack.persona("echo", provider={"kind": "openai", "model": "echo", "base_url": url})
    before = len(fake.keys)
    assert _prompt(stack, persona).json()["text"] == "hello there"
    assert fake.keys[before:] == ["not-needed"]  # the persona's endpoint: no key of the operator's
    assert _prompt(stack, stack.persona("echo")).status_code == 200
    assert fake.keys[-1] == "sk-operator-secret"  # the server's own endpoint still gets it


def test_a_personas_endpoint_on_a_private_address_is_refused(
    stack_factory: Any, upstream: tuple[Upstream, str]
) -> None:
    fake, url = upstream
    stack = stack_factory(allow_persona_base_url=True)  # private upstreams not allowed: the webhook rules
    persona = stack.persona("echo", provider={"kind": "openai", "model": "echo", "base_url": url})
    before = len(fake.requests)
    err = assert_error(_prompt(stack, persona), 422, "provider.refused")
    assert "non-public address" in err["message"]
    assert len(fake.requests) == before  # nothing was called


def test_the_operator_restricts_the_models_a_persona_may_name(stack_factory: Any) -> None:
    stack = stack_factory(allowed_models="echo, words-*")
    assert _prompt(stack, stack.persona("words-3")).status_code == 200
    err = assert_error(_prompt(stack, stack.persona("pace-10-3")), 422, "provider.refused")
    assert "pace-10-3" in err["message"]
    ws = stack.open(stack.persona("gpt-expensive"))
    ws.recv()
    ws.send({"type": "message", "client_id": "c1", "text": "hi"})
    frames = ws.until("reply.end")
    assert [f["code"] for f in frames if f["type"] == "error"] == ["provider.refused"]
    assert frames[-1]["finish_reason"] == "error"


def test_a_personas_own_key_goes_to_its_endpoint_sealed_at_rest_and_never_shown(
    stack_factory: Any, upstream: tuple[Upstream, str]
) -> None:
    fake, url = upstream
    stack = stack_factory(openai_api_key="sk-operator-secret", allow_persona_base_url=True,
                          allow_private_upstreams=True)
    persona = stack.persona("echo", provider={"kind": "openai", "model": "echo", "base_url": url,
                                              "api_key": "sk-persona-own-key"})
    shown = httpx.get(f"{stack.url}/v1/personas/{persona}", headers=stack.auth).json()["provider"]
    assert shown["api_key"] is None and shown["api_key_set"] is True
    assert _prompt(stack, persona).status_code == 200
    assert fake.keys[-1] == "sk-persona-own-key"
    database = stack.settings.resolved_database_url.removeprefix("sqlite:///")
    stored = b"".join(open(database + suffix, "rb").read() for suffix in ("", "-wal"))
    assert b"sk-persona-own-key" not in stored  # sealed: a copy of the database reveals it not
    patch = {"Authorization": f"Bearer {stack.sk}", "Content-Type": "application/merge-patch+json"}
    kept = httpx.patch(f"{stack.url}/v1/personas/{persona}", json={"greeting": "Hello"}, headers=patch).json()
    assert kept["provider"]["api_key_set"] is True  # a PATCH that leaves it out keeps it
    assert _prompt(stack, persona).status_code == 200 and fake.keys[-1] == "sk-persona-own-key"
    removed = httpx.patch(f"{stack.url}/v1/personas/{persona}", json={"provider": {"api_key": None}},
                          headers=patch).json()
    assert removed["provider"]["api_key_set"] is False
    assert _prompt(stack, persona).status_code == 200 and fake.keys[-1] == "not-needed"


class _Dropper:
    """A raw HTTP upstream that reads the first `drops` requests and closes without a word, as a server does with
    an idle keep-alive connection it times out while the request is on its way; then it answers one word."""

    CHUNK = ('{"id":"c","object":"chat.completion.chunk","created":0,"model":"m",'
             '"choices":[{"index":0,"delta":{"content":"fine"},"finish_reason":"stop"}]}')

    def __init__(self, drops: int) -> None:
        self.drops, self.requests = drops, 0

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        length = int(next((ln.split(b":")[1] for ln in head.split(b"\r\n") if ln.lower().startswith(b"content-length")),
                          b"0"))
        await reader.readexactly(length)
        self.requests += 1
        if self.requests <= self.drops:
            writer.close()
            return
        body = f"data: {self.CHUNK}\n\ndata: [DONE]\n\n".encode()
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\nconnection: close\r\n"
                     b"content-length: %d\r\n\r\n%s" % (len(body), body))
        await writer.drain()
        writer.close()


@pytest.mark.parametrize(("drops", "answered"), [(1, True), (2, False)])
def test_a_connection_closed_before_any_answer_is_retried_once_even_with_retries_off(drops: int,
                                                                                       answered: bool) -> None:
    from widget_server.backends.providers.base import ProviderRequest
    from widget_server.backends.providers.openai import OpenAIProvider
    from widget_server.errors import ProviderError

    async def run() -> tuple[list[object], int]:
        upstream = _Dropper(drops)
        server = await asyncio.start_server(upstream.handle, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        provider = OpenAIProvider(base_url=f"http://127.0.0.1:{port}/v1", api_key="k", model="m", retries=0)
        out: list[object] = []
        try:
            async for piece in provider.stream(ProviderRequest("p", "s", (), "hi")):
                out.append(piece)
        except ProviderError as exc:
            out.append(exc)
        finally:
            await provider.aclose()
            server.close()
        return out, upstream.requests

    out, requests = asyncio.run(run())
    assert requests == 2  # one retry, never a loop
    if answered:
        assert out[0] == "fine"
    else:
        assert len(out) == 1 and isinstance(out[0], ProviderError) and out[0].code == "provider.error"
