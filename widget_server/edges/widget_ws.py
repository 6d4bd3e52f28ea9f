"""`WS /v1/widget/ws`: the widget protocol, version 1 (DESIGN.md). One socket = one visitor's conversation.

The hello handshake, then a reader (client frames, parsed by `widget_frames`, each type to its handler) and a
writer (the conversation channel's frames) until either ends. Any client frame the protocol cannot use gets an
`error` frame and the socket keeps serving; only the close codes below end it.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.websockets import WebSocket, WebSocketDisconnect, WebSocketState

from widget_server.backends.bus import BusUnavailable, encode
from widget_server.domain import keys, origins, personas
from widget_server.domain.chat import conversations, feedback, takeover
from widget_server.domain.chat.channels import Attached, Channel, Close, Whose
from widget_server.domain.chat.conversations import Conversation
from widget_server.domain.chat.live_turn import spawn_turn
from widget_server.domain.tenants import SessionClaims
from widget_server.edges import widget_frames as frames
from widget_server.edges.state import app_state
from widget_server.errors import (
    InvalidRequest,
    OriginNotAllowed,
    PersonaNotFound,
    RateLimited,
    TokenExpired,
    TokenInvalid,
    WidgetError,
)

log = logging.getLogger(__name__)
CLOSE = {"token": 4401, "origin": 4403, "not_found": 4404, "superseded": 4409, "hello": 4408, "rate": 4429,
         "too_big": 1009, "server": 1011, "restart": 1012, "later": 1013}
# Why the conversation's channel closes a socket: its close code and the error frame sent first.
CLOSED_BY = {
    "superseded": (CLOSE["superseded"], InvalidRequest("a newer connection took over", code="connection.superseded")),
    "gone": (CLOSE["not_found"], PersonaNotFound("this persona no longer exists")),
    "restart": (CLOSE["restart"], WidgetError("the conversation bus restarted: reconnect to resume",
                                              code="bus.restarted")),
}


class _Disconnected(Exception):
    """The client went away."""


class Closing(Exception):
    def __init__(self, code: int, error: WidgetError | None = None) -> None:
        self.code, self.error = code, error


class Session:
    """One connected socket: the hello handshake, then a reader and a writer around the conversation's channel."""

    def __init__(self, ws: WebSocket) -> None:
        self.ws = ws
        self.state = app_state(ws)
        self.deps = self.state.deps
        self.settings = self.deps.settings
        self.channel: Channel | None = None
        self.conv: Conversation | None = None
        self.attached: Attached | None = None
        self.sent = 0  # the highest seq sent: a frame at or below it came twice (the log, then live)
        self.taken = False  # a person has or is fetched for the conversation: its agents see the visitor come and go
        self.strikes: Counter[str] = Counter()
        self.token_key = ""
        self.address = ws.client.host if ws.client else "unknown"  # behind WIDGET_TRUSTED_PROXIES: the client's
        self.expires_at: float | None = None
        self.handlers: dict[str, Callable[[frames.Frame], Awaitable[None]]] = {
            "message": self.on_message, "cancel": self.on_cancel, "feedback": self.on_feedback,
            "event": self.on_event, "ping": self.on_ping, "hello": self.on_hello, "typing": self.on_typing}

    async def send(self, frame: dict[str, Any]) -> None:
        await self.ws.send_text(encode(frame))

    async def send_error(self, err: WidgetError) -> None:
        await self.send(err.frame(seq=self.sent))

    async def receive(self, timeout: float | None = None) -> frames.Frame | None:
        """The next client frame; `None` for one that could not be parsed (already answered)."""
        async with asyncio.timeout(timeout):
            message = await self.ws.receive()
        if message["type"] == "websocket.disconnect":
            raise _Disconnected()
        text = message.get("text")
        if text is None:
            await self.send_error(InvalidRequest("binary frames are not supported", code="frame.binary"))
            return None
        if len(text.encode(errors="surrogatepass")) > self.settings.max_frame_bytes:
            raise Closing(CLOSE["too_big"], InvalidRequest(
                f"frame larger than {self.settings.max_frame_bytes} bytes", code="frame.too_large"))
        try:
            return frames.decode(text)
        except InvalidRequest as exc:
            await self.send_error(exc)
            return None

    async def handshake(self) -> dict[str, Any]:
        try:
            frame = await self.receive(self.settings.hello_timeout_s)
        except TimeoutError as exc:
            raise Closing(CLOSE["hello"], InvalidRequest("no hello in time", code="hello.timeout")) from exc
        if frame is None or frame["type"] != "hello":
            raise Closing(CLOSE["token"], TokenInvalid("the first frame must be hello"))
        try:
            token, resume_id, last_seq, epoch = frames.hello(frame)
        except InvalidRequest as exc:
            raise Closing(CLOSE["token"], exc) from exc
        claims = self._claims(token)
        self.token_key = hashlib.sha256(token.encode()).hexdigest()[:32]  # what limits count: a token costs a session
        if await self.deps.limits.hit("hello", self.token_key) is not None:
            raise Closing(CLOSE["rate"], RateLimited("too many connections with this session: start a new one"))
        persona, key_active = await keys.persona_if_active(
            self.deps.storage, claims.tenant_id, claims.persona_id, claims.key_id)
        if not key_active:
            raise Closing(CLOSE["token"], TokenInvalid("the key this session was made with was revoked or expired",
                                                       code="auth.key_revoked"))
        self.expires_at = claims.expires_at
        if persona is None:
            raise Closing(CLOSE["not_found"], PersonaNotFound("this persona no longer exists"))
        try:
            return await self._open(claims, persona, resume_id, last_seq, epoch)
        except BusUnavailable as exc:
            log.warning("conversation bus unavailable", extra={"error": str(exc)})
            raise Closing(CLOSE["later"], WidgetError("the conversation bus is unavailable: try again shortly",
                                                      code="bus.unavailable")) from exc

    def _claims(self, token: Any) -> SessionClaims:
        try:
            claims = self.state.signer.verify(token)
        except TokenInvalid as exc:
            raise Closing(CLOSE["token"], exc) from exc
        if not origins.allowed(self.ws.headers.get("origin"), [claims.origin]):
            raise Closing(CLOSE["origin"], OriginNotAllowed("this socket's origin does not match the session"))
        return claims

    async def _open(self, claims: SessionClaims, persona: dict[str, Any], resume_id: str | None,
                    last_seq: int | None, epoch: str | None) -> dict[str, Any]:
        d = self.deps
        self.conv, from_storage = await conversations.open_widget(
            d, claims.tenant_id, persona, claims.visitor_id, claims.origin, resume_id, claims.user_id)
        self.taken = self.conv.status in conversations.TAKEN
        self.channel = channel = await d.hub.open(Whose(self.conv.id, self.conv.tenant_id, persona["id"]))
        self.attached, since = await channel.attach(last_seq if from_storage else None)
        # A log the client did not count in (another epoch: Redis restarted, or this node, or the log expired)
        # holds no frames of the conversation's past, whatever last_seq says: the client rebuilds from storage.
        resumed = since.frames is not None and (epoch is None or epoch == since.epoch)
        self.sent = last_seq if resumed and last_seq is not None else since.seq
        ready = {"type": "ready", "conversation_id": self.conv.id, "persona": personas.widget_view(persona),
                 "status": self.conv.status, "resumed": resumed, "seq": self.sent, "epoch": since.epoch}
        if not resumed and from_storage:
            ready["messages"] = await self._history()
        return {"ready": ready, "backlog": since.frames if resumed else []}

    async def _history(self) -> list[dict[str, Any]]:
        assert self.conv is not None
        rows = await self.deps.storage.list_messages(self.conv.tenant_id, self.conv.id)
        return [{"id": r["id"], "role": r["role"], "text": r["text"], "finish_reason": r["finish_reason"],
                 **({"agent": _shown(r["agent"])} if r["role"] == "agent" else {})}
                for r in rows if not r["internal"]]  # an agents' internal note never reaches the visitor

    async def send_frame(self, seq: int, text: str) -> None:
        if seq > self.sent:
            self.sent = seq
            if not self.taken and '"type":"escalation"' in text:
                self.taken = True
            await self.ws.send_text(text)

    async def writer(self) -> None:
        assert self.attached is not None
        while True:
            item = await self.attached.queue.get()
            if isinstance(item, Close):
                raise Closing(*CLOSED_BY[item.why])
            await self.send_frame(*item)

    async def reader(self) -> None:
        while True:
            frame = await self.receive()
            if frame is not None:
                await self.dispatch(frame)

    async def expiry(self) -> None:
        """A socket lives no longer than its session token: the widget then starts a new session and resumes."""
        if self.expires_at is not None:
            await asyncio.sleep(max(self.expires_at - time.time(), 0))
        raise Closing(CLOSE["token"], TokenExpired("session token expired: start a new session"))

    async def limited(self, rule: str, most_strikes: int, key: str | None = None) -> None:
        """Count one hit of `rule` on this socket's token (or `key`); too many is an error frame, and a client that
        keeps sending past `most_strikes` of them in a row is closed with 4429."""
        wait = await self.deps.limits.hit(rule, key or self.token_key)
        if wait is None:
            self.strikes[rule] = 0
            return
        self.strikes[rule] += 1
        if self.strikes[rule] > most_strikes:
            raise Closing(CLOSE["rate"], RateLimited(f"too many {rule}s"))
        raise RateLimited(f"too many {rule}s: try again in {wait:.0f} s", details={"retry_after_s": wait})

    async def dispatch(self, frame: frames.Frame) -> None:
        handler = self.handlers.get(frame["type"])
        try:
            await self.limited("frame", self.settings.rate_limit_frames)  # every frame type, not only messages
            if handler is None:
                raise InvalidRequest(f"unknown frame type {frame['type'][:40]!r}", code="frame.unknown_type")
            await handler(frame)
        except WidgetError as exc:
            await self.send_error(exc)

    async def on_ping(self, frame: frames.Frame) -> None:
        assert self.channel is not None
        await self.send({"type": "pong", "seq": self.sent})

    async def on_hello(self, frame: frames.Frame) -> None:
        raise InvalidRequest("already said hello", code="frame.unexpected")

    async def on_message(self, frame: frames.Frame) -> None:
        assert self.conv is not None and self.channel is not None
        text, client_id = frames.message(frame)
        try:
            await self.limited("message", self.settings.rate_limit_messages)  # per token: not rotated for free
            await self.limited("message_address", self.settings.rate_limit_messages, self.address)
            spawn_turn(self.deps, self.conv, self.channel, text, client_id)
        except WidgetError as exc:  # as a turn's own errors: naming the message, so the widget knows which
            await self.send(exc.frame(seq=self.sent, client_id=client_id))


    async def on_typing(self, frame: frames.Frame) -> None:
        """The visitor types: the agents of the conversation see it (only agents listen to where it goes)."""
        assert self.conv is not None
        takeover.visitor_typing(self.deps, self.conv.id, frames.typing(frame))

    async def on_cancel(self, frame: frames.Frame) -> None:
        assert self.channel is not None
        self.channel.cancel(frames.message_id(frame))

    async def on_feedback(self, frame: frames.Frame) -> None:
        assert self.conv is not None
        await feedback.submit(self.deps, self.conv, *frames.feedback(frame))

    async def on_event(self, frame: frames.Frame) -> None:
        assert self.conv is not None
        feedback.widget_event(self.deps, self.conv, *frames.event(frame))


