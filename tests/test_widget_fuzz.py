"""Hostile client frames on a real socket, on SQLite and on PostgreSQL (issue 9, section 3).

Any text frame within the 16 KiB limit gets a frame the protocol defines and the socket keeps serving: a frame
the server cannot use gets an `error` naming the field, `ping` still gets its `pong`, a normal turn still streams
to `reply.end`, and storage holds only what it can hold (PostgreSQL refuses NUL, lone surrogates and NaN, where
SQLite would take them; an analytics batch it refuses would be retried forever and hold up every later event).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import secrets
import sqlite3
import threading
import time
import unicodedata
from collections.abc import Callable, Iterator
from typing import Any

import asyncpg
import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from websockets.exceptions import ConnectionClosed

from tests.conftest import Stack
from tests.support.servers import serve_in_thread

SERVER_TYPES = {"ready", "message.accepted", "reply.start", "reply.delta", "reply.end", "guardrail", "escalation",
                "typing", "agent.message", "error", "pong"}
CLIENT_TYPES = {"hello", "message", "cancel", "feedback", "event", "ping", "typing"}
FINISH_REASONS = {"stop", "length", "guardrail", "cancelled", "error"}
MAX_FRAME = 16 * 1024
BIDI = "\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069"

# What storage cannot hold (PostgreSQL: NUL, lone surrogates) or a reader should never get (controls, bidi).
NASTY = {
    "lone high surrogate": "\ud800", "lone low surrogate": "a\udfffb", "surrogate pair reversed": "\udc00\ud800",
    "NUL": "a\x00b", "escape sequence": "\x1b[2J", "DEL": "\x7f", "NEL": "x\x85", "bell": "\x07",
    "RLO override": "abc\u202edef", "LRI isolate": "\u2066x\u2069", "LRE embedding": "\u202ax",
}
# Literals json.dumps cannot write: spliced in where the frame holds the string "<<lit>>".
LITERALS = {"1e400": "1e400", "-1e400": "-1e400", "NaN": "NaN", "Infinity": "Infinity", "-Infinity": "-Infinity",
            "5000 digits": "9" * 5000}
HUGE = {"10**30": 10**30, "-10**30": -(10**30), "2**64": 2**64}


def raw(frame: dict[str, Any], literal: str | None = None) -> str:
    """The frame as JSON, with the value "<<lit>>" replaced by a literal (1e400, NaN…)."""
    text = json.dumps(frame)
    return text if literal is None else text.replace('"<<lit>>"', literal)


def clean(text: str) -> bool:
    """What storage can hold and a reader may get: no lone surrogate, no control character but tab and newlines,
    no bidi embedding, override or isolate."""
    return not any(ch in BIDI or (ch not in "\t\n\r" and unicodedata.category(ch) in ("Cc", "Cs")) for ch in text)


def assert_protocol(frame: Any) -> None:
    assert isinstance(frame, dict) and frame.get("type") in SERVER_TYPES, f"not a protocol frame: {frame!r}"
    assert isinstance(frame.get("seq"), int), f"no seq: {frame!r}"
    if frame["type"] == "error":
        assert isinstance(frame.get("code"), str) and frame["code"], frame
        assert isinstance(frame.get("message"), str) and frame["message"], frame
        assert isinstance(frame.get("retryable"), bool), frame
    if frame["type"] == "reply.end":
        assert frame["finish_reason"] in FINISH_REASONS, frame


class Probe:
    """One visitor's socket. Every frame received must be a protocol frame; a socket the server closes is
    reported, then opened again on the same conversation, so one run names every case that breaks."""

    def __init__(self, stack: Stack, persona: str) -> None:
        self.stack = stack
        self.token, self.visitor_id = stack.token(persona)
        self.ws = stack.open(persona, token=self.token)
        ready = self.ws.recv()
        assert ready["type"] == "ready", ready
        self.conversation_id: str = ready["conversation_id"]
        self.seen: list[dict[str, Any]] = []
        self.closes: list[int | None] = []
        self.syncs = 0
        self.last_client_id = self.last_reply_id = ""

    def recv(self, timeout: float = 10) -> dict[str, Any]:
        frame = self.ws.recv(timeout)
        assert_protocol(frame)
        self.seen.append(frame)
        if frame["type"] == "reply.start":
            self.last_reply_id = frame["message_id"]
        return frame

    def send(self, payload: str | bytes | dict[str, Any]) -> None:
        self.ws.conn.send(json.dumps(payload) if isinstance(payload, dict) else payload)

    def until(self, done: Callable[[dict[str, Any]], bool], timeout: float = 10) -> list[dict[str, Any]]:
        got = []
        while True:
            got.append(frame := self.recv(timeout))
            if done(frame):
                return got

    def exchange(self, payload: str | bytes | dict[str, Any]) -> list[dict[str, Any]]:
        """Send `payload`, then a ping, then a frame of an unknown type of our own: the frames received before
        the error that names that type (pongs aside: the payload may be a ping itself). The ping must get a pong."""
        self.syncs += 1
        tag = f"sync-{self.syncs}"
        self.send(payload)
        self.send({"type": "ping"})
        self.send({"type": tag})
        got = self.until(lambda f: f["type"] == "error" and f"'{tag}'" in f["message"])[:-1]
        assert any(f["type"] == "pong" for f in got), f"no pong after {payload!r:.200}: {got}"
        return [f for f in got if f["type"] != "pong"]

    def answer(self, payload: str | bytes | dict[str, Any]) -> dict[str, Any]:
        """The error frame that answers `payload`; then the socket must still answer a ping."""
        got = [f for f in self.exchange(payload) if f["type"] == "error"]
        if not got:  # a message's text may be checked by its turn, which can answer after the pong
            got = self.until(lambda f: f["type"] == "error", timeout=3)[-1:]
        self.exchange({"type": "ping", "again": True})
        return got[0]

    def reopen(self) -> None:
        self.closes.append(self.ws.close_code(timeout=2))
        self.ws = self.stack.open("", token=self.token, resume={"conversation_id": self.conversation_id})
        ready = self.ws.recv()
        assert ready["type"] == "ready" and ready["conversation_id"] == self.conversation_id, ready

    def turn(self, text: str) -> list[dict[str, Any]]:
        """A normal message, and every frame up to the end of its own reply (earlier replies may still run)."""
        client_id = self.last_client_id = f"c-{secrets.token_hex(4)}"
        self.send({"type": "message", "client_id": client_id, "text": text})
        got = self.until(lambda f: f["type"] == "message.accepted" and f["client_id"] == client_id, timeout=30)
        got += self.until(lambda f: f["type"] == "reply.start", timeout=30)
        reply_id = got[-1]["message_id"]
        return got + self.until(lambda f: f["type"] == "reply.end" and f["message_id"] == reply_id, timeout=30)

    def stored(self) -> dict[str, Any]:
        r = httpx.get(f"{self.stack.url}/v1/conversations/{self.conversation_id}", headers=self.stack.auth)
        assert r.status_code == 200, r.text
        return r.json()  # type: ignore[no-any-return]


def run_cases(probe: Probe, cases: list[tuple[str, str | bytes | dict[str, Any], str | None]]) -> None:
    """Each case gets an `error` frame whose `details.field` is the one named (None: a frame with no field)."""
    failures = []
    for label, payload, field in cases:
        try:
            err = probe.answer(payload)
        except ConnectionClosed:
            probe.reopen()
            failures.append(f"{label}: socket closed with {probe.closes[-1]}")
            continue
        except TimeoutError:
            failures.append(f"{label}: no error frame")
            continue
        got = (err.get("details") or {}).get("field")
        if field is not None and got != field:
            failures.append(f"{label}: details.field {got!r}, wanted {field!r}: {err}")
    assert not failures, "\n".join(failures)


def assert_consistent(messages: list[dict[str, Any]]) -> None:
    """Every visitor message has its reply, and every stored text is one storage can hold."""
    roles = [m["role"] for m in messages]
    assert roles == ["visitor", "persona"] * (len(roles) // 2), roles
    assert all(clean(m["text"]) for m in messages), [m["text"] for m in messages]


def bad_strings(field: str, frame: dict[str, Any], *, over: int | None = None) -> list[tuple[str, str, str]]:
    """`frame` with `field` set to each nasty string, wrong type, huge number and literal."""
    cases = [(f"{field} {name}", raw({**frame, field: value}), field) for name, value in NASTY.items()]
    cases += [(f"{field} {name}", raw({**frame, field: value}), field) for name, value in HUGE.items()]
    cases += [(f"{field} {name}", raw({**frame, field: "<<lit>>"}, lit), field) for name, lit in LITERALS.items()]
    cases += [(f"{field} is {type(v).__name__}", raw({**frame, field: v}), field) for v in (5, 1.5, True, ["x"], {})]
    if over is not None:
        cases.append((f"{field} of {over} characters", raw({**frame, field: "x" * over}), field))
    return cases


@pytest.fixture
def fuzz_stack(stack_factory: Callable[..., Stack], db_url: str) -> Stack:
    # A high rate limit: the fuzzer sends many valid messages, which must not end in the 4429 close.
    return stack_factory(database_url=db_url, rate_limit_messages=100_000, rate_limit_messages_per_address=100_000,
                         rate_limit_frames=100_000)


def test_bad_message_fields_get_an_error_naming_the_field_and_store_nothing(fuzz_stack: Stack) -> None:
    probe = Probe(fuzz_stack, fuzz_stack.persona("echo"))
    message = {"type": "message", "client_id": "c1", "text": "hello"}
    cases = bad_strings("text", message) + bad_strings("client_id", message, over=81)
    cases += [("text missing", {"type": "message", "client_id": "c2"}, "text"),
              ("text blank", {**message, "text": "  \n "}, "text"),
              ("text too long", {**message, "text": "x" * 4001}, "text"),
              ("client_id empty", {**message, "client_id": ""}, "client_id")]
    # A client id of its own for each: a refused message must not make the next one look like a resend.
    run_cases(probe, [(label, (json.dumps(p) if isinstance(p, dict) else p).replace('"c1"', f'"case-{i}"'), f)
                      for i, (label, p, f) in enumerate(cases)])
    assert probe.stored()["messages"] == []  # nothing half-written: no visitor message, no reply
    end = probe.turn("still here")[-1]
    assert end["finish_reason"] == "stop"
    assert [(m["role"], m["text"]) for m in probe.stored()["messages"]] == [
        ("visitor", "still here"), ("persona", "still here")]


def test_a_refused_message_does_not_use_up_its_client_id(fuzz_stack: Stack) -> None:
    """The widget's message with a lone surrogate is refused; the same message id sent again with clean text is
    the visitor's message, not a resend to ignore."""
    probe = Probe(fuzz_stack, fuzz_stack.persona("echo"))
    err = probe.answer({"type": "message", "client_id": "c1", "text": "half an emoji \ud83d"})
    assert err["details"]["field"] == "text"
    probe.send({"type": "message", "client_id": "c1", "text": "an emoji \U0001f600"})
    frames = probe.until(lambda f: f["type"] == "reply.end", timeout=5)
    assert frames[0]["type"] == "message.accepted" and frames[-1]["finish_reason"] == "stop"
    assert [m["text"] for m in probe.stored()["messages"]] == ["an emoji \U0001f600"] * 2


