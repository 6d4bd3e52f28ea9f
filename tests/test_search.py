"""Transcript search in storage, on SQLite (FTS5) and PostgreSQL (tsvector + GIN): what a support person types
finds what they mean, the index follows every write and every delete, one tenant never sees another's, and no
string is an error."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from widget_server.backends.storage import Storage, fulltext, open_storage
from widget_server.backends.storage import search as search_module
from widget_server.backends.storage.search import TranscriptFilter
from widget_server.backends.storage.search_query import highlight, parse
from widget_server.backends.storage.tables import conversations
from widget_server.clock import now
from widget_server.ids import new_id


@dataclass
class Db:
    storage: Storage
    loop: asyncio.AbstractEventLoop
    tenant_id: str

    def run(self, coro: Any) -> Any:
        return self.loop.run_until_complete(coro)

    def conversation(self, texts: list[str], tenant_id: str | None = None, **columns: Any) -> str:
        tenant = tenant_id or self.tenant_id
        cid = new_id("conv")
        row = {"id": cid, "tenant_id": tenant, "persona_id": "per_a", "visitor_id": "vis_a", "channel": "widget",
               "status": "bot", "created_at": now(), "updated_at": now(), **columns}
        self.run(self.storage.create_conversation(row))
        for i, text in enumerate(texts):
            self.message(cid, text, tenant, role="visitor" if i % 2 == 0 else "persona")
        return cid

    def message(self, cid: str, text: str, tenant_id: str | None = None, **columns: Any) -> str:
        mid = new_id("msg")
        row = {"id": mid, "tenant_id": tenant_id or self.tenant_id, "conversation_id": cid, "role": "visitor",
               "text": text, "created_at": now(), **columns}
        self.run(self.storage.add_message(row))
        return mid

    def texts(self, query: str, tenant_id: str | None = None) -> list[str]:
        rows = self.run(self.storage.transcripts.messages(tenant_id or self.tenant_id, parse(query)))
        return [r["text"] for r in rows]

    def tenant(self) -> str:
        tenant_id = new_id("ten")
        self.run(self.storage.create_tenant(tenant_id, "T"))
        return tenant_id


@pytest.fixture
def db(db_url: str) -> Iterator[Db]:
    loop = asyncio.new_event_loop()
    storage = loop.run_until_complete(open_storage(db_url))
    d = Db(storage, loop, "")
    d.tenant_id = d.tenant()
    try:
        yield d
    finally:
        loop.run_until_complete(storage.close())
        loop.close()


def test_words_must_all_match_and_phrases_keep_their_order(db: Db) -> None:
    db.conversation(["Where is my order?", "Your order ships tomorrow.", "The status of my order please"])
    db.conversation(["order status: delayed"])
    assert db.texts("order") == ["order status: delayed", "The status of my order please",
                                 "Your order ships tomorrow.", "Where is my order?"]
    assert db.texts("status order") == ["order status: delayed", "The status of my order please"]
    assert db.texts('"order status"') == ["order status: delayed"]
    assert db.texts('"status order"') == []
    assert db.texts("ORDER Status") == db.texts("status order")  # case folded on both databases
    assert db.texts("tomorr") == ["Your order ships tomorrow."]  # the last word is a prefix while typing
    assert db.texts("tomorr ") == []  # … until the word is finished
    assert db.texts("ships tomorrow!") == ["Your order ships tomorrow."]
    # a term that is no plain words is read by PostgreSQL's parser too (one lexeme there), plain ones once
    db.conversation(["write to bob@example.com today", "Herr Müller ships"])
    assert db.texts("bob@example.com today") == ["write to bob@example.com today"]
    assert db.texts('"Herr Müller" ships') == ["Herr Müller ships"]
    assert db.texts('"ORDER STATUS"') == ["order status: delayed"]


def test_every_language_is_split_into_words_and_sqlite_folds_diacritics(db: Db, db_url: str) -> None:
    db.conversation(["Où est ma commande ?", "Wo ist meine Bestellung, Herr Müller?", "¿Dónde está mi pedido?"])
    assert db.texts("commande") == ["Où est ma commande ?"]
    assert db.texts("müller bestellung") == ["Wo ist meine Bestellung, Herr Müller?"]
    assert db.texts("dónde") == ["¿Dónde está mi pedido?"]
    assert db.texts("e-mail") == []
    if db_url.startswith("sqlite"):
        assert db.texts("muller") == ["Wo ist meine Bestellung, Herr Müller?"]  # remove_diacritics 2
        assert db.texts("donde esta") == ["¿Dónde está mi pedido?"]


def test_a_message_is_found_once_written_and_gone_once_deleted_by_every_path(db: Db) -> None:
    keep = db.conversation(["hello there"])
    assert db.texts("zebra") == []
    db.conversation(["my zebra is lost"], visitor_id="vis_erased")
    assert db.texts("zebra") == ["my zebra is lost"]  # the group commit's write is indexed at once
    db.message(keep, "another zebra")
    assert db.texts("zebra") == ["another zebra", "my zebra is lost"]
    counts = db.run(db.storage.events.erase_visitor(db.tenant_id, "vis_erased"))
    assert counts["messages"] == 1 and counts["conversations"] == 1
    assert db.texts("zebra") == ["another zebra"]
    assert db.run(db.storage.transcripts.page(db.tenant_id, TranscriptFilter(text=parse("lost")))).rows == []

    async def drop(conversation_id: str) -> None:  # a delete that reaches messages only through the cascade
        async with db.storage.engine.begin() as conn:
            await conn.execute(sa.delete(conversations).where(conversations.c.id == conversation_id))
    db.run(drop(keep))
    assert db.texts("zebra") == [] and db.texts("hello") == []
    long_ago = now() - timedelta(days=400)
    db.message(db.conversation([], created_at=long_ago), "old giraffe", created_at=long_ago)
    assert db.texts("giraffe") == ["old giraffe"]
    assert db.run(db.storage.events.purge_before(db.tenant_id, now() - timedelta(days=30)))["messages"] == 1
    assert db.texts("giraffe") == []


def test_one_tenant_finds_nothing_of_another(db: Db) -> None:
    other = db.tenant()
    db.conversation(["the secret pineapple recipe"], tenant_id=other)
    db.conversation(["a pineapple of our own"])
    assert db.texts("pineapple") == ["a pineapple of our own"]
    assert db.texts("pineapple", other) == ["the secret pineapple recipe"]
    assert db.texts("secret recipe") == []
    page = db.run(db.storage.transcripts.page(db.tenant_id, TranscriptFilter(text=parse("secret"))))
    assert page.rows == []


HOSTILE = ['"', '""', '"a', 'a"', "*", "a*", "NEAR(a b)", "a OR b", "a AND", "NOT a", "-a", "^a", "body:a",
           "tenant:a", "{a b}:c", "(", ")", "'", "\\", "\x00", "a\x00b", "\ud800", "%", "_", ":*", "a:*", "!",
           "&", "|", "<->", "a <-> b", "' || '", "'); DROP TABLE messages; --", "\u200b", "👍", "ﷺ", " " * 50,
           "x" * 5000, "word " * 400, "„unclosed", "«a»", "…", "-" * 100]


def _check_any(db: Db, text: str) -> None:
    found = db.texts(text)
    assert isinstance(found, list)
    page = db.run(db.storage.transcripts.page(db.tenant_id, TranscriptFilter(text=parse(text)), limit=5))
    assert isinstance(page.rows, list)


def test_hostile_queries_match_something_or_nothing_and_never_fail(db: Db) -> None:
    db.conversation(["a b c word NEAR OR AND NOT", "x" * 200, "tenant body :* '"])
    for text in HOSTILE:
        _check_any(db, text)
    assert db.texts("OR") == ["a b c word NEAR OR AND NOT"]  # an operator is a word like another
    assert db.texts("'); DROP TABLE messages; --") == []
    assert db.texts("hello") == []


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=st.text(max_size=300) | st.text(alphabet='"*:()^-+{}\'\\ a\x00OR', max_size=40))
def test_any_string_is_a_query(db: Db, text: str) -> None:
    if not db.texts("seed"):
        db.conversation(["seed message with words"])
    _check_any(db, text)


def _walk(db: Db, f: TranscriptFilter, limit: int) -> tuple[list[str], list[str]]:
    """Every page down from the top, then every page back up from the bottom: the conversation ids of each."""
    down: list[str] = []
    page = db.run(db.storage.transcripts.page(db.tenant_id, f, limit=limit))
    pages = [page]
    while True:
        down += [r["id"] for r in page.rows]
        if page.older is None:
            break
        page = db.run(db.storage.transcripts.page(db.tenant_id, f, before=page.older, limit=limit))
        pages.append(page)
    up: list[str] = [r["id"] for r in page.rows]
    while page.newer is not None:
        page = db.run(db.storage.transcripts.page(db.tenant_id, f, after=page.newer, limit=limit))
        up = [r["id"] for r in page.rows] + up
    return down, up


@pytest.mark.parametrize("max_scan", [20_000, 7])
@pytest.mark.parametrize("windowed", [2, 7, 30_000])
@pytest.mark.parametrize("filter_first", [0, 2000])
def test_pages_have_no_gap_and_no_duplicate_either_way(db: Db, monkeypatch: pytest.MonkeyPatch,
                                                       max_scan: int, windowed: int, filter_first: int) -> None:
    monkeypatch.setattr(search_module, "MAX_SCAN", max_scan)  # 7: pages cut short by the scan's bound
    # 0: a filter never applied first (the index scanned, each match met checked); 2000: the channel filter first
    monkeypatch.setattr(search_module, "FILTER_FIRST", filter_first)
    monkeypatch.setattr(search_module, "FIRST_BATCH", 3)
    # PostgreSQL: windows of two messages first, then growing ones up to `windowed` messages a batch, then the
    # GIN index past them (2: the index right after the first window; 30,000: windows only, to the end)
    monkeypatch.setattr(fulltext, "WINDOW", 2)
    monkeypatch.setattr(fulltext, "MAX_WINDOWED", windowed)
    ids = []
    for i in range(23):
        words = ["lamp"] * (1 + i % 3) + (["broken"] if i % 4 == 0 else [])
        ids.append(db.conversation([f"{w} {i}" for w in words] + ["unrelated"], channel="api" if i % 2 else "widget",
                                   status="escalated" if i % 5 == 0 else "bot"))
    # Conversations written in an order their matches do not follow: a newer match in an older conversation.
    db.message(ids[3], "lamp again")
    db.message(ids[10], "lamp once more")
    expected_text = [ids[10], ids[3]] + [c for c in reversed(ids) if c not in (ids[3], ids[10])]
    for f, expected in [
        (TranscriptFilter(), list(reversed(ids))),
        (TranscriptFilter(text=parse("lamp")), expected_text),
        (TranscriptFilter(text=parse("lamp"), channel="api"), [c for c in expected_text if ids.index(c) % 2]),
        (TranscriptFilter(text=parse("lamp"), status="escalated"), [c for c in expected_text if ids.index(c) % 5 == 0]),
        (TranscriptFilter(text=parse("broken"), status="escalated"), [ids[20], ids[0]]),
        (TranscriptFilter(text=parse("broken")), [c for c in reversed(ids) if ids.index(c) % 4 == 0]),
    ]:
        for limit in (1, 4, 50):
            down, up = _walk(db, f, limit)
            assert down == expected, (f, limit)
            assert up == expected, (f, limit)


def test_each_filter_narrows_the_list(db: Db) -> None:
    t = db.tenant_id
    day = now() - timedelta(days=10)
    plain = db.conversation(["hi"], created_at=day)
    other_persona = db.conversation(["hi"], persona_id="per_b")
    api = db.conversation(["hi"], channel="api")
    closed = db.conversation(["hi"], status="closed")
    guarded = db.conversation([])
    db.message(guarded, "[email] please", guardrail={"action": "mask", "reason": "pii.email", "source": "input"})
    escalated = db.conversation([])
    db.message(escalated, "a human", guardrail={"action": "escalate", "reason": "escalation.requested",
                                                "source": "input"})
    agent = db.conversation(["hi"], status="agent")
    rated = db.conversation([])
    reply = db.message(rated, "bad answer", role="persona")
    db.run(db.storage.save_feedback({"id": new_id("fb"), "tenant_id": t, "conversation_id": rated,
                                     "message_id": reply, "rating": "down", "comment": None, "created_at": now()}))
    everyone = {plain, other_persona, api, closed, guarded, escalated, agent, rated}

    def ids(**f: Any) -> set[str]:
        return {r["id"] for r in db.run(db.storage.transcripts.page(t, TranscriptFilter(**f), limit=100)).rows}

    assert ids() == everyone
    assert ids(persona_id="per_b") == {other_persona}
    assert ids(channel="api") == {api}
    assert ids(status="closed") == {closed}
    assert ids(until=now() - timedelta(days=1)) == {plain}
    assert ids(since=now() - timedelta(days=1)) == everyone - {plain}
    assert ids(guardrail=True) == {guarded, escalated}
    assert ids(escalated=True) == {escalated, agent}
    assert ids(feedback_down=True) == {rated}
    assert ids(feedback_down=True, channel="api") == set()
    summary = db.run(db.storage.transcripts.summaries(t, [guarded, rated, escalated]))
    assert summary[guarded]["guardrail"] == 1 and summary[rated]["down"] == 1
    assert summary[escalated]["escalations"] == 1 and summary[rated]["messages"] == 1


def test_the_marks_fall_on_the_matches_and_keep_the_text_as_it_was() -> None:
    q = parse('café "my order"')
    assert highlight("<b>Cafe</b> for my order, my ORDER!", q) == [
        ("<b>", False), ("Cafe", True), ("</b> for ", False), ("my", True), (" ", False), ("order", True),
        (", ", False), ("my", True), (" ", False), ("ORDER", True), ("!", False)]
    long = "x " * 300 + "the order" + " y" * 300
    parts = highlight(long, parse("order"))
    assert parts[0] == ("…", False) and parts[-1] == ("…", False) and ("order", True) in parts
    assert sum(len(p) for p, _ in parts) < 200
    assert highlight("nothing here", parse("zebra")) == [("nothing here", False)]
    assert parse("???").terms == () and parse("a" * 10_000).terms[0].words[0] == "a" * 100


def test_messages_stored_before_the_migration_are_indexed_by_it(tmp_path: Any) -> None:
    from alembic import command
    from alembic.config import Config
    from sqlalchemy.ext.asyncio import create_async_engine

    from widget_server.backends.storage.connect import MIGRATIONS, async_url
    from widget_server.backends.storage.tables import messages, tenants

    url = f"sqlite:///{tmp_path / 'old.db'}"
    tenant_id, cid = new_id("ten"), new_id("conv")

    def to_0007(sync_conn: sa.Connection) -> None:
        cfg = Config()
        cfg.set_main_option("script_location", str(MIGRATIONS))
        cfg.attributes["connection"] = sync_conn
        command.upgrade(cfg, "0007")

    async def run() -> list[str]:
        engine = create_async_engine(async_url(url))
        async with engine.begin() as conn:
            await conn.run_sync(to_0007)
            await conn.execute(sa.insert(tenants).values(id=tenant_id, name="T", created_at=now()))
            await conn.execute(sa.insert(conversations).values(
                id=cid, tenant_id=tenant_id, persona_id="p", visitor_id="v", channel="api", status="bot",
                created_at=now(), updated_at=now()))
            await conn.execute(sa.insert(messages).values(id=new_id("msg"), tenant_id=tenant_id,
                                                          conversation_id=cid, role="visitor",
                                                          text="an old walrus", created_at=now()))
        await engine.dispose()
        storage = await open_storage(url)
        try:
            return [r["text"] for r in await storage.transcripts.messages(tenant_id, parse("walrus"))]
        finally:
            await storage.close()

    assert asyncio.run(run()) == ["an old walrus"]


def test_a_cursor_from_elsewhere_is_refused_as_such(db: Db) -> None:
    f = TranscriptFilter(text=parse("x"))
    for cursor in ["abc", "-1", "1" * 30, "'; --", "\x00", "٣"]:
        with pytest.raises(search_module.BadCursor):
            db.run(db.storage.transcripts.page(db.tenant_id, replace(f), before=cursor))
