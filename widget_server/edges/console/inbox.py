"""The console's inbox (`/console/inbox`): where agents take over escalated conversations (`domain/chat/takeover`).

- `GET /console/inbox`: the conversations waiting for a person, longest waiting first (how long, the persona, why,
  the last messages), the signed-in agent's own, and those other agents hold.
- `GET /console/inbox/events`: the tenant's inbox line as Server-Sent Events (`inbox`: escalated, claimed,
  released, resolved, closed, a visitor's message), on whichever node the escalation happened: every page of a
  signed-in agent listens (a badge on Inbox and in the tab title; on the inbox page a sound and a browser
  notification when asked for, and the list refreshes).
- `GET /console/inbox/{id}`: one conversation, live. `GET /console/inbox/{id}/events` streams what the visitor
  sees (their messages, the bot's replies, the agents' messages, the escalation states) and what only agents see
  (internal notes, the visitor typing), each event's id the two lines' seqs, so a reconnecting `EventSource`
  (`Last-Event-ID`) gets what it missed; the page gives the seqs it was rendered at (`after`).
- `POST /console/inbox/{id}/claim|release|transfer|resolve|close|messages|typing`: the agent's actions
  (`converse`: owners and agents; a viewer gets 403), with the CSRF token; JSON for `fetch`, a redirect back to
  the conversation for a plain form.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import datetime
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response, StreamingResponse
from starlette.routing import BaseRoute, Route

from widget_server.backends.bus import Line
from widget_server.backends.storage.console import ShortcutTaken
from widget_server.clock import now
from widget_server.domain.chat import takeover
from widget_server.domain.chat.conversations import check_text
from widget_server.domain.chat.deps import Deps
from widget_server.domain.chat.takeover import Agent
from widget_server.domain.console_users import ConsoleSession
from widget_server.edges.console.auth import console_page, user_of
from widget_server.edges.console.render import page
from widget_server.edges.live import KEEP_ALIVE, Follower
from widget_server.edges.state import app_state
from widget_server.errors import Conflict, ConversationNotFound, InvalidRequest, NotFound
from widget_server.ids import new_id

CONVERSATION_ID = re.compile(r"conv_[0-9a-z]{26}")
LISTED = 200  # conversations on the inbox page
PREVIEW = 3  # last messages shown per conversation
MOST_QUEUED = 2000  # frames a slow browser may fall behind by before its stream is ended (it reconnects)
SHORTCUT = re.compile(r"[a-z0-9][a-z0-9_-]{0,39}")
MAX_CANNED = 200
MAX_CANNED_CHARS = 2000


def agent_of(user: ConsoleSession) -> Agent:
    return _agent(user.user_id, user.display_name, user.email)


def _agent(user_id: str, display_name: str | None, email: str) -> Agent:
    """A console user as the visitor sees them: their display name, else their e-mail's local part."""
    return Agent(user_id, (display_name or email.split("@")[0])[:80])


def _conversation_id(request: Request) -> str:
    ref = str(request.path_params["id"])[:80]
    if not CONVERSATION_ID.fullmatch(ref):
        raise ConversationNotFound(f"no conversation {ref!r}")
    return ref


def _waited(since: datetime | None) -> str:
    if since is None:
        return "–"
    seconds = max(int((now() - since).total_seconds()), 0)
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min"
    return f"{seconds // 3600} h {seconds % 3600 // 60} min"


async def _listing(request: Request) -> dict[str, Any]:
    user = user_of(request)
    storage = app_state(request).deps.storage
    rows = await storage.taken_over(user.tenant_id, limit=LISTED)
    personas = {p["id"]: p["doc"].get("name") or p["slug"] for p in await storage.list_personas(user.tenant_id)}
    last: dict[str, list[dict[str, Any]]] = {}
    for m in await storage.last_messages(user.tenant_id, [r["id"] for r in rows], PREVIEW):
        if not m["internal"]:
            last.setdefault(m["conversation_id"], []).append(m)
    for row in rows:
        row["persona_name"] = personas.get(row["persona_id"], row["persona_id"])
        row["waited"] = _waited(row["escalated_at"])
        row["left"] = _waited(row["visitor_seen_at"])
        row["last"] = last.get(row["id"], [])
    waiting = [r for r in rows if r["status"] == "escalated"]
    mine = [r for r in rows if r["status"] == "agent" and r["agent_id"] == user.user_id]
    others = [r for r in rows if r["status"] == "agent" and r["agent_id"] != user.user_id]
    return {"waiting": waiting, "mine": mine, "others": others}