def test_bad_cancel_and_feedback_fields_get_an_error_naming_the_field(fuzz_stack: Stack) -> None:
    probe = Probe(fuzz_stack, fuzz_stack.persona("echo"))
    reply_id = probe.turn("rate me")[-1]["message_id"]
    feedback = {"type": "feedback", "message_id": reply_id, "rating": "up", "comment": "fine"}
    cases = bad_strings("message_id", {"type": "cancel", "message_id": "msg_x"}, over=81)
    cases += [("cancel without message_id", {"type": "cancel"}, "message_id")]
    cases += bad_strings("message_id", feedback, over=81) + bad_strings("rating", feedback)
    cases += bad_strings("comment", feedback, over=2001)
    cases += [("rating missing", {"type": "feedback", "message_id": reply_id}, "rating"),
              ("rating UP", {**feedback, "rating": "UP"}, "rating")]
    run_cases(probe, cases)
    assert probe.stored()["messages"][-1]["feedback"] is None  # no refused rating was stored
    assert probe.exchange({**feedback, "comment": "tab\tand\nnewline ok \u05e9\u05dc\u05d5\u05dd"}) == []
    assert probe.stored()["messages"][-1]["feedback"] == {
        "rating": "up", "comment": "tab\tand\nnewline ok \u05e9\u05dc\u05d5\u05dd"}


