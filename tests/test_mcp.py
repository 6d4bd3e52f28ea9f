"""The MCP server through the SDK's own client, over both transports: streamable HTTP at `/mcp` of a real server
(the 2026 protocol and the initialize handshake of older hosts), and stdio by spawning `widget-server mcp` on a
SQLite database the test made. Tools, progress while a reply streams, guardrails, the persona resource, tenant
isolation, the 401 before any MCP, and hostile input that never crashes a tool."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import httpx2
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from mcp import Client, MCPError, StdioServerParameters
from mcp.client.streamable_http import streamable_http_client
from mcp.types import CallToolResult, TextResourceContents

from tests.conftest import Stack
from tests.support.errors import assert_error
from tests.support.upstream import Upstream

ROOT = Path(__file__).resolve().parent.parent
POLICY = {"version": 1, "blocked_terms": [
    {"id": "rival", "terms": ["rivalco"], "action": "refuse", "applies_to": ["input", "output"]}]}
TOOLS = {"list_personas", "chat", "get_conversation", "search_transcripts"}


@contextlib.asynccontextmanager
async def over_http(stack: Stack, sk: str | None = None, mode: str = "auto") -> AsyncIterator[Client]:
    # MCP's timeouts (a read may wait for a reply's first token), not httpx2's default 5 s
    timeout = httpx2.Timeout(30, read=300)
    async with httpx2.AsyncClient(headers={"Authorization": f"Bearer {sk or stack.sk}"}, timeout=timeout) as http:
        async with Client(streamable_http_client(f"{stack.url}/mcp", http_client=http), mode=mode) as client:
            yield client


def stdio_params(stack: Stack, tenant_id: str) -> StdioServerParameters:
    """`python -m widget_server mcp` on the stack's SQLite database and upstream (the subprocess's own settings)."""
    s = stack.settings
    env = {"PATH": os.environ.get("PATH", ""), "PYTHONPATH": str(ROOT), "WIDGET_DATA_DIR": str(s.data_dir),
           "WIDGET_DATABASE_URL": s.resolved_database_url, "WIDGET_PROVIDER": "openai",
           "WIDGET_OPENAI_BASE_URL": str(s.openai_base_url), "WIDGET_OPENAI_MODEL": "echo",
           "WIDGET_SECRET_KEY": "test-secret", "WIDGET_COALESCE_MS": "20", "WIDGET_EVENTS_FLUSH_MS": "20"}
    return StdioServerParameters(command=sys.executable, args=["-m", "widget_server", "mcp", "--tenant", tenant_id],
                                 env=env, cwd=str(ROOT))


def structured(result: CallToolResult) -> dict[str, Any]:
    assert result.structured_content is not None, result.content
    return result.structured_content


def text_of(result: CallToolResult) -> str:
    return " ".join(getattr(block, "text", "") for block in result.content)


async def chat(client: Client, progress: list[tuple[float, str | None]] | None = None,
               **arguments: Any) -> CallToolResult:
    async def told(value: float, total: float | None, message: str | None) -> None:
        assert progress is not None
        progress.append((value, message))

    return await client.call_tool("chat", arguments, progress_callback=told if progress is not None else None)


def put_policy(stack: Stack, sk: str | None = None) -> None:
    r = httpx.put(f"{stack.url}/v1/safety-policy", json=POLICY, headers={"Authorization": f"Bearer {sk or stack.sk}"})
    assert r.status_code == 200, r.text


def stored(stack: Stack, conversation_id: str) -> dict[str, Any]:
    r = httpx.get(f"{stack.url}/v1/conversations/{conversation_id}", headers=stack.auth)
    assert r.status_code == 200, r.text
    return r.json()  # type: ignore[no-any-return]


def other_tenant(stack: Stack) -> tuple[dict[str, str], str, str]:
    """Another tenant with a persona and a conversation of its own: (its keys, the persona's slug, the conversation)."""
    theirs = stack.tenant()
    auth = {"Authorization": f"Bearer {theirs['sk']}"}
    r = httpx.post(f"{stack.url}/v1/personas", json={"name": "Theirs", "slug": "theirs",
                                                       "provider": {"kind": "openai", "model": "echo"}}, headers=auth)
    assert r.status_code == 201, r.text
    r = httpx.post(f"{stack.url}/v1/personas/theirs/prompt", json={"message": "their secret zebra"}, headers=auth,
                   timeout=30)
    assert r.status_code == 200, r.text
    return theirs, "theirs", r.json()["conversation_id"]


# streamable HTTP


@pytest.mark.parametrize("mode", ["auto", "legacy"])  # the 2026 protocol; the initialize handshake of older hosts
def test_chat_over_http_streams_progress_and_is_stored_on_channel_mcp(stack: Stack, mode: str) -> None:
    slug = stack.persona("pace-30-5")
    progress: list[tuple[float, str | None]] = []

    async def run() -> tuple[CallToolResult, CallToolResult, str | None]:
        async with over_http(stack, mode=mode) as client:
            first = await chat(client, progress, persona=slug, message="count for me")
            again = await chat(client, persona=slug, message="once more",
                               conversation_id=structured(first)["conversation_id"])
            return first, again, client.protocol_version

    first, again, version = asyncio.run(run())
    assert version == ("2026-07-28" if mode == "auto" else "2025-11-25")
    answer = structured(first)
    assert not first.is_error and answer["text"] == "w1 w2 w3 w4 w5 " and answer["finish_reason"] == "stop"
    assert text_of(first).startswith("w1 w2 w3 w4 w5 ")  # the reply is what a host's model reads first
    assert answer["guardrails"] == [] and answer["conversation_id"].startswith("conv_")
    assert len(progress) >= 2, progress  # the reply streamed: each piece told as it came
    assert "".join(m or "" for _, m in progress) == answer["text"]
    assert [v for v, _ in progress] == sorted({v for v, _ in progress})  # strictly increasing, as MCP requires
    assert structured(again)["conversation_id"] == answer["conversation_id"]
    conversation = stored(stack, answer["conversation_id"])
    assert conversation["channel"] == "mcp"
    assert [(m["role"], m["text"]) for m in conversation["messages"]] == [
        ("visitor", "count for me"), ("persona", "w1 w2 w3 w4 w5 "),
        ("visitor", "once more"), ("persona", "w1 w2 w3 w4 w5 ")]
    events = stack.wait_events(lambda got: sum(e["type"] == "reply.completed" for e in got) == 2,
                               conversation=answer["conversation_id"])
    assert {e["channel"] for e in events} == {"mcp"}


def test_a_refused_message_is_a_tool_error_with_the_reason_and_no_model_call(
    stack: Stack, upstream: tuple[Upstream, str]
) -> None:
    put_policy(stack)
    slug = stack.persona("echo")
    before = len(upstream[0].requests)

    async def run() -> CallToolResult:
        async with over_http(stack) as client:
            return await chat(client, [], persona=slug, message="what about rivalco?")

    result = asyncio.run(run())
    assert result.is_error
    assert "term.rival" in text_of(result)
    answer = structured(result)
    assert answer["finish_reason"] == "guardrail"
    assert answer["guardrails"] == [{"action": "refuse", "reason": "term.rival", "source": "input"}]
    assert len(upstream[0].requests) == before  # the model never read it
    messages = stored(stack, answer["conversation_id"])["messages"]
    assert [(m["role"], m["finish_reason"]) for m in messages] == [("visitor", None), ("persona", "guardrail")]
    stack.wait_events(lambda got: any(e["type"] == "guardrail.triggered" for e in got),
                      conversation=answer["conversation_id"])


def test_tools_and_the_persona_resource_over_http(stack_factory: Any, db_url: str) -> None:
    stack = stack_factory(database_url=db_url)
    slug = stack.persona("echo", name="Ada", description="Answers about cakes", greeting="Hello!")

    async def run() -> dict[str, Any]:
        async with over_http(stack) as client:
            tools = {t.name for t in (await client.list_tools()).tools}
            listed = structured(await client.call_tool("list_personas", {}))
            made = structured(await chat(client, persona=slug, message="a lemon elderflower cake"))
            transcript = await client.call_tool("get_conversation", {"conversation_id": made["conversation_id"]})
            found = structured(await client.call_tool("search_transcripts", {"query": "elderfl"}))
            nothing = structured(await client.call_tool("search_transcripts", {"query": "zebra"}))
            resource = (await client.read_resource(f"persona://{slug}")).contents
            templates = (await client.list_resource_templates()).resource_templates
            return {"tools": tools, "listed": listed, "made": made, "transcript": transcript, "found": found,
                    "nothing": nothing, "resource": resource, "templates": templates}

    got = asyncio.run(run())
    assert got["tools"] == TOOLS
    assert [(p["slug"], p["name"], p["description"], p["uri"]) for p in got["listed"]["personas"]] == [
        (slug, "Ada", "Answers about cakes", f"persona://{slug}")]
    transcript = structured(got["transcript"])
    assert transcript == stored(stack, got["made"]["conversation_id"])  # as GET /v1/conversations/{id} answers
    assert [r["conversation_id"] for r in got["found"]["results"]] == [got["made"]["conversation_id"]]
    assert got["found"]["results"][0]["match"]["text"] == "a lemon elderflower cake"
    assert got["nothing"] == {"results": [], "next_cursor": None}
    [contents] = got["resource"]
    assert isinstance(contents, TextResourceContents) and contents.mime_type == "application/json"
    persona = json.loads(contents.text)
    assert persona == httpx.get(f"{stack.url}/v1/personas/{slug}", headers=stack.auth).json()
    assert [t.uri_template for t in got["templates"]] == ["persona://{slug}"]


def test_a_personas_upstream_key_is_never_in_its_resource(stack_factory: Any, upstream: tuple[Upstream, str]) -> None:
    stack = stack_factory(allow_persona_base_url=True, allow_private_upstreams=True)
    slug = stack.persona("echo", provider={"kind": "openai", "model": "echo", "base_url": upstream[1],
                                           "api_key": "sk-upstream-0123456789"})

    async def run() -> str:
        async with over_http(stack) as client:
            [contents] = (await client.read_resource(f"persona://{slug}")).contents
            assert isinstance(contents, TextResourceContents)
            return contents.text

    text = asyncio.run(run())
    provider = json.loads(text)["provider"]
    assert provider["api_key"] is None and provider["api_key_set"] is True
    assert "sk-upstream-0123456789" not in text and "gAAAA" not in text  # neither the key nor its sealed form


def test_another_tenants_personas_and_conversations_are_not_found(stack: Stack) -> None:
    theirs, their_slug, their_conversation = other_tenant(stack)
    mine = stack.persona("echo")

    async def run() -> dict[str, Any]:
        async with over_http(stack) as client:
            out: dict[str, Any] = {
                "listed": structured(await client.call_tool("list_personas", {})),
                "chat": await chat(client, persona=their_slug, message="hello"),
                "attach": await chat(client, persona=mine, message="hi", conversation_id=their_conversation),
                "get": await client.call_tool("get_conversation", {"conversation_id": their_conversation}),
                "search": structured(await client.call_tool("search_transcripts", {"query": "zebra"})),
            }
            with pytest.raises(MCPError) as caught:
                await client.read_resource(f"persona://{their_slug}")
            out["resource"] = caught.value
        async with over_http(stack, sk=theirs["sk"]) as client:  # their own key still sees theirs
            out["theirs"] = structured(await client.call_tool("get_conversation",
                                                              {"conversation_id": their_conversation}))
        return out

    got = asyncio.run(run())
    assert [p["slug"] for p in got["listed"]["personas"]] == [mine]
    assert got["chat"].is_error and "no persona 'theirs'" in text_of(got["chat"])
    assert got["attach"].is_error and "no conversation" in text_of(got["attach"])
    assert got["get"].is_error and "no conversation" in text_of(got["get"])
    assert got["search"]["results"] == []
    assert "no persona" in str(got["resource"])
    assert [m["text"] for m in got["theirs"]["messages"]] == ["their secret zebra", "their secret zebra"]


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer sk_wrong"}, {"Authorization": "Basic abc"},
                                     {"X-API-Key": "pk_not_secret"}])
