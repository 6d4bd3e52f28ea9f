"""`/v1/analytics/export`, `/v1/analytics/summary` and `widget-server export`, over real sockets, on SQLite and
PostgreSQL: the export is the query's data in every format, a consistent snapshot, safe in a spreadsheet."""

from __future__ import annotations

import asyncio
import csv
import io
import json
import os
import pty
import subprocess
import sys
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import PG_ADMIN, Stack
from tests.support.errors import assert_error
from widget_server.backends.storage import open_storage
from widget_server.domain.analytics.query import COLUMNS, EXPORT_SCHEMA
from widget_server.ids import new_id

FORMULAS = ["=HYPERLINK(\"http://evil.example\",\"x\")", "+1+1", "-2+3", "@SUM(A1)", "\tTAB", "\rCR", "  =1+1",
            "\nNL", " @A1"]
T0 = datetime(2026, 3, 1, 23, 30, tzinfo=UTC)  # half an hour before midnight UTC: day truncation must use UTC


@pytest.fixture
def db_stack(stack_factory: Callable[..., Stack], db_url: str) -> Stack:
    return stack_factory(database_url=db_url)


def export(stack: Stack, sk: str | None = None, **params: Any) -> httpx.Response:
    headers = {"Authorization": f"Bearer {sk}"} if sk else stack.auth
    return httpx.get(f"{stack.url}/v1/analytics/export", params=params, headers=headers, timeout=60)


def summary(stack: Stack, sk: str | None = None, **params: Any) -> dict[str, Any]:
    headers = {"Authorization": f"Bearer {sk}"} if sk else stack.auth
    r = httpx.get(f"{stack.url}/v1/analytics/summary", params=params, headers=headers, timeout=30)
    assert r.status_code == 200, r.text
    return r.json()  # type: ignore[no-any-return]


def jsonl(r: httpx.Response) -> list[dict[str, Any]]:
    assert r.status_code == 200, r.text
    return [json.loads(line) for line in r.text.splitlines()]


def csv_rows(data: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(data, newline="")))


def event(tenant_id: str, type_: str, ts: datetime = T0, **fields: Any) -> dict[str, Any]:
    row = {"id": new_id("evt"), "ts": ts, "tenant_id": tenant_id, "persona_id": "per_x", "conversation_id": None,
           "visitor_id": "vis_x", "channel": "api", "type": type_, "schema_version": 1, "attributes": {}}
    return {**row, **fields}


def insert(url: str, rows: list[dict[str, Any]]) -> None:
    async def run() -> None:
        storage = await open_storage(url)
        try:
            for start in range(0, len(rows), 5000):
                await storage.events.insert(rows[start:start + 5000])
        finally:
            await storage.close()
    asyncio.run(run())


def real_conversation(stack: Stack, persona: str) -> str:
    """A widget conversation: opened, one message, its reply, a thumbs up; returns the conversation id."""
    ws = stack.open(persona)
    conv_id = ws.recv()["conversation_id"]
    ws.send({"type": "event", "name": "widget.opened", "props": {"page": "/pricing"}})
    ws.send({"type": "message", "client_id": "c1", "text": "count my tokens"})
    end = ws.until("reply.end")[-1]
    ws.send({"type": "feedback", "message_id": end["message_id"], "rating": "up"})
    stack.wait_events(lambda got: any(e["type"] == "feedback.submitted" for e in got), conversation=conv_id)
    return str(conv_id)


# events: one schema in every format


def test_the_jsonl_export_parses_back_to_exactly_what_the_query_returns(db_stack: Stack) -> None:
    persona = db_stack.persona()
    conv_id = real_conversation(db_stack, persona)
    r = export(db_stack, format="jsonl")
    assert r.headers["content-type"].startswith("application/x-ndjson")
    assert r.headers["x-export-schema"] == EXPORT_SCHEMA == "widget_server.events/1"
    assert r.headers["content-disposition"].startswith("attachment; filename=\"events-")
    got = jsonl(r)
    assert got == db_stack.events()
    assert [e["type"] for e in got] == ["conversation.started", "widget.opened", "message.received",
                                        "reply.completed", "feedback.submitted"]
    assert all(list(e) == list(COLUMNS) and e["conversation_id"] == conv_id for e in got)
    assert got[3]["attributes"]["gen_ai.usage.output_tokens"] == 3
    only = jsonl(export(db_stack, type="reply.completed,feedback.submitted", persona=persona))
    assert only == db_stack.events(type="reply.completed,feedback.submitted") and len(only) == 2
    assert jsonl(export(db_stack, conversation="conv_other")) == []


