"""The console's Dashboard (`/console/`) and its download (`/console/export`), through the real server: the charts
and their tables show the conversations just made (over the widget socket), the filters change what is shown, the
download holds the rows of those filters and of this tenant only, in Chromium under the strict CSP, with axe; the
figures over SQLite and PostgreSQL from events of known days; hostile filter values are a clear page, never a 500."""

from __future__ import annotations

import asyncio
import contextlib
import csv
import io
import re
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from playwright.sync_api import Browser, Page, expect, sync_playwright

from tests.conftest import Stack
from tests.support.console import (
    BROWSER_ARGS,
    CHROMIUM,
    Console,
    axe_violations,
    browser_sign_in,
    needs_chromium,
)
from widget_server.backends.storage import open_storage
from widget_server.domain.analytics.query import parse_time
from widget_server.edges.console.dashboard import MOST_DAYS, read_range
from widget_server.ids import new_id

POLICY = {"version": 1, "blocked_terms": [{"id": "rival", "terms": ["rivalco"], "match": "word", "action": "refuse"}],
          "escalation": {"on_request": True}}
HOSTILE_NAME = "Beta <script>alert(1)</script>"


@pytest.fixture
def db_console(stack_factory: Callable[..., Stack], db_url: str) -> Iterator[Console]:
    c = Console(stack_factory(database_url=db_url))
    yield c
    for client in c.clients:
        client.close()


class Tables(HTMLParser):
    """The text of each table's cells (by the table's id), and of every element with an id, as a person reads them."""

    def __init__(self, html: str) -> None:
        super().__init__()
        self.tables: dict[str, list[list[str]]] = {}
        self._table: str | None = None
        self._cell: list[str] | None = None
        self.feed(html)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "table":
            self._table = dict(attrs).get("id") or ""
            self.tables[self._table] = []
        elif tag == "tr" and self._table is not None:
            self.tables[self._table].append([])
        elif tag in ("td", "th") and self._table is not None:
            self._cell = []

    def handle_endtag(self, tag: str) -> None:
        if tag in ("td", "th") and self._cell is not None and self._table is not None:
            self.tables[self._table][-1].append(" ".join("".join(self._cell).split()))
            self._cell = None
        elif tag == "table":
            self._table = None

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell.append(data)


def rows(html: str, table_id: str) -> dict[str, list[str]]:
    """A table's body rows, keyed by their first cell."""
    return {r[0]: r[1:] for r in Tables(html).tables[table_id] if r and r[0] not in ("Day", "Reason")}


def figures(html: str) -> dict[str, str]:
    return {" ".join(dt.split()): " ".join(dd.split())
            for dt, dd in re.findall(r"<dt>(.*?)</dt>\s*<dd>(.*?)</dd>", html, re.S)}


def svg(html: str, chart_id: str) -> str:
    found = re.search(rf'<svg[^>]*aria-labelledby="{chart_id}-title[^>]*>.*?</svg>', html, re.S)
    assert found, f"no chart {chart_id}"
    return found.group(0)


def persona_id(stack: Stack, slug: str) -> str:
    return str(httpx.get(f"{stack.url}/v1/personas/{slug}", headers=stack.auth).json()["id"])


def csv_of(text: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(text, newline="")))


# Traffic through the real widget socket: what a support team would see after a morning of visitors.


def traffic(stack: Stack) -> dict[str, str]:
    """Alpha: a rated-up reply, and a refusal (the blocked term). Beta (a name with markup): a rated-down reply, and
    a visitor asking for a person (an escalation). Four conversations of one visitor message each."""
    assert httpx.put(f"{stack.url}/v1/safety-policy", json=POLICY, headers=stack.auth).status_code == 200
    alpha, beta = stack.persona(name="Alpha"), stack.persona(name=HOSTILE_NAME)
    for slug, text, rating in ((alpha, "hello there", "up"), (alpha, "tell me about rivalco", None),
                               (beta, "what are your hours", "down"), (beta, "echte Person bitte", None)):
        ws = stack.open(slug)
        ws.recv()
        ws.send({"type": "message", "client_id": "c1", "text": text})
        end = ws.until("reply.end")[-1]
        if rating:
            ws.send({"type": "feedback", "message_id": end["message_id"], "rating": rating})
        ws.close()

    def settled(got: list[dict[str, Any]]) -> bool:
        kinds = [e["type"] for e in got]
        return kinds.count("reply.completed") == 4 and kinds.count("feedback.submitted") == 2 \
            and "escalation.triggered" in kinds
    stack.wait_events(settled)
    return {"alpha": alpha, "beta": beta, "alpha_id": persona_id(stack, alpha), "beta_id": persona_id(stack, beta)}