def test_without_a_secret_key_mcp_is_a_401_in_the_house_shape(stack: Stack, headers: dict[str, str]) -> None:
    call = {"jsonrpc": "2.0", "id": 1, "method": "tools/list"}
    for method in ("POST", "GET", "DELETE"):
        r = httpx.request(method, f"{stack.url}/mcp", json=call if method == "POST" else None,
                          headers={**headers, "Accept": "application/json, text/event-stream"})
        assert_error(r, 401, type_="auth")


def test_the_sdk_client_without_a_key_fails_to_connect(stack: Stack) -> None:
    async def run() -> None:
        async with httpx2.AsyncClient() as http:
            async with Client(streamable_http_client(f"{stack.url}/mcp", http_client=http)) as client:
                await client.list_tools()

    with pytest.raises(Exception):  # noqa: B017 (whatever the SDK raises for a 401: it must not connect)
        asyncio.run(run())


def test_the_openapi_document_describes_mcp_without_an_operation(stack: Stack) -> None:
    item = httpx.get(f"{stack.url}/openapi.json").json()["paths"]["/mcp"]
    assert set(item["x-mcp"]["tools"]) == TOOLS and item["x-mcp"]["resource_templates"] == ["persona://{slug}"]
    verbs = {"get", "put", "post", "delete", "patch", "options", "head", "trace"}
    assert not verbs & set(item)  # nothing for generated clients or schemathesis to call as REST