def test_bad_event_fields_get_an_error_and_reach_no_analytics_batch(fuzz_stack: Stack) -> None:
    probe = Probe(fuzz_stack, fuzz_stack.persona("echo"))
    event = {"type": "event", "name": "widget.opened", "props": {"page": "/"}}
    cases = bad_strings("name", event) + [("name unknown", {**event, "name": "widget.hacked"}, "name")]
    for name, value in NASTY.items():
        cases += [(f"props value {name}", {**event, "props": {"page": value}}, "props.page"),
                  (f"props key {name}", {**event, "props": {value: 1}}, "props"),
                  (f"props nested {name}", {**event, "props": {"a": [{"b": value}]}}, "props.a[0].b"),
                  (f"props under a key {name}", {**event, "props": {"a b": {"b": value}}}, "props.*.b")]
    for name, lit in LITERALS.items():
        cases.append((f"props value {name}", raw({**event, "props": {"n": "<<lit>>"}}, lit), "props.n"))
    cases += [(f"props value {name}", {**event, "props": {"n": [v]}}, "props.n[0]") for name, v in HUGE.items()]
    cases += [(f"props is {type(v).__name__}", {**event, "props": v}, "props") for v in ("x", 5, ["a"], True)]
    cases += [("props too big", {**event, "props": {"a": "x" * 3000}}, "props"),
              ("props too deep", {**event, "props": {"a": [[[[[[[[1]]]]]]]]}}, None)]
    run_cases(probe, cases)
    marker = secrets.token_hex(4)
    props = {"marker": marker, "n": 1.5, "big": 2**53, "ok": "\u05e9\u05dc\u05d5\u05dd \U0001f600\ttab"}
    assert probe.exchange({**event, "props": props}) == []
    writes = fuzz_stack.wait_events(
        lambda got: any(e["attributes"].get("props", {}).get("marker") == marker for e in got),
        conversation=probe.conversation_id)
    widget = [e for e in writes if e["type"].startswith("widget.")]
    assert [e["attributes"]["props"] for e in widget] == [props]  # no refused event was recorded
    assert_writer_healthy(fuzz_stack)