def today() -> str:
    return datetime.now(UTC).date().isoformat()


def test_the_dashboard_shows_the_conversations_just_made(console: Console) -> None:
    made = traffic(console.stack)
    page = console.signed_in("viewer").get("/console/")
    assert page.status_code == 200, page.text
    html = page.text
    shown = figures(html)
    assert shown["Conversations"] == "4" and shown["Visitor messages"] == "4"
    assert shown["Feedback up / down"] == "1 / 1" and shown["Escalations"] == "1"
    days = rows(html, "table-days")
    assert len(days) == 14 and list(days)[-1] == today()  # the last 14 days, today last
    assert days[today()] == ["4", "4"] and sum(int(v[0]) for v in days.values()) == 4
    chart = svg(html, "chart-conversations")
    assert 'role="img"' in chart and "<title id=\"chart-conversations-title\">Conversations per day</title>" in chart
    assert re.search(r'class="value">4</text>', chart)  # today's bar carries its count
    assert len(re.findall(r'<rect class="bar"', chart)) == 14
    assert rows(html, "table-guardrails")["term.rival"] == ["1"]
    ttft = rows(html, "table-ttft")[today()]
    assert ttft[0] == "2" and float(ttft[1]) > 0 and float(ttft[2]) >= float(ttft[1])  # two replies were streamed
    assert rows(html, "table-feedback") == {"Up": ["1"], "Down": ["1"]}
    assert rows(html, "table-escalations")["Triggered"] == ["1"]
    # Beta's name is the tenant's text: shown, never run
    assert "<script>alert(1)" not in html and "Beta &lt;script&gt;alert(1)&lt;/script&gt;" in html
    beta = console.signed_in("agent").get("/console/", params={"persona": made["beta_id"]}).text
    assert figures(beta)["Conversations"] == "2" and "persona <strong>Beta &lt;script&gt;" in beta
    assert rows(beta, "table-feedback") == {"Up": ["0"], "Down": ["1"]}
    assert "table-guardrails" not in beta or "term.rival" not in rows(beta, "table-guardrails")


def at(tenant_id: str, persona: str, conv: str, when: datetime, type_: str, **attributes: Any) -> dict[str, Any]:
    return {"id": new_id("evt"), "ts": when, "tenant_id": tenant_id, "persona_id": persona, "conversation_id": conv,
            "visitor_id": "vis_" + conv, "channel": "widget", "type": type_, "schema_version": 1,
            "attributes": attributes}


def insert(url: str, events: list[dict[str, Any]]) -> None:
    async def run() -> None:
        storage = await open_storage(url)
        try:
            await storage.events.insert(events)
        finally:
            await storage.close()
    asyncio.run(run())


MARCH_1 = datetime(2026, 3, 1, 23, 30, tzinfo=UTC)  # half an hour before midnight: days are UTC days


def known_days(stack: Stack) -> tuple[str, str]:
    """March 1: persona A, two conversations, five replies (10 to 50 ms and one without a first token), a refusal,
    a rating changed from up to down. March 2: persona B, one conversation, one reply of 1000 ms, an escalation."""
    a, b = persona_id(stack, stack.persona(name="A")), persona_id(stack, stack.persona(name="B"))
    t = stack.tenant_id
    events = [at(t, a, "c1", MARCH_1, "conversation.started"), at(t, a, "c2", MARCH_1, "conversation.started")]
    for i, ttft in enumerate((30, 10, 50, 20, 40, None)):
        events += [at(t, a, f"c{1 + i % 2}", MARCH_1 + timedelta(minutes=i), "message.received", message_id=f"m{i}"),
                   at(t, a, f"c{1 + i % 2}", MARCH_1 + timedelta(minutes=i), "reply.completed", message_id=f"r{i}",
                      ttft_ms=ttft)]
    events += [at(t, a, "c1", MARCH_1 + timedelta(minutes=7), "guardrail.triggered", rule="term.rival",
                  action="refuse", source="input"),
               at(t, a, "c1", MARCH_1 + timedelta(minutes=8), "feedback.submitted", message_id="r0", rating="up"),
               at(t, a, "c1", MARCH_1 + timedelta(minutes=9), "feedback.submitted", message_id="r0", rating="down")]
    day2 = MARCH_1 + timedelta(days=1)
    events += [at(t, b, "c3", day2, "conversation.started"), at(t, b, "c3", day2, "message.received"),
               at(t, b, "c3", day2, "reply.completed", message_id="r9", ttft_ms=1000),
               at(t, b, "c3", day2 + timedelta(minutes=1), "escalation.triggered", reason="escalation.requested")]
    insert(stack.settings.resolved_database_url, events)
    return a, b