@settings(max_examples=40, suppress_health_check=[HealthCheck.function_scoped_fixture], deadline=None)
@given(body=st.one_of(st.binary(max_size=300), st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12).map(lambda v: json.dumps(v).encode())))
def test_any_body_with_a_key_is_answered_without_a_server_error(stack: Stack, body: bytes) -> None:
    r = httpx.post(f"{stack.url}/mcp", content=body, timeout=30,
                   headers={**stack.auth, "Content-Type": "application/json",
                            "Accept": "application/json, text/event-stream"})
    assert r.status_code < 500, r.text


TEXT = st.text(st.characters(codec="utf-8"), max_size=120) | st.text(max_size=120)


@settings(max_examples=25, suppress_health_check=[HealthCheck.function_scoped_fixture], deadline=None)
@given(persona=TEXT, message=TEXT, conversation_id=st.none() | TEXT, query=TEXT)
def test_hostile_tool_arguments_are_tool_errors_never_crashes(
    stack: Stack, caplog: pytest.LogCaptureFixture, persona: str, message: str, conversation_id: str | None,
    query: str,
) -> None:
    async def run() -> list[CallToolResult]:
        async with over_http(stack) as client:
            return [await chat(client, persona=persona, message=message, conversation_id=conversation_id),
                    await client.call_tool("get_conversation", {"conversation_id": conversation_id or persona}),
                    await client.call_tool("search_transcripts", {"query": query, "persona": persona or None})]

    with caplog.at_level(logging.ERROR, logger="mcp"):
        results = asyncio.run(run())
    assert [r for r in caplog.records if r.levelno >= logging.ERROR and r.name.startswith("mcp")] == []
    for result in results:
        assert result.is_error or result.structured_content is not None