def test_malformed_frames_get_an_error_and_the_socket_keeps_serving(fuzz_stack: Stack) -> None:
    probe = Probe(fuzz_stack, fuzz_stack.persona("echo"))
    cases: list[tuple[str, str | bytes | dict[str, Any], str | None]] = [
        ("binary frame", b"\x00\x01binary", None), ("binary JSON", b'{"type": "ping"}', None),
        ("empty text", "", None), ("not JSON", "{not json", None), ("NUL text", "\x00", None),
        ("array nested 5,000 deep", "[" * 5000 + "]" * 5000, None),
        ("object nested 2,500 deep", '{"a":' * 2500 + "1" + "}" * 2500, None),
        ("array nested 900 deep", "[" * 900 + "]" * 900, None),
        ("message text nested 5,000 deep", '{"type":"message","text":' + "[" * 5000 + "]" * 5000 + "}", None),
        ("array", "[]", None), ("number", "5", None), ("string", '"ping"', None), ("null", "null", None),
        ("true", "true", None), ("object without type", "{}", None), ("type is a number", '{"type": 5}', None),
        ("type is null", '{"type": null}', None), ("unknown type", '{"type": "what"}', None),
        ("type lone surrogate", '{"type": "\\ud800"}', None), ("type RLO", '{"type": "\\u202eping"}', None),
        ("second hello", {"type": "hello", "token": "\ud800"}, None),
    ]
    cases += [(f"unused field {name}", raw({"type": "ping", "x": "<<lit>>"}, lit), "x")
              for name, lit in LITERALS.items()]
    run_cases(probe, cases)
    assert probe.turn("still here")[-1]["finish_reason"] == "stop"
    assert_consistent(probe.stored()["messages"])


def test_hostile_frames_during_a_streaming_reply_leave_it_intact(fuzz_stack: Stack) -> None:
    """The reader answers bad frames while the writer streams a reply on the same socket: both go out whole."""
    probe = Probe(fuzz_stack, fuzz_stack.persona("pace-10-40"))
    probe.send({"type": "message", "client_id": "long", "text": "go"})
    probe.until(lambda f: f["type"] == "reply.start")
    bad: list[str | bytes] = [b"\x00", "[" * 5000 + "]" * 5000, '{"type":"message","client_id":"x","text":"\\ud800"}',
                              raw({"type": "event", "name": "widget.opened", "props": {"n": "<<lit>>"}}, "NaN"),
                              '{"type":"feedback","message_id":"m","rating":"up","comment":"\\u0000"}', "{"]

    def count(type_: str) -> int:
        return sum(f["type"] == type_ for f in probe.seen)

    for payload in bad * 10:  # without waiting: the reader answers while the writer streams
        probe.send(payload)
        probe.send({"type": "ping"})
    probe.until(lambda f: count("reply.end") == 1 and count("pong") == 60, timeout=30)  # all protocol frames
    assert count("error") == 60
    assert "".join(f["text"] for f in probe.seen if f["type"] == "reply.delta") == "".join(
        f"w{i} " for i in range(1, 41))
    assert [(m["role"], m["finish_reason"]) for m in probe.stored()["messages"]] == [
        ("visitor", None), ("persona", "stop")]


@contextlib.contextmanager
def writes_held(db_url: str) -> Iterator[None]:
    """While inside, no message can be written: another connection holds a lock that writing one waits for."""
    if db_url.startswith("sqlite"):
        conn = sqlite3.connect(db_url.removeprefix("sqlite:///"), isolation_level=None)
        conn.execute("BEGIN IMMEDIATE")  # WAL: others still read
        try:
            yield
        finally:
            conn.execute("ROLLBACK")
            conn.close()
        return
    held, release = threading.Event(), threading.Event()

    async def hold() -> None:
        conn = await asyncpg.connect(db_url)
        try:
            async with conn.transaction():
                await conn.execute("LOCK TABLE messages IN SHARE MODE")  # reads go on, inserts wait
                held.set()
                await asyncio.to_thread(release.wait)
        finally:
            await conn.close()

    holder = threading.Thread(target=asyncio.run, args=(hold(),))
    holder.start()
    assert held.wait(10)
    try:
        yield
    finally:
        release.set()
        holder.join()