def test_the_figures_of_known_days_on_sqlite_and_postgresql(db_console: Console) -> None:
    a, b = known_days(db_console.stack)
    client = db_console.signed_in("viewer")
    html = client.get("/console/", params={"from": "2026-02-28", "to": "2026-03-03"}).text
    assert rows(html, "table-days") == {"2026-02-28": ["0", "0"], "2026-03-01": ["2", "6"],
                                        "2026-03-02": ["1", "1"], "2026-03-03": ["0", "0"]}
    # p50 of 10..50 is 30; p95 interpolates 95% of the way from 40 to 50; a reply without a first token is left out
    assert rows(html, "table-ttft") == {"2026-02-28": ["0", "–", "–"], "2026-03-01": ["5", "30.0", "48.0"],
                                        "2026-03-02": ["1", "1000.0", "1000.0"], "2026-03-03": ["0", "–", "–"]}
    assert figures(html)["Feedback up / down"] == "0 / 1"  # the later rating replaced the first
    assert rows(html, "table-guardrails") == {"term.rival": ["1"]}
    ttft = svg(html, "chart-ttft")
    assert ">48</text>" in ttft and ">1k</text>" in ttft and ttft.count("<circle") == 4  # no point on empty days
    one_day = client.get("/console/", params={"from": "2026-03-02", "to": "2026-03-02"}).text
    assert rows(one_day, "table-days") == {"2026-03-02": ["1", "1"]} and figures(one_day)["Escalations"] == "1"
    only_a = client.get("/console/", params={"from": "2026-02-28", "to": "2026-03-03", "persona": a}).text
    assert figures(only_a)["Conversations"] == "2" and figures(only_a)["Escalations"] == "0"
    only_b = client.get("/console/", params={"from": "2026-03-01", "to": "2026-03-01", "persona": b}).text
    assert "Nothing happened in these days" in only_b and "<svg" not in only_b


def test_the_download_holds_the_rows_of_the_filters_and_of_this_tenant_only(db_console: Console) -> None:
    stack = db_console.stack
    a, _ = known_days(stack)
    client = db_console.signed_in("viewer")
    html = client.get("/console/", params={"from": "2026-03-01", "to": "2026-03-01", "persona": a}).text
    href = re.search(r'<a class="button" href="([^"]+)" download>Download export</a>', html)
    assert href, html
    link = href.group(1).replace("&amp;", "&")
    got = client.get(link)
    assert got.status_code == 200 and got.headers["content-type"].startswith("text/csv")
    assert got.headers["content-disposition"].startswith('attachment; filename="events-')
    events = csv_of(got.text)
    assert len(events) == 17 and {e["persona_id"] for e in events} == {a}
    assert {e["ts"][:10] for e in events} == {"2026-03-01"} and {e["tenant_id"] for e in events} == {stack.tenant_id}
    rest = httpx.get(f"{stack.url}/v1/analytics/export", headers=stack.auth,
                     params={"format": "csv", "from": "2026-03-01", "to": "2026-03-02", "persona": a})
    assert got.content == rest.content  # the same export the API serves
    jsonl = client.get(link.replace("format=csv", "format=jsonl"))
    assert len(jsonl.text.splitlines()) == 17
    other = db_console.signed_in("owner", tenant_id=stack.tenant()["tenant_id"])
    theirs = other.get(link)  # another tenant's user, with this link: the persona is not theirs, no row is
    assert theirs.status_code == 200 and csv_of(theirs.text) == []
    assert stack.tenant_id not in other.get("/console/export?format=jsonl").text


def test_an_empty_tenant_sees_the_empty_state(console: Console) -> None:
    other = console.stack.tenant()
    html = console.signed_in("owner", tenant_id=other["tenant_id"]).get("/console/").text
    assert "Nothing happened in these days" in html and "<svg" not in html
    assert 'href="/console/export?format=csv&amp;from=' in html  # the download is still there (an empty file)


