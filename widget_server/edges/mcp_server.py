"""The MCP server's tools and resources, one set for both transports (streamable HTTP at `/mcp`, stdio from
`widget-server mcp`); each transport says how a call finds its tenant and the app's dependencies (`Resolve`).

Every tool reads and writes only the caller's tenant, through the functions the REST API uses:

- `list_personas`: the tenant's personas, each with its `persona://{slug}` resource;
- `chat`: one visitor message, the turn of `POST /v1/personas/{id}/prompt` (guardrails on the message and on the
  reply, stored, events recorded) on channel `mcp`; while the reply streams, progress notifications carry each
  piece of text (to a client that sent a progressToken). A refused message is a tool error with the reason;
- `get_conversation`: a stored transcript, as `GET /v1/conversations/{id}` answers it;
- `search_transcripts`: the console's transcript search (words, "phrases", a prefix), newest match first.

The persona resource is the persona as `GET /v1/personas/{id}` answers it: its upstream key is never shown.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Annotated, Any

import anyio
from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ResourceNotFoundError, ToolError
from mcp.types import CallToolResult, TextContent, ToolAnnotations
from pydantic import Field

from widget_server import __version__
from widget_server.backends.storage.search import BadCursor, TranscriptFilter
from widget_server.backends.storage.search_query import parse
from widget_server.domain import personas
from widget_server.domain.chat import completions, conversations
from widget_server.domain.chat.conversations import Conversation
from widget_server.domain.chat.deps import Deps
from widget_server.domain.chat.turn import Reply, run_turn
from widget_server.edges import conversations as transcripts
from widget_server.errors import PersonaNotFound, WidgetError

CHANNEL = "mcp"
MAX_ID = 80  # no id is longer: a longer one is not looked up
INSTRUCTIONS = ("The personas of one tenant of widget_server. list_personas names them; chat sends a visitor message "
                "to one (pass the conversation_id it returns to continue that conversation); get_conversation reads "
                "a stored transcript; search_transcripts finds conversations by the words of their messages.")
READ_ONLY = ToolAnnotations(read_only_hint=True, open_world_hint=False)


@dataclass(frozen=True)
class Caller:
    """Whom a call serves: the app's dependencies and the caller's tenant."""

    deps: Deps
    tenant_id: str


Resolve = Callable[[Context], Caller]
PersonaRef = Annotated[str, Field(min_length=1, max_length=MAX_ID, description="the persona's slug or id")]


@contextlib.contextmanager
def _as_tool_error() -> Iterator[None]:
    """The house's errors (a persona not found, a message too long…) as the tool's error, for the model to read."""
    try:
        yield
    except WidgetError as exc:
        raise ToolError(exc.message) from exc


def _result(data: dict[str, Any], *texts: str, is_error: bool = False) -> CallToolResult:
    """`data` as structured content, and as text (after `texts`) for hosts that only read text."""
    blocks = [TextContent(type="text", text=t) for t in texts]
    blocks.append(TextContent(type="text", text=json.dumps(data, ensure_ascii=False, default=str)))
    return CallToolResult(content=blocks, structured_content=data, is_error=is_error)


def _summary(row: dict[str, Any]) -> dict[str, Any]:
    doc = row["doc"]
    return {"id": row["id"], "slug": row["slug"], "name": doc.get("name"), "description": doc.get("description", ""),
            "greeting": doc.get("greeting", ""), "starters": doc.get("starters", []),
            "language": doc.get("language", "en"), "uri": f"persona://{row['slug']}"}


async def _list_personas(caller: Caller) -> CallToolResult:
    rows = await caller.deps.storage.list_personas(caller.tenant_id)
    return _result({"personas": [_summary(r) for r in rows]})


async def _turn(deps: Deps, conv: Conversation, message: str, ctx: Context) -> Reply:
    """The turn, with each piece of the streamed reply told as progress (the characters so far, and the piece)."""
    queue: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue()
    task = asyncio.create_task(run_turn(deps, conv, message, None, queue.put_nowait))
    task.add_done_callback(lambda _: queue.put_nowait(None))
    streamed = 0
    try:
        while (frame := await queue.get()) is not None:
            if frame["type"] == "reply.delta" and frame["text"]:
                streamed += len(frame["text"])
                await ctx.report_progress(streamed, None, frame["text"])
        return task.result()
    finally:
        if not task.done():  # the call was cancelled: the reply is stopped, and stored as cancelled
            task.cancel()
            with anyio.CancelScope(shield=True), contextlib.suppress(BaseException):
                await task


def _answer(conv: Conversation, reply: Reply) -> CallToolResult:
    data: dict[str, Any] = {
        "conversation_id": conv.id, "message_id": reply.message_id, "text": reply.text,
        "finish_reason": reply.finish_reason, "guardrails": reply.guardrails, "usage": reply.usage}
    if reply.guardrail:
        data["guardrail"] = reply.guardrail
    if completions.refused(reply):  # the model was not called: the reason, and what the widget shows instead
        reason = (reply.guardrail or {}).get("reason")
        return _result(data, f"The message was refused by the guardrail {reason!r}: {reply.text}", is_error=True)
    if reply.error:
        data["error"] = reply.error
        return _result(data, f"The persona's model failed: {reply.error['message']}", is_error=True)
    return _result(data, reply.text)


async def _chat(caller: Caller, persona: str, message: str, conversation_id: str | None,
                ctx: Context) -> CallToolResult:
    deps = caller.deps
    conv = await conversations.open_api(deps, caller.tenant_id, persona, message, conversation_id, None, CHANNEL)
    return _answer(conv, await _turn(deps, conv, message, ctx))


async def _search(caller: Caller, query: str, persona: str | None, limit: int,
                  before: str | None) -> CallToolResult:
    storage = caller.deps.storage
    persona_id = (await personas.get(storage, caller.tenant_id, persona))["id"] if persona else None
    try:
        page = await storage.transcripts.page(caller.tenant_id, TranscriptFilter(persona_id=persona_id,
                                                                                 text=parse(query)),
                                              before=before, limit=limit)
    except BadCursor:
        raise ToolError("before is not a cursor of this search: start again without it") from None
    found = [{"conversation_id": r["id"], "persona_id": r["persona_id"], "channel": r["channel"],
              "status": r["status"], "started_at": r["created_at"].isoformat(),
              "match": {"message_id": r["hit"]["id"], "role": r["hit"]["role"], "text": r["hit"]["text"],
                        "created_at": r["hit"]["created_at"].isoformat()}} for r in page.rows]
    return _result({"results": found, "next_cursor": page.older})


async def _persona_json(caller: Caller, slug: str) -> str:
    try:
        row = await personas.get(caller.deps.storage, caller.tenant_id, slug)
    except PersonaNotFound:
        raise ResourceNotFoundError(f"no persona {slug!r}") from None
    return json.dumps(personas.to_public(row), ensure_ascii=False)


def _quietly_built() -> MCPServer:
    """The SDK's server, without the `logging.basicConfig` its constructor calls: where the root logger has no
    handler yet (the app made by `create_app` in a test or another program), that put a RichHandler at INFO on the
    root, which then rendered every request's log lines (a third of a REST prompt's CPU). Logging is ours to set up
    (`logconfig.py`)."""
    root = logging.getLogger()
    placeholder = logging.NullHandler()
    root.addHandler(placeholder)  # basicConfig does nothing to a root that has a handler
    try:
        return MCPServer("widget_server", version=__version__, instructions=INSTRUCTIONS)
    finally:
        root.removeHandler(placeholder)


def build(resolve: Resolve) -> MCPServer:
    """The MCP server: its tools and the persona resource, each call served for `resolve(ctx)`."""
    server = _quietly_built()

    @server.tool(annotations=READ_ONLY)
    async def list_personas(ctx: Context) -> CallToolResult:
        """The tenant's personas (slug, name, description, greeting), oldest first."""
        return await _list_personas(resolve(ctx))

    @server.tool(annotations=ToolAnnotations(read_only_hint=False, destructive_hint=False, open_world_hint=True))
    async def chat(persona: PersonaRef,
                   message: Annotated[str, Field(min_length=1, description="the visitor's message")], ctx: Context,
                   conversation_id: Annotated[str | None, Field(max_length=MAX_ID, description=(
                       "a conversation this chat returned before, to continue it; none starts a new one"))] = None,
                   ) -> CallToolResult:
        """Send a visitor message to a persona and get its reply (the tenant's guardrails apply to both)."""
        with _as_tool_error():
            return await _chat(resolve(ctx), persona, message, conversation_id, ctx)

    @server.tool(annotations=READ_ONLY)
    async def get_conversation(conversation_id: Annotated[str, Field(min_length=1, max_length=MAX_ID)],
                               ctx: Context) -> CallToolResult:
        """A stored conversation with every message, its guardrail decisions, feedback and timing."""
        with _as_tool_error():
            caller = resolve(ctx)
            return _result(await transcripts.transcript(caller.deps.storage, caller.tenant_id, conversation_id))

    @server.tool(annotations=READ_ONLY)
    async def search_transcripts(
        query: Annotated[str, Field(min_length=1, max_length=500, description=(
            'words (all must match), "quoted phrases"; the last word also matches as a prefix'))],
        ctx: Context, persona: PersonaRef | None = None,
        limit: Annotated[int, Field(ge=1, le=50, description="conversations at most")] = 10,
        before: Annotated[str | None, Field(max_length=200, description="next_cursor of a previous search")] = None,
    ) -> CallToolResult:
        """The tenant's conversations whose messages match, each once at its newest match, newest first."""
        with _as_tool_error():
            return await _search(resolve(ctx), query, persona, limit, before)

    @server.resource("persona://{slug}", name="persona", mime_type="application/json",
                     description="A persona as the REST API shows it (never its upstream key)")
    async def persona(slug: str, ctx: Context) -> str:
        return await _persona_json(resolve(ctx), slug)

    return server