def test_cancel_sent_again_and_again_still_stores_the_cut_reply(fuzz_stack: Stack, db_url: str) -> None:
    """A visitor who clicks stop again and again: a cancel that lands while the turn stores its reply must not
    stop the write, nor end the reply before it is stored (`reply.end` means stored)."""
    probe = Probe(fuzz_stack, fuzz_stack.persona("pace-20-100"))
    probe.send({"type": "message", "client_id": "c1", "text": "go"})
    reply_id = probe.until(lambda f: f["type"] == "reply.start")[-1]["message_id"]
    probe.until(lambda f: f["type"] == "reply.delta")
    stop = threading.Event()

    def keep_cancelling() -> None:
        while not stop.wait(0.005):
            probe.send({"type": "cancel", "message_id": reply_id})

    clicker = threading.Thread(target=keep_cancelling)
    try:
        with writes_held(db_url):
            clicker.start()
            with pytest.raises(TimeoutError):  # the reply cannot be stored yet, so it has not ended
                probe.until(lambda f: f["type"] == "reply.end", timeout=1)
        assert probe.until(lambda f: f["type"] == "reply.end")[-1]["finish_reason"] == "cancelled"
    finally:
        stop.set()
        if clicker.is_alive():
            clicker.join()
    shown = "".join(f["text"] for f in probe.seen if f["type"] == "reply.delta")
    assert [(m["role"], m["finish_reason"], m["text"]) for m in probe.stored()["messages"]] == [
        ("visitor", None, "go"), ("persona", "cancelled", shown)]


HELLOS: list[tuple[dict[str, Any], str | None]] = [
    ({"token": "\ud800"}, "token"), ({"token": "tok\udfffen"}, "token"), ({"token": "tok\x00en"}, "token"),
    ({"token": "tok\u202een"}, "token"), ({"token": 5}, "token"), ({"token": ["x"]}, "token"),
    ({"token": "x" * 5000}, "token"), ({"token": "<<lit>>"}, "token"),
    ({"resume": "conv_x"}, "resume"), ({"resume": {"conversation_id": "\ud800"}}, "resume.conversation_id"),
    ({"resume": {"conversation_id": 5}}, "resume.conversation_id"),
    ({"resume": {"conversation_id": "c", "last_seq": 10**30}}, "resume.last_seq"),
    ({"resume": {"conversation_id": "c", "last_seq": -1}}, "resume.last_seq"),
    ({"resume": {"conversation_id": "c", "last_seq": "3"}}, "resume.last_seq"),
    ({"resume": {"conversation_id": "c", "last_seq": 1.5}}, "resume.last_seq"),
    ({"resume": {"conversation_id": "c", "last_seq": "<<lit>>"}}, "resume.last_seq"),
]


def test_a_bad_hello_gets_an_error_naming_the_field_then_closes_4401(fuzz_stack: Stack) -> None:
    """Before hello the socket serves nothing: a hello it cannot use is answered, then closed as documented."""
    persona = fuzz_stack.persona()
    failures = []
    for hello, field in HELLOS:
        frame = {"type": "hello", "token": fuzz_stack.token(persona)[0], **hello}
        ws = fuzz_stack.connect(fuzz_stack.origin)
        ws.send(raw(frame, "1e400"))
        try:
            err, code = ws.recv(), ws.close_code()
        except ConnectionClosed as exc:
            failures.append(f"{hello}: closed with {exc.rcvd.code if exc.rcvd else None} and no error frame")
            continue
        got = (err.get("details") or {}).get("field")
        if err.get("type") != "error" or code != 4401 or got != field:
            failures.append(f"{str(hello)[:60]}: close {code}, details.field {got!r} (wanted {field!r}): {err}")
    assert not failures, "\n".join(failures)
    ws = fuzz_stack.open(persona)  # and the next visitor is served as ever
    assert ws.recv()["type"] == "ready"


def assert_writer_healthy(stack: Stack) -> None:
    """Every analytics batch was written: none is held back, none failed (PostgreSQL refusing one would
    retry it forever, and every later event would wait behind it). And what was written can be read: one event
    whose JSON holds a NUL or a lone surrogate escape is taken by PostgreSQL's `json`, then breaks every query
    that reads an attribute of it (the summary, the conversation-level export) for the whole tenant."""
    health = httpx.get(f"{stack.url}/health").json()
    assert health["events"] == {"status": "ok", "pending": 0}, health
    assert "widget_event_write_errors_total 0.0" in httpx.get(f"{stack.url}/metrics").text
    summary = httpx.get(f"{stack.url}/v1/analytics/summary", headers=stack.auth)
    assert summary.status_code == 200, summary.text
    for level in ("event", "conversation"):
        export = httpx.get(f"{stack.url}/v1/analytics/export", params={"level": level}, headers=stack.auth)
        assert export.status_code == 200, export.text
        assert all(json.loads(line) for line in export.text.splitlines())