def test_wrong_filters_are_shown_next_to_their_field(console: Console) -> None:
    client = console.signed_in("viewer")
    bad = client.get("/console/", params={"from": "2026-02-30", "to": "yesterday"})
    assert bad.status_code == 400
    assert 'aria-invalid="true" aria-describedby="f-from-error"' in bad.text and "That day does not exist." in bad.text
    assert "Enter a date as YYYY-MM-DD." in bad.text and 'value="yesterday"' in bad.text
    backwards = client.get("/console/", params={"from": "2026-03-05", "to": "2026-03-01"})
    assert backwards.status_code == 400 and "The last day is before the first day." in backwards.text
    for edge in ({"from": "9999-12-25"}, {"to": "9999-12-31"}):  # the day after the last would not exist
        end = client.get("/console/", params=edge)
        assert end.status_code == 400 and "Choose a day up to 9999-12-30." in end.text
    long = client.get("/console/", params={"from": "2020-01-01", "to": "2026-01-01"})
    assert long.status_code == 400 and "Choose at most 366 days." in long.text
    other = console.stack.tenant()
    theirs = httpx.post(f"{console.url}/v1/personas", json={"name": "Theirs"},
                        headers={"Authorization": f"Bearer {other['sk']}"}).json()["id"]
    nope = client.get("/console/", params={"persona": theirs})
    assert nope.status_code == 404 and "Not found" in nope.text and "Theirs" not in nope.text
    export = client.get("/console/export", params={"format": "xlsx"})
    assert export.status_code == 400 and "format must be one of" in export.text
    assert client.get("/console/export", params={"formt": "csv"}).status_code == 400  # a misspelt name widens nothing


def test_every_role_downloads_and_a_stranger_is_sent_to_sign_in(console: Console) -> None:
    for role in ("owner", "agent", "viewer"):
        assert console.signed_in(role).get("/console/export?format=csv").status_code == 200
    out = console.client().get("/console/export?format=csv")
    assert out.status_code == 303 and out.headers["location"].startswith("/console/login?next=")


DAYS = st.one_of(st.dates().map(str), st.text(max_size=30), st.sampled_from(
    ["", "2026-02-29", "9999-12-31", "9999-12-25", "0001-01-01", "2026-1-1", "２０２６-01-01", "2026-03-01T00:00Z",
     "'; DROP TABLE events;--", "<script>alert(1)</script>", "%00", "\x00", "2026-03-01\x00"]))
PERSONAS = st.one_of(st.text(max_size=60), st.sampled_from(["", "per_x", "../../etc", "<b>x</b>", "\x00"]))


@settings(max_examples=500, derandomize=True, database=None, deadline=None)
@given(first=DAYS, last=DAYS, persona=PERSONAS)
def test_any_filter_values_are_a_range_the_api_takes_or_field_errors(first: str, last: str, persona: str) -> None:
    span, errors = read_range({"from": first, "to": last, "persona": persona})
    if span is None:
        assert errors and set(errors) <= {"from", "to"}
        return
    assert errors == {} and span.first <= span.last and (span.last - span.first).days < MOST_DAYS
    params = span.api_params()
    assert parse_time("from", params["from"]) < parse_time("to", params["to"])  # the API's parser takes them


def test_hostile_filters_are_a_clear_page_and_never_a_500(db_console: Console) -> None:
    client = db_console.signed_in("viewer")

    @settings(max_examples=60, derandomize=True, database=None, deadline=None,
              suppress_health_check=list(HealthCheck))
    @given(first=DAYS, last=DAYS, persona=PERSONAS)
    def one(first: str, last: str, persona: str) -> None:
        r = client.get("/console/", params={"from": first, "to": last, "persona": persona})
        assert r.status_code in (200, 400, 404), (first, last, persona, r.status_code, r.text[:300])
        assert r.headers["content-type"].startswith("text/html")
        if r.status_code == 400:
            assert 'class="field-error"' in r.text
        elif r.status_code == 404:
            assert "no persona of yours has this id" in r.text
        else:
            assert "Nothing happened in these days" in r.text  # this tenant has no event
    one()


EXPORT_NAMES = st.sampled_from(["format", "level", "from", "to", "persona", "type", "conversation", "visitor", "x"])


def test_hostile_export_parameters_are_a_clear_page_and_never_a_500(db_console: Console) -> None:
    known_days(db_console.stack)
    client = db_console.signed_in("viewer")

    @settings(max_examples=60, derandomize=True, database=None, deadline=None,
              suppress_health_check=list(HealthCheck))
    @given(st.lists(st.tuples(EXPORT_NAMES, st.one_of(DAYS, st.sampled_from(
        ["csv", "jsonl", "parquet", "event", "conversation", "reply.completed", "error,x"]))), max_size=4))
    def one(params: list[tuple[str, str]]) -> None:
        r = client.get("/console/export", params=params)
        assert r.status_code in (200, 400), (params, r.status_code, r.text[:300])
        if r.status_code == 200:
            assert r.headers["content-disposition"].startswith("attachment;")
        else:
            assert r.headers["content-type"].startswith("text/html") and "<h1>" in r.text
    one()