def _shown(agent: dict[str, Any] | None) -> dict[str, Any]:
    """What the widget shows of the agent of a stored message (never their id)."""
    return {"name": (agent or {}).get("name"), "avatar_url": (agent or {}).get("avatar_url")}


async def widget_socket(ws: WebSocket) -> None:
    metrics = app_state(ws).metrics
    metrics.connections.inc()
    try:
        await _serve(ws)
    finally:
        metrics.connections.dec()


async def _serve(ws: WebSocket) -> None:
    await ws.accept()
    session = Session(ws)
    tasks: list[asyncio.Task[None]] = []
    try:
        opened = await session.handshake()
        await session.send(opened["ready"])
        await _present(session, True)
        for seq, text in opened["backlog"]:
            await session.send_frame(seq, text)
        tasks = [asyncio.create_task(session.writer()), asyncio.create_task(session.reader()),
                 asyncio.create_task(session.expiry())]
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        for task in done:
            task.result()
    except Closing as closing:
        await _close(session, closing.code, closing.error)
    except (_Disconnected, WebSocketDisconnect, ConnectionError):
        pass
    except Exception:
        log.exception("widget socket failed")
        await _close(session, CLOSE["server"], WidgetError("server error"))
    finally:
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(BaseException):
                await task
        if session.channel is not None and session.attached is not None:
            current = session.channel.subscriber is session.attached  # (not taken over by a newer socket)
            session.channel.detach(session.attached)
            if current:
                await _present(session, False)


async def _present(session: Session, online: bool) -> None:
    """Tell the agents of a conversation a person has (or is fetching) that its visitor came or went."""
    if not session.taken or session.conv is None:
        return
    try:
        await takeover.visitor_presence(session.deps, session.conv.tenant_id, session.conv.id, online)
    except Exception:  # (storage away: the inbox shows the last presence it knew; the socket is not failed for it)
        log.warning("visitor presence not recorded", exc_info=True)


async def _close(session: Session, code: int, error: WidgetError | None) -> None:
    if session.ws.client_state != WebSocketState.CONNECTED:
        return
    with contextlib.suppress(Exception):
        if error is not None:
            await session.send_error(error)
        await session.ws.close(code, error.code if error else None)