def _hostile_upstream() -> Starlette:
    """An OpenAI-compatible upstream whose reply and model name hold what no database can: NUL, lone surrogates."""
    def chunk(delta: dict[str, str], finish: str | None = None) -> str:
        return "data: " + json.dumps({"id": "x", "object": "chat.completion.chunk", "created": 0,
                                      "model": "bad\x00model\udc00", "choices": [
                                          {"index": 0, "delta": delta, "finish_reason": finish}]}) + "\n\n"

    async def completions(request: Request) -> Response:
        await request.body()
        pieces = [chunk({"content": p}) for p in ("a", "\x00b", "\ud800c")]
        return Response("".join([*pieces, chunk({}, "stop"), "data: [DONE]\n\n"]), media_type="text/event-stream")

    async def models(request: Request) -> Response:
        return JSONResponse({"object": "list", "data": [{"id": "x", "object": "model", "owned_by": "test"}]})

    return Starlette(routes=[Route("/v1/chat/completions", completions, methods=["POST"]),
                             Route("/v1/models", models, methods=["GET"])])


def test_a_reply_no_database_can_hold_is_repaired_then_shown_and_stored_alike(
        stack_factory: Callable[..., Stack], db_url: str) -> None:
    """The visitor's text is refused where storage cannot hold it; a provider's reply cannot be refused, so what
    no database holds becomes U+FFFD before it is streamed: the socket, the transcript and the events agree."""
    with serve_in_thread(_hostile_upstream()) as upstream:
        stack = stack_factory(database_url=db_url, openai_base_url=upstream + "/v1")
        probe = Probe(stack, stack.persona("x"))
        frames = probe.turn("hi")
        shown = "".join(f["text"] for f in frames if f["type"] == "reply.delta")
        assert shown == "a\ufffdb\ufffdc" and frames[-1]["finish_reason"] == "stop"
        assert probe.exchange({"type": "ping"}) == []
        assert [(m["role"], m["text"]) for m in probe.stored()["messages"]] == [("visitor", "hi"), ("persona", shown)]
        done = stack.wait_events(lambda got: any(e["type"] == "reply.completed" for e in got),
                                 conversation=probe.conversation_id)
        completed = next(e for e in done if e["type"] == "reply.completed")
        assert completed["attributes"]["gen_ai.request.model"] == "bad\ufffdmodel\ufffd"
        assert_writer_healthy(stack)


# ---- the property: arbitrary frames on one real socket -----------------------------------------------------

NASTY_CHARS = st.sampled_from(sorted({ch for s in NASTY.values() for ch in s} | {"\ufeff", "\u200b", "\uffff",
                                                                                "\U0010ffff", "\u0301", "\u2028"}))
CLEAN = st.text(st.characters(exclude_categories=("Cc", "Cs")), min_size=1, max_size=40)
TEXT = st.one_of(CLEAN, st.text(max_size=30), st.lists(st.one_of(st.characters(), NASTY_CHARS), max_size=12).map(
    "".join), st.sampled_from(["", " ", "hello", "x" * 81, "msg_x", "@reply", "up", "down", "widget.opened"]))
EDGE_NUMBERS = st.sampled_from([float("nan"), float("inf"), float("-inf"), 2**53, 2**53 + 1, -(2**53), 10**30,
                                1e308, 5e-324, -0.0])
SCALARS = st.one_of(st.none(), st.booleans(), st.integers(-1000, 1000), st.floats(allow_nan=False,
                    allow_infinity=False), CLEAN, TEXT, EDGE_NUMBERS, st.integers())
JSON = st.recursive(SCALARS, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(TEXT, inner, max_size=4),
                    max_leaves=12)
IDS = st.one_of(st.sampled_from(["c1", "c2", "c3"]), st.uuids().map(str), TEXT)
BASES = {
    "message": {"client_id": IDS, "text": st.one_of(CLEAN, CLEAN, TEXT)},
    "cancel": {"message_id": st.sampled_from(["@reply", "@last"]) | IDS},  # @last: the newest reply, maybe running
    "feedback": {"message_id": st.sampled_from(["@reply"]) | IDS, "rating": st.sampled_from(["up", "down"]),
                 "comment": st.one_of(CLEAN, TEXT)},
    "event": {"name": st.sampled_from(["widget.opened", "widget.closed"]), "props": st.dictionaries(TEXT, JSON)},
    "ping": {}, "hello": {"token": TEXT}, "typing": {"active": st.booleans()},
}


@st.composite
def looks_valid(draw: st.DrawFn) -> dict[str, Any]:
    """A frame of a known type with some of its fields replaced, dropped or added."""
    type_ = draw(st.sampled_from(["message", "message", "feedback", "event", *sorted(BASES)]))
    frame: dict[str, Any] = {"type": type_, **{k: draw(v) for k, v in BASES[type_].items()}}
    for field in draw(st.lists(st.sampled_from([*BASES[type_], *BASES[type_], "type", "extra"]), max_size=2)):
        if draw(st.booleans()):
            frame[field] = draw(JSON)
        else:
            frame.pop(field, None)
    return frame