def test_jsonl_is_the_default_format_and_csv_carries_the_same_values(db_stack: Stack) -> None:
    real_conversation(db_stack, db_stack.persona())
    events = jsonl(export(db_stack))
    r = export(db_stack, format="csv")
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/csv") and r.headers["x-export-schema"] == EXPORT_SCHEMA
    assert r.text.startswith(",".join(COLUMNS) + "\r\n")
    rows = csv_rows(r.text)
    assert len(rows) == len(events)
    for row, ev in zip(rows, events, strict=True):
        assert json.loads(row.pop("attributes")) == ev.pop("attributes")
        assert row == {k: "" if v is None else str(v) for k, v in ev.items()}


TRICKY = {"text": "é ü 中文 😀 \"quoted\"\nline\\", "f": 0.1, "tiny": 1e-7, "big": 12345678901234567890, "neg": -3,
          "t": True, "n": None, "nested": {"list": [1, "two", {"three": 3.5}]}, "empty": {},
          "gen_ai.usage.input_tokens": 12}


def test_the_database_rendered_export_keeps_every_value_as_the_query_shows_it(db_stack: Stack) -> None:
    insert(db_stack.settings.resolved_database_url, [
        event(db_stack.tenant_id, "error", attributes=TRICKY, persona_id=None, visitor_id=None, channel=None),
        event(db_stack.tenant_id, "widget.closed", ts=T0 + timedelta(microseconds=123456), attributes={})])
    events = db_stack.events()
    assert jsonl(export(db_stack)) == events
    assert events[0]["ts"] == "2026-03-01T23:30:00.000000+00:00" and events[0]["attributes"] == TRICKY
    rows = csv_rows(export(db_stack, format="csv").text)
    assert [json.loads(r["attributes"]) for r in rows] == [TRICKY, {}]
    assert [r["ts"] for r in rows] == [e["ts"] for e in events]
    assert rows[0]["persona_id"] == rows[0]["visitor_id"] == rows[0]["channel"] == ""


def test_csv_neutralises_cells_a_spreadsheet_would_run_as_formulas(db_stack: Stack) -> None:
    url = db_stack.settings.resolved_database_url
    insert(url, [event(db_stack.tenant_id, "widget.opened", visitor_id=f, persona_id=f, channel=f[:12],
                       conversation_id=f[:40], attributes={"props": {"page": f}}) for f in FORMULAS])
    # and one through the API, as a visitor chooses it
    r = httpx.post(f"{db_stack.url}/v1/personas/{db_stack.persona()}/prompt", headers=db_stack.auth,
                   json={"message": "hi", "visitor_id": FORMULAS[0]}, timeout=30)
    assert r.status_code == 200, r.text
    db_stack.wait_events(lambda got: len(got) >= 3, visitor=FORMULAS[0], type="reply.completed,message.received,"
                                                                                "conversation.started")
    rows = csv_rows(export(db_stack, format="csv").text)
    assert len(rows) == len(FORMULAS) + 3
    for row in rows:
        for value in row.values():
            assert not value.startswith(("=", "+", "-", "@", "\t", "\r")), row
    for row, formula in zip(rows, FORMULAS, strict=False):
        assert row["visitor_id"] == row["persona_id"] == "'" + formula
        assert row["channel"] == "'" + formula[:12] and row["conversation_id"] == "'" + formula[:40]
        assert json.loads(row["attributes"]) == {"props": {"page": formula}}  # JSON text starts with `{`
    assert {row["visitor_id"] for row in rows[len(FORMULAS):]} == {"'" + FORMULAS[0]}
    # the other formats carry the data unchanged
    assert [e["visitor_id"] for e in jsonl(export(db_stack))][:len(FORMULAS)] == FORMULAS