async def _canned(request: Request) -> list[dict[str, Any]]:
    return await app_state(request).deps.storage.console.list_canned(user_of(request).tenant_id)


@console_page("read")
async def index(request: Request) -> Response:
    listing = await _listing(request)
    if request.query_params.get("part") == "list":  # the list alone: the page refreshes it on an inbox event
        return page(request, "inbox_list.html", **listing)
    return page(request, "inbox.html", title="Inbox", canned=await _canned(request), **listing)


@console_page("read", write="configure")
async def add_canned(request: Request) -> Response:
    """An owner adds a canned reply: a shortcut (`/thanks`) and its text."""
    user = user_of(request)
    fields = await _fields(request)
    shortcut = str(fields.get("shortcut") or "").strip().lstrip("/").lower()
    text = fields.get("text")
    if not SHORTCUT.fullmatch(shortcut):
        raise InvalidRequest("a shortcut is 1 to 40 letters, digits, - or _", details={"field": "shortcut"})
    if not isinstance(text, str) or not text.strip() or len(text) > MAX_CANNED_CHARS:
        raise InvalidRequest(f"the text is 1 to {MAX_CANNED_CHARS} characters", details={"field": "text"})
    check_text(text, "text", code="request.invalid")
    storage = app_state(request).deps.storage
    if len(await storage.console.list_canned(user.tenant_id)) >= MAX_CANNED:
        raise Conflict(f"a tenant has at most {MAX_CANNED} canned replies", code="canned.limit_reached")
    try:
        await storage.console.add_canned({"id": new_id("cnd"), "tenant_id": user.tenant_id, "shortcut": shortcut,
                                          "text": text.strip(), "created_at": now()})
    except ShortcutTaken:
        raise Conflict(f"/{shortcut} exists already", code="canned.shortcut_taken",
                       details={"field": "shortcut"}) from None
    return _canned_done(request, 201)


@console_page("read", write="configure")
async def delete_canned(request: Request) -> Response:
    ref = str(request.path_params["id"])[:80]
    if not await app_state(request).deps.storage.console.delete_canned(user_of(request).tenant_id, ref):
        raise NotFound(f"no canned reply {ref!r}", code="canned.not_found")
    return _canned_done(request, 200)


def _canned_done(request: Request, status_code: int) -> Response:
    if "application/json" in request.headers.get("accept", ""):
        return JSONResponse({"ok": True}, status_code=status_code)
    return RedirectResponse("/console/inbox#canned-title", status_code=303)


@console_page("read")
async def next_waiting(request: Request) -> Response:
    """Alt+J: the conversation that has waited longest, or the inbox when nobody waits."""
    rows = await app_state(request).deps.storage.taken_over(user_of(request).tenant_id, limit=LISTED)
    waiting = next((r for r in rows if r["status"] == "escalated"), None)
    return RedirectResponse(f"/console/inbox/{waiting['id']}" if waiting else "/console/inbox", status_code=303)


class Tap:
    """A bus listener that feeds one SSE stream: each frame with the name of the line it came on."""

    def __init__(self, name: str, queue: asyncio.Queue[tuple[str, int, str] | None]) -> None:
        self.name = name
        self.queue = queue

    def frame(self, seq: int, text: str) -> None:
        if self.queue.qsize() > MOST_QUEUED:
            self.lost()
        else:
            self.queue.put_nowait((self.name, seq, text))

    def control(self, message: dict[str, Any]) -> None:
        return None

    def lost(self) -> None:
        self.queue.put_nowait(None)  # the browser reconnects and gets what it missed, or reloads


def _event(name: str, data: str, event_id: str | None = None) -> str:
    return (f"id: {event_id}\n" if event_id else "") + f"event: {name}\ndata: {data}\n\n"