# In Chromium: a person opens the dashboard, filters it, downloads it; under the CSP, with axe, at 390 px.


@contextlib.contextmanager
def chromium() -> Iterator[Browser]:
    """Started after the test's users and traffic are made: while Playwright's sync API runs, its event loop holds
    this thread (no asyncio.run)."""
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=BROWSER_ARGS)
        try:
            yield b
        finally:
            b.close()


def watch_csp(page: Page) -> list[str]:
    seen: list[str] = []
    page.on("console", lambda m: seen.append(m.text) if "Content Security Policy" in m.text else None)
    return seen


def no_sideways_scroll(page: Page) -> bool:
    return bool(page.evaluate("document.documentElement.scrollWidth <= document.documentElement.clientWidth"))


@needs_chromium
def test_in_the_browser_a_person_reads_filters_and_downloads(console: Console, tmp_path: Path) -> None:
    made = traffic(console.stack)
    user = console.user("viewer")
    with chromium() as browser:
        context = browser.new_context(viewport={"width": 1280, "height": 900}, accept_downloads=True)
        try:
            page = context.new_page()
            csp = watch_csp(page)
            browser_sign_in(page, console.url, user["email"])
            expect(page.get_by_role("heading", name="Dashboard", level=1)).to_be_visible()
            chart = page.get_by_role("img", name=re.compile("^Conversations per day"))
            expect(chart).to_be_visible()
            expect(chart.locator("text.value").last).to_have_text("4")
            figures_ = page.locator("dl.figures")
            expect(figures_.locator("div", has_text="Conversations").locator("dd")).to_have_text("4")
            page.get_by_text("Conversations and messages per day, as a table").click()
            expect(page.locator("#table-days tr", has_text=today()).locator("td")).to_have_text(["4", "4"])
            page.get_by_label("Persona", exact=True).select_option(label=f"{HOSTILE_NAME} ({made['beta']})")
            page.get_by_role("button", name="Show").click()
            expect(figures_.locator("div", has_text="Conversations").locator("dd")).to_have_text("2")
            expect(page.locator("#range")).to_contain_text(f"persona {HOSTILE_NAME}")
            with page.expect_download() as download:
                page.get_by_role("link", name="Download export").click()
            saved = tmp_path / "export.csv"
            download.value.save_as(saved)
            events = csv_of(saved.read_text())
            assert events and {e["persona_id"] for e in events} == {made["beta_id"]}
            assert sum(e["type"] == "conversation.started" for e in events) == 2
            page.get_by_label("From", exact=True).fill("2020-01-01")
            page.get_by_label("To (included)", exact=True).fill("2020-01-05")
            page.get_by_role("button", name="Show").click()
            expect(page.get_by_role("heading", name="Nothing happened in these days")).to_be_visible()
            page.set_viewport_size({"width": 390, "height": 844})
            page.go_back()
            expect(chart).to_be_visible()
            assert no_sideways_scroll(page)
            box = chart.bounding_box()
            assert box is not None and box["width"] <= 390 and box["height"] > 120  # it shrank and is still there
            page.keyboard.press("Tab")  # the skip link, then through the form with the keyboard alone
            expect(page.get_by_role("link", name="Skip to the content")).to_be_focused()
            assert csp == []
        finally:
            context.close()


@needs_chromium
@pytest.mark.parametrize("width", [1280, 390])
def test_the_dashboard_has_no_accessibility_violation(console: Console, width: int) -> None:
    traffic(console.stack)
    user = console.user("owner")
    with chromium() as browser:
        context = browser.new_context(viewport={"width": width, "height": 900}, bypass_csp=True)  # to inject axe
        try:
            page = context.new_page()
            browser_sign_in(page, console.url, user["email"])
            for summary in page.locator("details summary").all():
                summary.click()
            found = axe_violations(page)
            assert found == [], found
            assert no_sideways_scroll(page)
            page.goto(console.url + "/console/?from=2020-01-01&to=2020-01-02")  # the empty state
            expect(page.get_by_role("heading", name="Nothing happened in these days")).to_be_visible()
            assert axe_violations(page) == []
            page.goto(console.url + "/console/?from=2020-02-30")  # an error next to its field
            expect(page.get_by_text("That day does not exist.")).to_be_visible()
            assert axe_violations(page) == [] and no_sideways_scroll(page)
        finally:
            context.close()