def test_a_cell_with_commas_quotes_and_newlines_round_trips_through_csv(db_stack: Stack) -> None:
    tricky = 'She said "hi, there",\r\nthen\nleft; \'ok\' ,"'
    insert(db_stack.settings.resolved_database_url, [
        event(db_stack.tenant_id, "widget.closed", visitor_id=tricky[:80], attributes={"props": {"note": tricky}}),
        event(db_stack.tenant_id, "widget.opened", visitor_id="plain")])
    rows = csv_rows(export(db_stack, format="csv").text)
    assert [r["type"] for r in rows] == ["widget.closed", "widget.opened"]
    assert rows[0]["visitor_id"] == tricky[:80]
    assert json.loads(rows[0]["attributes"]) == {"props": {"note": tricky}}
    assert rows[1]["visitor_id"] == "plain"


def test_events_arriving_while_an_export_streams_are_not_in_it(db_stack: Stack) -> None:
    url = db_stack.settings.resolved_database_url
    before = [event(db_stack.tenant_id, "widget.opened", attributes={"n": i, "pad": "x" * 200}) for i in range(20_000)]
    insert(url, before)
    with httpx.stream("GET", f"{db_stack.url}/v1/analytics/export", params={"format": "jsonl"},
                      headers=db_stack.auth, timeout=60) as r:
        assert r.status_code == 200
        lines = r.iter_lines()
        first = [next(lines)]
        # the server is now held back by the unread socket, most pages still unread
        insert(url, [event(db_stack.tenant_id, "widget.closed", attributes={"n": i}) for i in range(3000)])
        got = first + [line for line in lines if line]
    ids = [json.loads(line)["id"] for line in got]
    assert ids == [e["id"] for e in before]
    assert len(jsonl(export(db_stack, format="jsonl", type="widget.closed"))) == 3000  # next export has them


def test_parquet_reads_back_with_pyarrow_in_row_groups(db_stack: Stack) -> None:
    pq = pytest.importorskip("pyarrow.parquet")
    real_conversation(db_stack, db_stack.persona())
    insert(db_stack.settings.resolved_database_url,
           [event(db_stack.tenant_id, "widget.opened", ts=T0 + timedelta(seconds=i), attributes={"i": i})
            for i in range(25_000)])
    r = export(db_stack, format="parquet")
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "application/vnd.apache.parquet"
    assert r.headers["content-disposition"].endswith('.parquet"')
    file = pq.ParquetFile(io.BytesIO(r.content))
    assert file.schema_arrow.names == list(COLUMNS)
    assert file.schema_arrow.metadata[b"widget_server.schema"] == EXPORT_SCHEMA.encode()
    assert file.metadata.num_row_groups >= 3  # written as it streams, not built whole in memory
    table = file.read().to_pylist()
    events = db_stack.events()
    assert len(table) == len(events) == 25_005
    for row, ev in zip(table, events, strict=True):
        assert row["ts"].isoformat(timespec="microseconds") == ev["ts"]
        assert json.loads(row["attributes"]) == ev["attributes"]
        assert {k: v for k, v in row.items() if k not in ("ts", "attributes")} == {
            k: v for k, v in ev.items() if k not in ("ts", "attributes")}