async def _stream(request: Request, lines: dict[str, str], after: dict[str, int | None]) -> Response:
    """SSE of these bus lines (name → line id), replaying each after the seq given; a line whose log no longer
    covers that seq sends `reload` (the page reads what is stored again)."""
    bus = app_state(request).deps.hub.bus
    queue: asyncio.Queue[tuple[str, int, str] | None] = asyncio.Queue()
    joined: list[tuple[Line, Tap]] = []
    backlog: list[tuple[str, int, str]] = []
    seqs: dict[str, int] = {}
    reload = False
    try:
        for name, line_id in lines.items():
            line, tap = bus.line(line_id), Tap(name, queue)
            await line.join(tap)
            joined.append((line, tap))
            last = after.get(name)
            since = await line.since(last)
            if last is not None and since.frames is None:
                reload = True  # the log no longer covers it (expired, or Redis restarted)
            seqs[name] = last if last is not None and since.frames is not None else since.seq
            backlog += [(name, seq, text) for seq, text in since.frames or []]
    except BaseException:
        for line, tap in joined:
            await line.leave(tap)
        raise

    def event_id() -> str:
        return ".".join(str(seqs[name]) for name in lines)

    async def events() -> AsyncIterator[str]:
        client = Follower(request)
        try:
            yield "retry: 1000\n\n"
            if reload:
                yield _event("reload", "{}")
            for name, seq, text in backlog:
                seqs[name] = seq
                yield _event(name, text, event_id())
            yield _event("ready", "{}", event_id())
            async for item in client.follow(queue):  # ends when the bus lost what it held: the browser reconnects
                if item is None:
                    yield KEEP_ALIVE
                    continue
                name, seq, text = item
                if seq <= seqs[name]:
                    continue  # in the backlog already
                seqs[name] = seq
                yield _event(name, text, event_id())
        finally:
            client.close()
            for line, tap in joined:
                with contextlib.suppress(Exception):
                    await line.leave(tap)

    headers = {"Cache-Control": "no-store", "X-Accel-Buffering": "no"}
    return StreamingResponse(events(), media_type="text/event-stream", headers=headers)


def _after(request: Request, names: list[str]) -> dict[str, int | None]:
    """The seqs a stream resumes after: `Last-Event-ID` (a reconnect), else `after` (the page's), else none."""
    given = request.headers.get("last-event-id") or request.query_params.get("after") or ""
    parts = given.split(".")
    if len(parts) != len(names) or not all(p.isdigit() and len(p) <= 16 for p in parts):
        return {name: None for name in names}
    return {name: int(p) for name, p in zip(names, parts, strict=True)}


@console_page("read")
async def inbox_events(request: Request) -> Response:
    tenant_id = user_of(request).tenant_id
    return await _stream(request, {"inbox": takeover.inbox_line(tenant_id)}, {"inbox": None})


async def _held(request: Request) -> dict[str, Any]:
    tenant_id = user_of(request).tenant_id
    row = await app_state(request).deps.storage.get_conversation(tenant_id, _conversation_id(request))
    if row is None:
        raise ConversationNotFound(f"no conversation {request.path_params['id']!r}")
    return row


@console_page("read")
async def conversation_events(request: Request) -> Response:
    row = await _held(request)
    names = ["conversation", "agents"]
    return await _stream(request, {"conversation": row["id"], "agents": takeover.agents_line(row["id"])},
                         _after(request, names))


@console_page("read")
async def conversation(request: Request) -> Response:
    user = user_of(request)
    deps = app_state(request).deps
    row = await _held(request)
    # The seqs first, then what is stored: a frame in between is both shown and streamed (the page keeps one).
    seqs = [(await deps.hub.bus.line(line_id).since(None)).seq
            for line_id in (row["id"], takeover.agents_line(row["id"]))]
    messages = await deps.storage.list_messages(user.tenant_id, row["id"])
    persona = await deps.storage.get_persona(user.tenant_id, row["persona_id"])
    agents = [u for u in await deps.storage.console.list_users(user.tenant_id)
              if u["role"] in ("owner", "agent") and u["id"] != user.user_id]
    holder = row["status"] == "agent" and row["agent_id"] == user.user_id
    return page(request, "inbox_conversation.html", title="Inbox conversation", conv=row, messages=messages,
                persona_name=persona["doc"].get("name") if persona else None, after=".".join(map(str, seqs)),
                holder=holder, can_act=user.can("converse"), agents=agents, waited=_waited(row["escalated_at"]),
                left=_waited(row["visitor_seen_at"]), canned=await _canned(request))