def _spliced(draw: st.DrawFn) -> str:
    """A known frame with a literal json.dumps cannot write (1e400, NaN, 5000 digits) in one of its fields."""
    frame = draw(looks_valid())
    field = draw(st.sampled_from(sorted(frame) or ["x"]))
    return raw({**frame, field: "<<lit>>"}, draw(st.sampled_from(sorted(LITERALS.values()))))


def _nested(draw: st.DrawFn) -> str:
    """Arrays up to 5,000 deep, objects up to 2,600 (what fits in 16 KiB), alone or as a field of a frame."""
    depth = draw(st.integers(1, 5000))
    if draw(st.booleans()):
        inner = "[" * depth + "]" * depth
    else:
        inner = '{"a":' * min(depth, 2600) + "0" + "}" * min(depth, 2600)
    return draw(st.sampled_from([inner, '{"type":"event","name":"widget.opened","props":{"a":' + inner + "}}",
                                 '{"type":"message","client_id":"c","text":' + inner + "}"]))


@st.composite
def payloads(draw: st.DrawFn) -> str | bytes:
    kind = draw(st.sampled_from(["valid-looking"] * 5 + ["json", "text", "spliced", "nested", "binary"]))
    if kind == "valid-looking":
        return json.dumps(draw(looks_valid()))
    if kind == "json":
        return json.dumps(draw(JSON))
    if kind == "text":
        return draw(st.text(max_size=60))
    if kind == "spliced":
        return _spliced(draw)
    if kind == "nested":
        return _nested(draw)
    return draw(st.binary(max_size=40))


# ---- what the protocol takes, written from DESIGN.md and issue 9 apart from the server's code: the oracle ----

def _shallow(value: Any, levels: int) -> bool:
    if isinstance(value, dict | list):
        items = value.values() if isinstance(value, dict) else value
        return levels > 0 and all(_shallow(v, levels - 1) for v in items)
    return True


def _numbers_ok(value: Any) -> bool:
    if isinstance(value, dict | list):
        return all(_numbers_ok(v) for v in (value.values() if isinstance(value, dict) else value))
    if isinstance(value, float):
        return value == value and abs(value) != float("inf")
    return isinstance(value, bool) or not isinstance(value, int) or abs(value) <= 2**53


def spec_frame(payload: str | bytes) -> dict[str, Any] | None:
    """The frame, if the protocol can take it: a JSON object with a string type, at most 8 levels deep, whose
    numbers are finite and, if integers, at most 2**53 (what a JavaScript client counts to). None otherwise."""
    if isinstance(payload, bytes):
        return None
    try:
        frame = json.loads(payload)  # Python takes NaN and Infinity, and reads 1e400 as infinity
    except (ValueError, RecursionError):
        return None
    if not isinstance(frame, dict) or not isinstance(frame.get("type"), str):
        return None
    return frame if _shallow(frame, 8) and _numbers_ok(frame) else None


def _id_ok(value: Any, required: bool = False) -> bool:
    if value is None:
        return not required
    return isinstance(value, str) and 1 <= len(value) <= 80 and value.isprintable() and clean(value)


def _strings_ok(value: Any) -> bool:
    if isinstance(value, str):
        return clean(value)
    if isinstance(value, dict):
        return all(clean(k) and _strings_ok(v) for k, v in value.items())
    return all(_strings_ok(v) for v in value) if isinstance(value, list) else True


def spec_ok(frame: dict[str, Any]) -> bool:
    """Whether the fields a frame of this type uses are all acceptable."""
    kind = frame["type"]
    if kind == "message":
        text = frame.get("text")
        return (_id_ok(frame.get("client_id")) and isinstance(text, str) and bool(text.strip())
                and len(text) <= 4000 and clean(text))
    if kind == "cancel":
        return _id_ok(frame.get("message_id"), required=True)
    if kind == "feedback":
        comment = frame.get("comment")
        return (_id_ok(frame.get("message_id"), required=True) and frame.get("rating") in ("up", "down")
                and (comment is None or (isinstance(comment, str) and len(comment) <= 2000 and clean(comment))))
    if kind == "event":
        props = frame.get("props")
        return frame.get("name") in ("widget.opened", "widget.closed") and (props is None or (
            isinstance(props, dict) and len(json.dumps(props)) <= 2000 and _strings_ok(props)))
    if kind == "typing":
        return isinstance(frame.get("active"), bool)
    return kind == "ping"