def test_parquet_without_pyarrow_is_a_clear_400(db_stack: Stack, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pyarrow.parquet", None)  # as if the extra were not installed
    err = assert_error(export(db_stack, format="parquet"), 400, "export.format_unavailable", "invalid_request")
    assert "widget_server[parquet]" in err["message"]


@pytest.mark.parametrize("params, param", [
    ({"format": "xlsx"}, "format"), ({"level": "visitor"}, "level"), ({"from": "yesterday"}, "from"),
    ({"type": "nope"}, "type"), ({"level": "conversation", "type": "reply.completed"}, "type"),
    ({"from": "2026-03-02", "to": "2026-03-01"}, "to"),
])
def test_bad_parameters_are_a_400_before_any_byte(db_stack: Stack, params: dict[str, str], param: str) -> None:
    err = assert_error(export(db_stack, **params), 400, "query.invalid", "invalid_request")
    assert err["details"]["param"] == param


def test_export_and_summary_need_a_secret_key(db_stack: Stack) -> None:
    assert_error(httpx.get(f"{db_stack.url}/v1/analytics/export"), 401, type_="auth")
    assert_error(httpx.get(f"{db_stack.url}/v1/analytics/summary",
                           headers={"Authorization": f"Bearer {db_stack.pk}"}), 401, type_="auth")


def test_another_tenants_export_and_summary_never_show_this_tenants_events(db_stack: Stack) -> None:
    real_conversation(db_stack, db_stack.persona())
    other = db_stack.tenant()
    insert(db_stack.settings.resolved_database_url, [event(other["tenant_id"], "widget.opened")])
    theirs = jsonl(export(db_stack, sk=other["sk"]))
    assert [e["tenant_id"] for e in theirs] == [other["tenant_id"]]
    assert {e["tenant_id"] for e in jsonl(export(db_stack))} == {db_stack.tenant_id}
    assert jsonl(export(db_stack, sk=other["sk"], level="conversation")) == []
    assert csv_rows(export(db_stack, sk=other["sk"], format="csv").text)[0]["tenant_id"] == other["tenant_id"]
    mine = summary(db_stack)
    assert mine["conversations"] == 1 and mine["feedback"] == {"up": 1, "down": 0}
    theirs_summary = summary(db_stack, sk=other["sk"])
    assert theirs_summary["conversations"] == theirs_summary["messages"] == 0
    assert theirs_summary["feedback"] == {"up": 0, "down": 0} and theirs_summary["days"] == []


# one row per conversation


def two_conversations(tenant_id: str) -> list[dict[str, Any]]:
    """`conv_a`: two messages (one refused), an escalation, a rating changed from up to down and one up.
    `conv_b`, a day later: escalated then resolved, one message."""
    def at(conv: str, minutes: int, type_: str, **attributes: Any) -> dict[str, Any]:
        visitor = "vis_a" if conv == "conv_a" else "vis_b"
        return event(tenant_id, type_, T0 + timedelta(minutes=minutes), conversation_id=conv, visitor_id=visitor,
                     channel="widget", persona_id="per_a" if conv == "conv_a" else "per_b", attributes=attributes)
    return [
        at("conv_a", 0, "conversation.started"),
        at("conv_a", 1, "message.received", message_id="m1"),
        at("conv_a", 1, "reply.completed", message_id="r1", ttft_ms=100, finish_reason="stop",
           **{"gen_ai.usage.input_tokens": 10, "gen_ai.usage.output_tokens": 5}),
        at("conv_a", 2, "message.received", message_id="m2"),
        at("conv_a", 2, "guardrail.triggered", rule="term.rival", action="refuse", source="input"),
        at("conv_a", 2, "reply.completed", message_id="r2", ttft_ms=None, finish_reason="guardrail",
           **{"gen_ai.usage.input_tokens": 0, "gen_ai.usage.output_tokens": 0}),
        at("conv_a", 3, "message.received", message_id="m3"),
        at("conv_a", 3, "reply.completed", message_id="r3", ttft_ms=300, finish_reason="stop",
           **{"gen_ai.usage.input_tokens": 20, "gen_ai.usage.output_tokens": 7}),
        at("conv_a", 3, "guardrail.triggered", rule="pii.email", action="mask", source="output"),
        at("conv_a", 4, "escalation.triggered", reason="escalation.requested"),
        at("conv_a", 5, "feedback.submitted", message_id="r1", rating="up"),
        at("conv_a", 6, "feedback.submitted", message_id="r1", rating="down"),
        at("conv_a", 6, "feedback.submitted", message_id="r3", rating="up"),
        at("conv_b", 1440, "conversation.started"),
        at("conv_b", 1441, "message.received", message_id="m4"),
        at("conv_b", 1441, "reply.completed", message_id="r4", ttft_ms=1000, finish_reason="stop",
           **{"gen_ai.usage.input_tokens": 30, "gen_ai.usage.output_tokens": 9}),
        at("conv_b", 1442, "guardrail.triggered", rule="term.rival", action="refuse", source="output"),
        at("conv_b", 1443, "escalation.triggered", reason="escalation.refusals"),
        at("conv_b", 1450, "escalation.resolved", note=None),
    ]


EXPECTED_A = {"conversation_id": "conv_a", "persona_id": "per_a", "visitor_id": "vis_a", "channel": "widget",
              "started": "2026-03-01T23:30:00.000000+00:00", "ended": "2026-03-01T23:36:00.000000+00:00",
              "messages": 3, "refusals": 1, "escalated": True, "feedback_up": 1, "feedback_down": 1,
              "ttft_ms_avg": 200.0, "status": "escalated"}
EXPECTED_B = {"conversation_id": "conv_b", "persona_id": "per_b", "visitor_id": "vis_b", "channel": "widget",
              "started": "2026-03-02T23:30:00.000000+00:00", "ended": "2026-03-02T23:40:00.000000+00:00",
              "messages": 1, "refusals": 1, "escalated": True, "feedback_up": 0, "feedback_down": 0,
              "ttft_ms_avg": 1000.0, "status": "bot"}


def test_conversation_level_has_one_row_per_conversation(db_stack: Stack) -> None:
    insert(db_stack.settings.resolved_database_url, two_conversations(db_stack.tenant_id))
    r = export(db_stack, level="conversation")
    assert r.headers["x-export-schema"] == "widget_server.conversations/1"
    assert r.headers["content-disposition"].startswith('attachment; filename="conversations-')
    assert jsonl(r) == [EXPECTED_A, EXPECTED_B]
    rows = csv_rows(export(db_stack, level="conversation", format="csv").text)
    assert rows[0] == {k: str(v).lower() if isinstance(v, bool) else str(v) for k, v in EXPECTED_A.items()}
    # time bounds pick conversations by when they started; the row still covers the whole conversation
    assert jsonl(export(db_stack, level="conversation", to="2026-03-01T23:31:00Z")) == [EXPECTED_A]
    assert jsonl(export(db_stack, level="conversation", **{"from": "2026-03-01T23:31:00Z"})) == [EXPECTED_B]
    assert jsonl(export(db_stack, level="conversation", visitor="vis_b")) == [EXPECTED_B]
    assert jsonl(export(db_stack, level="conversation", persona="per_a")) == [EXPECTED_A]


def test_conversation_level_pages_through_many_conversations(db_stack: Stack) -> None:
    rows = [event(db_stack.tenant_id, "message.received", conversation_id=f"conv_{i:05d}") for i in range(4500)]
    insert(db_stack.settings.resolved_database_url, rows)
    got = jsonl(export(db_stack, level="conversation"))
    assert [r["conversation_id"] for r in got] == [f"conv_{i:05d}" for i in range(4500)]
    assert all(r["messages"] == 1 and r["status"] == "bot" and r["ttft_ms_avg"] is None for r in got)


def test_a_real_conversation_as_a_row_and_as_parquet(db_stack: Stack) -> None:
    pq = pytest.importorskip("pyarrow.parquet")
    persona = db_stack.persona()
    conv_id = real_conversation(db_stack, persona)
    (row,) = jsonl(export(db_stack, level="conversation"))
    assert row["conversation_id"] == conv_id and row["channel"] == "widget" and row["messages"] == 1
    assert row["feedback_up"] == 1 and row["refusals"] == 0 and row["escalated"] is False and row["status"] == "bot"
    assert row["ttft_ms_avg"] is not None and row["ttft_ms_avg"] >= 0
    table = pq.read_table(io.BytesIO(export(db_stack, level="conversation", format="parquet").content))
    (back,) = table.to_pylist()
    assert back["started"].isoformat(timespec="microseconds") == row.pop("started")
    assert back["ended"].isoformat(timespec="microseconds") == row.pop("ended")
    assert {k: v for k, v in back.items() if k not in ("started", "ended")} == row


# summary


def test_summary_figures_for_a_known_set_of_events(db_stack: Stack) -> None:
    insert(db_stack.settings.resolved_database_url, two_conversations(db_stack.tenant_id))
    got = summary(db_stack)
    assert got["conversations"] == 2 and got["messages"] == 4 and got["replies"] == 4
    assert got["days"] == [{"day": "2026-03-01", "conversations": 1, "messages": 3},
                           {"day": "2026-03-02", "conversations": 1, "messages": 1}]
    # 100, 300 and 1000 ms (a refused reply has none); p95 interpolates between the two highest
    assert got["ttft_ms"] == {"p50": 300.0, "p95": 930.0, "replies": 3}
    assert got["tokens"] == {"input": 60, "output": 21}
    assert got["guardrails"] == {"triggered": 3, "by_reason": {"term.rival": 2, "pii.email": 1}}
    assert got["escalations"] == {"triggered": 2, "resolved": 1}
    assert got["feedback"] == {"up": 1, "down": 1}  # r1's up was replaced by a down
    one_day = summary(db_stack, **{"from": "2026-03-02", "to": "2026-03-03"})
    assert one_day["from"] == "2026-03-02T00:00:00+00:00" and one_day["to"] == "2026-03-03T00:00:00+00:00"
    assert one_day["days"] == [{"day": "2026-03-02", "conversations": 1, "messages": 1}]
    assert one_day["conversations"] == 1 and one_day["tokens"] == {"input": 30, "output": 9}
    persona = summary(db_stack, persona="per_b")
    assert persona["persona_id"] == "per_b" and persona["conversations"] == 1
    week = summary(db_stack, **{"from": "2026-02-28", "to": "2026-03-04"})  # a chart's series: zero days too
    assert [(d["day"], d["messages"]) for d in week["days"]] == [
        ("2026-02-28", 0), ("2026-03-01", 3), ("2026-03-02", 1), ("2026-03-03", 0)]
    assert persona["ttft_ms"] == {"p50": 1000.0, "p95": 1000.0, "replies": 1}
    assert persona["feedback"] == {"up": 0, "down": 0} and persona["guardrails"]["by_reason"] == {"term.rival": 1}
    empty = summary(db_stack, persona="per_nobody")
    assert empty["ttft_ms"] == {"p50": None, "p95": None, "replies": 0} and empty["tokens"] == {"input": 0, "output": 0}
    err = assert_error(httpx.get(f"{db_stack.url}/v1/analytics/summary", params={"type": "error"},
                                 headers=db_stack.auth), 400, "query.invalid")
    assert err["details"]["param"] == "type"


@pytest.fixture
def far_east_pg() -> Iterator[str]:
    """A PostgreSQL database whose sessions default to UTC+14, where 23:30 UTC is already the next day."""
    import asyncpg

    name = f"widget_tz_{new_id('x')[-8:]}"

    async def admin(*sql: str) -> None:
        conn = await asyncpg.connect(PG_ADMIN)
        try:
            for statement in sql:
                await conn.execute(statement)
        finally:
            await conn.close()
    asyncio.run(admin(f'CREATE DATABASE "{name}"', f"ALTER DATABASE \"{name}\" SET timezone TO 'Pacific/Kiritimati'"))
    yield f"postgresql://postgres@127.0.0.1:5432/{name}"
    asyncio.run(admin(f'DROP DATABASE "{name}" WITH (FORCE)'))


def test_summary_days_are_utc_days_whatever_the_postgresql_session_time_zone(
    stack_factory: Callable[..., Stack], far_east_pg: str
) -> None:
    stack = stack_factory(database_url=far_east_pg)
    insert(far_east_pg, two_conversations(stack.tenant_id))
    assert [d["day"] for d in summary(stack)["days"]] == ["2026-03-01", "2026-03-02"]
    assert jsonl(export(stack, level="conversation"))[0]["started"] == EXPECTED_A["started"]


# the CLI


def cli_env(data_dir: Path, db_url: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("WIDGET_")}
    return {**env, "WIDGET_DATA_DIR": str(data_dir), "WIDGET_DATABASE_URL": db_url}


def run_cli(env: dict[str, str], cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "widget_server", *args], env=env, cwd=cwd, capture_output=True,
                          text=True, timeout=120)


