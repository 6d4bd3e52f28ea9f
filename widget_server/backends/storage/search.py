"""Transcripts: a tenant's conversations, newest first, filtered, and found by the text of their messages.

One interface over SQLite and PostgreSQL (`fulltext.py` holds what differs). Pages are keyset pages: a cursor
and a direction, never an offset, so a page is as fast deep in the list as on top, and a conversation written
meanwhile shifts nothing.

- Without a search, conversations in id order (their start), newest first; the cursor is a conversation id.
- With a search, each conversation once, at its newest matching message, newest first (the cursor is that
  message's key in the index). The index is read in its own order a batch at a time, and each conversation met
  for the first time is checked against the filters and placed at its newest match. A page that would read more
  than `MAX_SCAN` matches (a common word under a rare filter) ends there, shorter, with a cursor to go on: the
  time a page takes stays bounded, and the pages still cover every match exactly once.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from widget_server.backends.storage.fulltext import ID, BadCursor, FullText, Hit, Key, below
from widget_server.backends.storage.rows import Row, as_row
from widget_server.backends.storage.search_query import TextQuery
from widget_server.backends.storage.tables import conversations, feedback, messages

__all__ = ["BadCursor", "TranscriptFilter", "TranscriptPage", "TranscriptSearch"]
MAX_SCAN = 20_000
FIRST_BATCH = 64
# A filter that leaves at most this many conversations is applied first: their newest matches are found in one
# read, rather than the index read a batch at a time until enough of its matches pass (a common word under a rare
# filter: `refund` and `status=escalated` at 100,000 conversations read 20,000 matches for a short page, 297 ms).
FILTER_FIRST = 2000


@dataclass(frozen=True)
class TranscriptFilter:
    persona_id: str | None = None
    channel: str | None = None
    status: str | None = None
    since: datetime | None = None  # started at or after
    until: datetime | None = None  # started before
    guardrail: bool = False  # a guardrail acted on one of its messages
    feedback_down: bool = False  # a reply was rated down
    escalated: bool = False  # handed to a person (now, or by a guardrail at some point)
    text: TextQuery | None = None


@dataclass
class TranscriptPage:
    rows: list[Row]  # conversations, newest first; with a search each has `hit`, its newest matching message
    older: str | None = None  # the cursor of the next page down (`before=`), if there is one
    newer: str | None = None  # the cursor of the page above (`after=`), if there is one
    stats: dict[str, int] = field(default_factory=dict)


def _action() -> sa.ColumnElement[Any]:
    action: sa.ColumnElement[Any] = messages.c.guardrail["action"].as_string()
    return action


def _where(tenant_id: str, f: TranscriptFilter) -> list[sa.ColumnElement[bool]]:
    c, m = conversations.c, messages.c
    out = [c.tenant_id == tenant_id]
    out += [col == value for col, value in ((c.persona_id, f.persona_id), (c.channel, f.channel),
                                            (c.status, f.status)) if value]
    if f.since is not None:
        out.append(c.created_at >= f.since)
    if f.until is not None:
        out.append(c.created_at < f.until)
    of_conversation = (m.tenant_id == tenant_id, m.conversation_id == c.id)
    if f.guardrail:
        out.append(sa.exists().where(*of_conversation, _action().is_not(None)))
    if f.escalated:
        out.append(sa.or_(c.status.in_(("escalated", "agent")),
                          sa.exists().where(*of_conversation, _action() == "escalate")))
    if f.feedback_down:
        out.append(c.id.in_(sa.select(feedback.c.conversation_id).where(
            feedback.c.tenant_id == tenant_id, feedback.c.rating == "down")))
    return out


def _beyond(hit: Hit, bound: Key | None, inclusive: bool, down: bool) -> bool:
    """Whether a conversation's newest match lies past the page's bound, in its direction."""
    return (bound is None or (inclusive and hit.key == bound)
            or (below(hit.key, bound) if down else below(bound, hit.key)))


class TranscriptSearch:
    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        self.fulltext = FullText(engine.dialect.name)

    async def page(self, tenant_id: str, filters: TranscriptFilter, *, before: str | None = None,
                   after: str | None = None, limit: int = 50) -> TranscriptPage:
        """One page: below `before`, or above `after` (the cursors of a previous page), or the newest."""
        async with self.engine.connect() as conn:
            if filters.text is not None:
                await self.fulltext.prepare(conn)
                return await self._search(conn, tenant_id, filters, before, after, limit)
            return await self._list(conn, tenant_id, filters, before, after, limit)

    async def _list(self, conn: AsyncConnection, tenant_id: str, f: TranscriptFilter, before: str | None,
                    after: str | None, limit: int) -> TranscriptPage:
        c = conversations.c
        if any(cursor is not None and not ID.fullmatch(cursor) for cursor in (before, after)):
            raise BadCursor(before or after or "")
        query = sa.select(conversations).where(*_where(tenant_id, f))
        if after is not None:
            query = query.where(c.id > after).order_by(c.id.asc())
        else:
            query = query.where(c.id < before) if before is not None else query
            query = query.order_by(c.id.desc())
        rows = [as_row(r) for r in (await conn.execute(query.limit(limit + 1))).mappings().all()]
        more = len(rows) > limit
        rows = rows[:limit]
        if after is not None:
            rows.reverse()
        page = TranscriptPage(rows)
        if rows:
            page.older = rows[-1]["id"] if (more if after is None else True) else None
            page.newer = rows[0]["id"] if (more if after is not None else before is not None) else None
        return page

    async def _search(self, conn: AsyncConnection, tenant_id: str, f: TranscriptFilter, before: str | None,
                      after: str | None, limit: int) -> TranscriptPage:
        assert f.text is not None
        if not f.text.searchable:
            return TranscriptPage([])
        cursor = after if after is not None else before
        inclusive = cursor is not None and cursor.startswith("=")
        bound = self.fulltext.key_of(cursor.removeprefix("=")) if cursor is not None else None
        few = await self._few(conn, tenant_id, f)
        if few is not None:
            found, onward, scanned = await self._among(conn, tenant_id, f, few, (bound, inclusive), after is None,
                                                       limit)
        else:
            found, onward, scanned = await self._scan(conn, tenant_id, f, (bound, inclusive), after is None, limit)
        page = TranscriptPage(await self._rows(conn, tenant_id, found), stats={"scanned": scanned})
        keys = [str(hit.key) for _, hit in found]
        # Back the other way: past this page's first row or, on a page left empty by the scan's bound, from this
        # page's own cursor, the rows at it included ("=": it may be the key of the last row of the page before).
        back = keys[0 if after is None else -1] if keys else "=" + cursor.removeprefix("=") if cursor else None
        if after is None:
            page.older, page.newer = onward, back if before is not None else None
        else:
            page.newer, page.older = onward, back
        return page

    async def _scan(self, conn: AsyncConnection, tenant_id: str, f: TranscriptFilter,
                    start: tuple[Key | None, bool], down: bool,
                    limit: int) -> tuple[list[tuple[Row, Hit]], str | None, int]:
        """Up to `limit` conversations beyond `bound` (below it when `down`), newest first, each with its newest
        matching message; the cursor to go on in the same direction (None at the end); how many matches it read.

        Going down, a conversation met first at a match is placed there (any newer match of it, below `bound`,
        would have been met before). Going up, a conversation's newest match may lie ahead of the scan, so only
        those placed at or behind the scan's position are settled: nothing unseen can come before them."""
        assert f.text is not None
        bound, inclusive = start
        seen: set[str] = set()
        placed: list[tuple[Row, Hit]] = []
        position, batch, scanned, exhausted = bound, FIRST_BATCH, 0, False

        def settled() -> list[tuple[Row, Hit]]:
            if down or exhausted or position is None:
                return placed
            return [p for p in placed if not below(position, p[1].key)]

        while scanned < MAX_SCAN and not exhausted and len(settled()) <= limit:
            hits = await self.fulltext.hits(conn, tenant_id, f.text, bound=position, newest_first=down, limit=batch,
                                            inclusive=inclusive and scanned == 0)
            scanned += len(hits)
            exhausted = len(hits) < batch
            position = hits[-1].key if hits else position
            fresh = list(dict.fromkeys(h.conversation_id for h in hits if h.conversation_id not in seen))
            seen.update(fresh)
            placed += await self._place(conn, tenant_id, f, fresh, start, down)
            batch = min(batch * 4, 4096)
        ready = sorted(settled(), key=lambda p: p[1].key, reverse=down)  # nearest to `bound` first
        chosen = sorted(ready[:limit], key=lambda p: p[1].key, reverse=True)
        onward: str | None = None if exhausted else str(position)
        if len(ready) > limit:
            onward = str(ready[limit - 1][1].key)
        return chosen, onward, scanned

    async def _few(self, conn: AsyncConnection, tenant_id: str, f: TranscriptFilter) -> list[str] | None:
        """The conversations a filter leaves, when it is one and leaves at most `FILTER_FIRST` of them. Not for the
        filters that look into each conversation's messages (guardrail, escalated): to count what they leave would
        read the messages of every conversation."""
        if f == TranscriptFilter(text=f.text) or f.guardrail or f.escalated:
            return None
        query = sa.select(conversations.c.id).where(*_where(tenant_id, f)).limit(FILTER_FIRST + 1)
        ids = list((await conn.execute(query)).scalars())
        return ids if len(ids) <= FILTER_FIRST else None

    async def _among(self, conn: AsyncConnection, tenant_id: str, f: TranscriptFilter, ids: list[str],
                     start: tuple[Key | None, bool], down: bool,
                     limit: int) -> tuple[list[tuple[Row, Hit]], str | None, int]:
        """`_scan`'s answer for a filter applied first: the newest match of each of these conversations, those
        beyond the bound in the page's direction, the nearest `limit` of them (and the cursor on, if more)."""
        assert f.text is not None
        bound, inclusive = start
        newest = await self.fulltext.newest(conn, tenant_id, f.text, ids) if ids else {}
        hits = [hit for hit in newest.values() if _beyond(hit, bound, inclusive, down)]
        ready = sorted(hits, key=lambda h: h.key, reverse=down)  # nearest to the bound first
        chosen = ready[:limit]
        rows = {}
        if chosen:
            query = sa.select(conversations).where(conversations.c.tenant_id == tenant_id,
                                                   conversations.c.id.in_([h.conversation_id for h in chosen]))
            rows = {r["id"]: as_row(r) for r in (await conn.execute(query)).mappings().all()}
        found = sorted(((rows[h.conversation_id], h) for h in chosen if h.conversation_id in rows),
                       key=lambda p: p[1].key, reverse=True)
        onward = str(ready[limit - 1].key) if len(ready) > limit else None
        return found, onward, len(newest)

    async def _place(self, conn: AsyncConnection, tenant_id: str, f: TranscriptFilter, ids: list[str],
                     start: tuple[Key | None, bool], down: bool) -> list[tuple[Row, Hit]]:
        """The conversations (of `ids`, met for the first time) that pass the filters and whose newest match is
        beyond `bound`, in the order met, each with that match."""
        if not ids:
            return []
        bound, inclusive = start
        newest = await self.fulltext.newest(conn, tenant_id, f.text, ids)  # type: ignore[arg-type]
        query = sa.select(conversations).where(*_where(tenant_id, f), conversations.c.id.in_(ids))
        passing = {r["id"]: as_row(r) for r in (await conn.execute(query)).mappings().all()}
        out = []
        for cid in ids:
            hit = newest.get(cid)
            if cid in passing and hit is not None and _beyond(hit, bound, inclusive, down):
                out.append((passing[cid], hit))
        return out

    async def _rows(self, conn: AsyncConnection, tenant_id: str, found: list[tuple[Row, Hit]]) -> list[Row]:
        ids = [hit.message_id for _, hit in found]
        if not ids:
            return []
        query = sa.select(messages).where(messages.c.tenant_id == tenant_id, messages.c.id.in_(ids))
        texts = {r["id"]: as_row(r) for r in (await conn.execute(query)).mappings().all()}
        return [{**row, "hit": texts[hit.message_id]} for row, hit in found if hit.message_id in texts]

    async def messages(self, tenant_id: str, query: TextQuery, limit: int = 50) -> list[Row]:
        """The tenant's newest messages matching `query` (newest first)."""
        if not query.searchable:
            return []
        async with self.engine.connect() as conn:
            await self.fulltext.prepare(conn)
            hits = await self.fulltext.hits(conn, tenant_id, query, bound=None, newest_first=True, limit=limit)
            if not hits:
                return []
            rows = (await conn.execute(sa.select(messages).where(
                messages.c.tenant_id == tenant_id, messages.c.id.in_([h.message_id for h in hits])))).mappings()
            by_id = {r["id"]: as_row(r) for r in rows.all()}
        return [by_id[h.message_id] for h in hits if h.message_id in by_id]

    async def summaries(self, tenant_id: str, conversation_ids: list[str]) -> dict[str, dict[str, int]]:
        """For each conversation: its messages, the guardrail decisions on them, escalations and replies rated
        down (the list's columns)."""
        if not conversation_ids:
            return {}
        m = messages.c
        action = _action()
        counts = sa.select(m.conversation_id, sa.func.count().label("messages"),
                           sa.func.count(action).label("guardrail"),
                           sa.func.sum(sa.case((action == "escalate", 1), else_=0)).label("escalations"),
                           ).where(m.tenant_id == tenant_id, m.conversation_id.in_(conversation_ids)
                                   ).group_by(m.conversation_id)
        downs = sa.select(feedback.c.conversation_id, sa.func.count().label("down")).where(
            feedback.c.tenant_id == tenant_id, feedback.c.conversation_id.in_(conversation_ids),
            feedback.c.rating == "down").group_by(feedback.c.conversation_id)
        out = {cid: {"messages": 0, "guardrail": 0, "escalations": 0, "down": 0} for cid in conversation_ids}
        async with self.engine.connect() as conn:
            for r in (await conn.execute(counts)).mappings().all():
                out[r["conversation_id"]].update(messages=r["messages"], guardrail=r["guardrail"],
                                                 escalations=int(r["escalations"] or 0))
            for r in (await conn.execute(downs)).mappings().all():
                out[r["conversation_id"]]["down"] = r["down"]
        return out