class Expected:
    """What the frames sent so far must have left behind, by the oracle: accepted messages (in order), stored
    widget events, and the rating on the one reply the fuzzer rates."""

    def __init__(self, reply_id: str) -> None:
        self.reply_id = reply_id
        self.client_ids: list[str | None] = []
        self.events: list[tuple[str, dict[str, Any]]] = []
        self.feedback: dict[str, Any] | None = None

    def sent(self, frame: dict[str, Any]) -> None:
        kind = frame["type"]
        if kind == "message" and (frame.get("client_id") is None or frame["client_id"] not in self.client_ids):
            self.client_ids.append(frame.get("client_id"))  # else a resend of an accepted message: ignored
        elif kind == "event":
            self.events.append((frame["name"], frame.get("props") or {}))
        elif kind == "feedback" and frame["message_id"] == self.reply_id:
            self.feedback = {"rating": frame["rating"], "comment": frame.get("comment")}


def check_answer(payload: str | bytes, got: list[dict[str, Any]], expected: Expected) -> None:
    """The frames that answered one payload (a message's turn answers later: checked at the end)."""
    frame = spec_frame(payload)
    if frame is not None and spec_ok(frame):
        expected.sent(frame)
    answers = [f for f in got if f["type"] == "error" and "client_id" not in f]  # turns' frames name the message
    if frame is None or frame["type"] not in CLIENT_TYPES or frame["type"] == "hello":
        assert answers, f"no error for {payload!r:.300}: {got}"
    elif frame["type"] != "message" and spec_ok(frame):
        wanted = [] if frame["type"] != "feedback" or frame["message_id"] == expected.reply_id else [
            "message.not_found"]
        assert [f["code"] for f in answers] == wanted, f"{payload!r:.300} got {answers}"
    elif frame["type"] != "message":
        assert answers, f"no error for {payload!r:.300}: {got}"


def check_storage(probe: Probe, expected: Expected, since: int) -> None:
    """Storage holds every accepted message with its reply, the events and the rating the frames asked for,
    and nothing else."""
    stored = probe.stored()["messages"]
    assert_consistent(stored)
    accepted = [f for f in probe.seen[since:] if f["type"] == "message.accepted"]
    assert [f["client_id"] for f in accepted] == expected.client_ids
    shown = {f["message_id"]: f["text"] for f in probe.seen if f["type"] == "message.accepted"}
    assert {m["id"]: m["text"] for m in stored if m["role"] == "visitor"} == shown
    ended = {f["message_id"]: f["finish_reason"] for f in probe.seen if f["type"] == "reply.end"}
    assert {m["id"]: m["finish_reason"] for m in stored if m["role"] == "persona"} == ended
    rated = next(m for m in stored if m["id"] == expected.reply_id)
    assert rated["feedback"] == expected.feedback
    marker = secrets.token_hex(4)
    probe.send({"type": "event", "name": "widget.closed", "props": {"marker": marker}})
    events = probe.stack.wait_events(
        lambda got: any(e["attributes"].get("props", {}).get("marker") == marker for e in got),
        conversation=probe.conversation_id)
    widget = [(e["type"], e["attributes"]["props"]) for e in events
              if e["type"].startswith("widget.") and e["attributes"]["props"].get("marker") != marker]
    assert sorted(map(json.dumps, widget)) == sorted(map(json.dumps, expected.events))
    assert_writer_healthy(probe.stack)


def test_arbitrary_frames_never_break_the_socket_or_storage(fuzz_stack: Stack) -> None:
    probe = Probe(fuzz_stack, fuzz_stack.persona("echo"))
    expected = Expected(probe.turn("the reply to rate")[-1]["message_id"])
    since, examples = len(probe.seen), 0

    @settings(max_examples=300, derandomize=True, database=None, deadline=None,
              suppress_health_check=list(HealthCheck))
    @given(payloads())
    def one_frame(payload: str | bytes) -> None:
        nonlocal examples
        examples += 1
        if isinstance(payload, str):
            payload = payload.replace("@reply", expected.reply_id).replace("@last", probe.last_reply_id)
        if len(payload if isinstance(payload, bytes) else payload.encode(errors="surrogatepass")) > MAX_FRAME:
            return  # documented: 1009, tested in test_widget_ws
        try:
            got = probe.exchange(payload)
        except ConnectionClosed:
            probe.reopen()
            raise AssertionError(f"socket closed with {probe.closes[-1]} after {payload!r:.300}") from None
        check_answer(payload, got, expected)

    started = time.monotonic()
    one_frame()
    took = time.monotonic() - started
    frames = probe.turn("are you still there")
    assert frames[-1]["finish_reason"] == "stop" and probe.closes == []
    assert "".join(f["text"] for f in frames if f["type"] == "reply.delta"
                   and f["message_id"] == frames[-1]["message_id"]) == "are you still there"
    expected.client_ids.append(probe.last_client_id)
    check_storage(probe, expected, since)
    print(f"{examples} frames in {took:.1f} s, {len(expected.client_ids)} messages accepted")