@pytest.mark.parametrize("fmt", ["jsonl", "csv", "parquet"])
def test_cli_export_writes_the_same_bytes_as_the_api(db_stack: Stack, tmp_path: Path, fmt: str) -> None:
    if fmt == "parquet":
        pytest.importorskip("pyarrow.parquet")
    real_conversation(db_stack, db_stack.persona())
    insert(db_stack.settings.resolved_database_url, two_conversations(db_stack.tenant_id))
    env = cli_env(tmp_path, db_stack.settings.resolved_database_url)
    for level, filters in (("event", ["--type", "reply.completed", "--type", "feedback.submitted,message.received"]),
                           ("event", ["--from", "2026-03-02"]), ("conversation", [])):
        out = tmp_path / f"out.{fmt}"
        done = run_cli(env, tmp_path, "export", "--tenant", db_stack.tenant_id, "--format", fmt, "--out", str(out),
                       "--level", level, *filters)
        assert done.returncode == 0, done.stderr
        params = {"format": fmt, "level": level, "type": "reply.completed,feedback.submitted,message.received"
                  if "--type" in filters else "", "from": "2026-03-02" if "--from" in filters else ""}
        api = export(db_stack, **params)
        assert api.status_code == 200 and api.content
        assert out.read_bytes() == api.content, level
        rows = {"event": len(api.text.splitlines()), "conversation": 3}
        if fmt == "jsonl":
            assert done.stdout.strip().startswith(f"exported {rows[level]} ")
        assert done.stderr == ""  # no progress bar when stderr is not a terminal
        assert not (tmp_path / f"out.{fmt}.partial").exists()