async def _fields(request: Request) -> dict[str, Any]:
    """A form post's fields, or a fetch's JSON object."""
    if request.headers.get("content-type", "").split(";")[0].strip() == "application/json":
        body = await request.json()
        if not isinstance(body, dict):
            raise InvalidRequest("the body must be a JSON object")
        return body
    return dict(await request.form())


def _done(request: Request, row: dict[str, Any], status_code: int = 200) -> Response:
    if "application/json" in request.headers.get("accept", ""):
        return JSONResponse({"id": row["id"], "status": row.get("status")}, status_code=status_code)
    return RedirectResponse(f"/console/inbox/{request.path_params['id']}", status_code=303)


Step = Callable[[Deps, str, str, Agent], Awaitable[dict[str, Any]]]


def _step(run: Step) -> Callable[[Request], Awaitable[Response]]:
    """A takeover step by the signed-in agent (claim, release, resolve, close): the domain's, then back."""
    @console_page("read", write="converse")
    async def endpoint(request: Request) -> Response:
        user = user_of(request)
        row = await run(app_state(request).deps, user.tenant_id, _conversation_id(request), agent_of(user))
        return _done(request, row)
    return endpoint


@console_page("read", write="converse")
async def transfer(request: Request) -> Response:
    user = user_of(request)
    deps = app_state(request).deps
    await _held(request)
    to = str((await _fields(request)).get("to") or "")[:80]
    target = await deps.storage.console.get_user(user.tenant_id, to) if to else None
    if target is None or target["role"] not in ("owner", "agent"):
        raise InvalidRequest("transfer to an agent or an owner of this tenant", details={"field": "to"})
    to_agent = _agent(target["id"], target.get("display_name"), target["email"])
    row = await takeover.transfer(deps, user.tenant_id, _conversation_id(request), agent_of(user), to_agent)
    return _done(request, row)


@console_page("read", write="converse")
async def message(request: Request) -> Response:
    user = user_of(request)
    await _held(request)
    fields = await _fields(request)
    internal = fields.get("internal") in (True, "1", "true", "on")
    said = await takeover.say(app_state(request).deps, user.tenant_id, _conversation_id(request), agent_of(user),
                              fields.get("text"), internal)
    return _done(request, {"id": said["id"], "status": None}, 201)


@console_page("read", write="converse")
async def typing(request: Request) -> Response:
    """The agent types (or stopped): the visitor's widget shows it. Only the agent holding the conversation."""
    user = user_of(request)
    row = await _held(request)
    if row["status"] == "agent" and row["agent_id"] == user.user_id:
        takeover.agent_typing(app_state(request).deps, row["id"], (await _fields(request)).get("active") is True)
    return Response(status_code=204)


ROUTES: list[BaseRoute] = [
    Route("/console/inbox", index, methods=["GET"]),
    Route("/console/inbox/events", inbox_events, methods=["GET"]),
    Route("/console/inbox/next", next_waiting, methods=["GET"]),
    Route("/console/inbox/canned", add_canned, methods=["POST"]),
    Route("/console/inbox/canned/{id}/delete", delete_canned, methods=["POST"]),
    Route("/console/inbox/{id}", conversation, methods=["GET"]),
    Route("/console/inbox/{id}/events", conversation_events, methods=["GET"]),
    *(Route(f"/console/inbox/{{id}}/{name}", handler, methods=["POST"]) for name, handler in (
        ("claim", _step(takeover.claim)), ("release", _step(takeover.release)), ("transfer", transfer),
        ("resolve", _step(lambda deps, tenant, conv, agent: takeover.resolve(deps, tenant, conv, None, agent))),
        ("close", _step(takeover.close)), ("messages", message), ("typing", typing))),
]