# stdio


def test_stdio_serves_the_tenant_named_on_the_command_line(stack: Stack) -> None:
    put_policy(stack)
    slug = stack.persona("pace-30-4", name="Stdio")
    _, their_slug, their_conversation = other_tenant(stack)
    progress: list[tuple[float, str | None]] = []

    async def run() -> dict[str, Any]:
        async with Client(stdio_params(stack, stack.tenant_id)) as client:
            made = await chat(client, progress, persona=slug, message="stdio hello")
            conversation_id = structured(made)["conversation_id"]
            [resource] = (await client.read_resource(f"persona://{slug}")).contents
            with pytest.raises(MCPError):
                await client.read_resource(f"persona://{their_slug}")
            return {
                "tools": {t.name for t in (await client.list_tools()).tools},
                "listed": structured(await client.call_tool("list_personas", {})), "made": made,
                "refused": await chat(client, persona=slug, message="rivalco is better"),
                "get": structured(await client.call_tool("get_conversation", {"conversation_id": conversation_id})),
                "found": structured(await client.call_tool("search_transcripts", {"query": "stdio"})),
                "theirs": await client.call_tool("get_conversation", {"conversation_id": their_conversation}),
                "their_chat": await chat(client, persona=their_slug, message="hi"),
                "resource": resource,
            }

    got = asyncio.run(run())
    assert got["tools"] == TOOLS
    assert [p["slug"] for p in got["listed"]["personas"]] == [slug]
    made = structured(got["made"])
    assert made["text"] == "w1 w2 w3 w4 " and len(progress) >= 2
    assert "".join(m or "" for _, m in progress) == made["text"]
    assert got["refused"].is_error and "term.rival" in text_of(got["refused"])
    assert got["get"]["channel"] == "mcp" and [m["text"] for m in got["get"]["messages"]] == [
        "stdio hello", "w1 w2 w3 w4 "]
    assert got["get"] == stored(stack, made["conversation_id"])  # the server reads what stdio wrote
    assert [r["conversation_id"] for r in got["found"]["results"]] == [made["conversation_id"]]
    assert got["theirs"].is_error and got["their_chat"].is_error
    assert isinstance(got["resource"], TextResourceContents) and json.loads(got["resource"].text)["name"] == "Stdio"


def test_stdio_with_an_unknown_tenant_exits_with_an_error(stack: Stack) -> None:
    params = stdio_params(stack, "ten_nope")
    proc = asyncio.run(_run_until_exit([params.command, *params.args], params.env or {}))
    code, err = proc
    assert code == 2 and "no tenant ten_nope" in err


async def _run_until_exit(argv: list[str], env: dict[str, str]) -> tuple[int, str]:
    proc = await asyncio.create_subprocess_exec(*argv, env=env, cwd=str(ROOT), stdin=asyncio.subprocess.PIPE,
                                                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    _, err = await asyncio.wait_for(proc.communicate(), timeout=60)
    return proc.returncode or 0, err.decode()


def test_the_mcp_server_leaves_the_programs_logging_alone() -> None:
    """The SDK's constructor calls logging.basicConfig: on a root logger without handlers (a test, a program that
    embeds the app) it put a RichHandler at INFO there, which then rendered every request's log lines."""
    from widget_server.edges.mcp_server import build

    root = logging.getLogger()
    saved, level = root.handlers[:], root.level
    root.handlers.clear()
    try:
        build(lambda ctx: None)  # type: ignore[arg-type,return-value]
        assert root.handlers == [] and root.level == level
    finally:
        root.handlers[:] = saved