def test_cli_export_shows_progress_on_a_terminal(db_stack: Stack, tmp_path: Path) -> None:
    insert(db_stack.settings.resolved_database_url,
           [event(db_stack.tenant_id, "widget.opened") for _ in range(4321)])
    leader, follower = pty.openpty()
    out = tmp_path / "e.csv"
    done = subprocess.run([sys.executable, "-m", "widget_server", "export", "--tenant", db_stack.tenant_id,
                           "--format", "csv", "--out", str(out)], stderr=follower, stdout=subprocess.PIPE,
                          env=cli_env(tmp_path, db_stack.settings.resolved_database_url), cwd=tmp_path, timeout=120)
    os.close(follower)
    shown = b""
    while True:
        try:
            chunk = os.read(leader, 65536)
        except OSError:
            break
        if not chunk:
            break
        shown += chunk
    os.close(leader)
    assert done.returncode == 0, shown
    assert b"4,321/4,321 rows" in shown and b"[" + b"#" * 30 + b"]" in shown
    assert done.stdout.decode().strip() == f"exported 4321 events to {out}"
    assert len(csv_rows(out.read_text())) == 4321


@pytest.mark.parametrize("args, needle", [
    (["--tenant", "ten_nope"], "ten_nope"),
    (["--from", "last week"], "from"),
    (["--type", "nope"], "nope"),
    (["--format", "xlsx"], "xlsx"),
])
def test_cli_export_errors_are_one_line(db_stack: Stack, tmp_path: Path, args: list[str], needle: str) -> None:
    base = {"--tenant": db_stack.tenant_id, "--format": "csv", "--out": str(tmp_path / "x.csv")}
    base.update(zip(args[::2], args[1::2], strict=True))
    argv = [part for pair in base.items() for part in pair]
    done = run_cli(cli_env(tmp_path, db_stack.settings.resolved_database_url), tmp_path, "export", *argv)
    assert done.returncode != 0 and "Traceback" not in done.stderr, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("widget-server: error: ") and needle in lines[0], done.stderr
    assert not (tmp_path / "x.csv").exists() and not (tmp_path / "x.csv.partial").exists()
