"""The two full-text indexes behind one pair of queries (the indexes themselves: migration 0008).

- `hits`: a tenant's messages matching a query, in index order from a bound (newest first, or oldest first),
  a batch at a time. The order is the index's own (SQLite: the FTS rowid, which grows with insertion;
  PostgreSQL: the message id, time-sortable), so a batch is read without sorting, and a common word stops early.
- `newest`: for some conversations, each one's newest matching message: a conversation is listed once, at it.

A hit's key is an int on SQLite and a message id on PostgreSQL; a cursor is its text (`key_of` reads one back).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from widget_server.backends.storage.search_query import Term, TextQuery

Key = int | str
ID = re.compile(r"[a-z]{2,8}_[0-9a-z]{26}")  # widget_server.ids.new_id's shape


@dataclass(frozen=True)
class Hit:
    key: Key
    message_id: str
    conversation_id: str


def below(a: Key, b: Key) -> bool:
    """`a < b`: the keys of one database are all ints or all strings."""
    return a < b  # type: ignore[operator]


class BadCursor(ValueError):
    """A cursor this database never handed out."""


def tenant_token(tenant_id: str) -> str:
    """The token every message of the tenant carries in the SQLite index (the migration's `'t' || hex(...)`)."""
    return "t" + tenant_id.encode().hex()


def fts5_match(tenant_id: str, query: TextQuery, conversation_ids: list[str] | None = None) -> str:
    """The FTS5 expression: the tenant's token, one of the conversations' (when given), every term in the text."""
    terms = " AND ".join(term.fts5() for term in query.terms)
    within = ""
    if conversation_ids:
        within = " AND conversation : (" + " OR ".join(f'"c{c.encode().hex()}"' for c in conversation_ids) + ")"
    return f'tenant : "{tenant_token(tenant_id)}"{within} AND body : ({terms})'


# ASCII letters and digits between spaces: words that PostgreSQL's parser splits and folds exactly as ours does, so
# its reading of them is left out (each message of a window was checked against the same phrase twice: 'tracking
# number' at 1,000,000 messages, 210 ms). An accent (kept by 'simple', folded by us) or a mark keeps it.
PLAIN = re.compile(r"[A-Za-z0-9]+(?: [A-Za-z0-9]+)*")


def _plain(term: Term) -> bool:
    """Whether PostgreSQL's parser reads the term as the words we read (no cut word, no accent, no mark)."""
    return bool(PLAIN.fullmatch(term.source)) and " ".join(term.words) == term.source.lower()


def _tsquery(query: TextQuery) -> tuple[str, dict[str, Any]]:
    """The tsquery, as SQL with its parameters: each term read by our tokenizer (with the prefix), or else — when
    it is no prefix, and not plain words — also by PostgreSQL's own parser, which keeps an e-mail address or a URL
    as one lexeme."""
    parts, params = [], {}
    for i, term in enumerate(query.terms):
        params[f"w{i}"] = term.tsquery()
        ours = f"to_tsquery('simple'::regconfig, :w{i})"
        if term.prefix or _plain(term):
            parts.append(ours)
        else:
            params[f"s{i}"] = term.source
            parts.append(f"({ours} || phraseto_tsquery('simple'::regconfig, :s{i}))")
    return " && ".join(parts), params


# The index in its own order (CROSS JOIN keeps SQLite from starting anywhere else), with each match's message.
FTS_HITS = ("SELECT f.rowid AS key, d.message_id, m.conversation_id FROM message_search f "
            "CROSS JOIN message_search_docs d ON d.doc_id = f.rowid CROSS JOIN messages m ON m.id = d.message_id "
            "WHERE f.message_search MATCH :match AND m.tenant_id = :tenant")
WINDOW = 3000
MAX_WINDOWED = 30_000  # messages read in windows for one batch, at most (about 60 ms at 1,000,000)
TSV = "m.search"  # the stored to_tsvector('simple', text) (migration 0008)


class FullText:
    def __init__(self, dialect: str) -> None:
        self.sqlite = dialect == "sqlite"

    async def prepare(self, conn: AsyncConnection) -> None:
        """PostgreSQL: plan each search for its own words. The driver prepares statements, and after five runs
        PostgreSQL may keep a generic plan, made without knowing the tsquery: it then reads the whole table
        backwards for a rare word (measured: 1.2 s a query at 1,000,000 messages, against 5 ms planned for the
        word). `SET LOCAL` lasts for this connection's transaction only."""
        if not self.sqlite:
            await conn.execute(sa.text("SET LOCAL plan_cache_mode = force_custom_plan"))

    def key_of(self, cursor: str) -> Key:
        if self.sqlite:
            if not cursor.isascii() or not cursor.isdigit() or len(cursor) > 18:
                raise BadCursor(cursor)
            return int(cursor)
        if not ID.fullmatch(cursor):
            raise BadCursor(cursor)
        return cursor

    async def hits(self, conn: AsyncConnection, tenant_id: str, query: TextQuery, *, bound: Key | None,
                   newest_first: bool, limit: int, inclusive: bool = False) -> list[Hit]:
        side, order = ("<", "DESC") if newest_first else (">", "ASC")
        side += "=" if inclusive else ""
        if not self.sqlite:
            return await self._pg_hits(conn, tenant_id, query, bound, side, order, limit)
        where = "" if bound is None else f"AND f.rowid {side} :bound"
        sql = f"{FTS_HITS} {where} ORDER BY f.rowid {order} LIMIT :limit"
        params = {"match": fts5_match(tenant_id, query), "tenant": tenant_id, "bound": bound, "limit": limit}
        rows = (await conn.execute(sa.text(sql), params)).all()
        return [Hit(r.key, r.message_id, r.conversation_id) for r in rows]

    async def _pg_hits(self, conn: AsyncConnection, tenant_id: str, query: TextQuery, bound: Key | None, side: str,
                       order: str, limit: int) -> list[Hit]:
        """The tenant's messages beyond the bound are checked one by one, newest first, a window at a time, for as
        long as the matches met so far say the rest of the batch lies within `MAX_WINDOWED` more messages; then
        the GIN index takes over past them. A common word or phrase fills a batch from the windows, without the
        index's recheck of every message holding all the words of a phrase (it has no positions: 'tracking
        number' at 1,000,000 messages is 80,000 rows, 250 ms even for the last few matches of a batch); a rare one
        leaves the first window nearly empty, and the index finds the rest in milliseconds."""
        tsq, params = _tsquery(query)
        found: list[Hit] = []
        read = matched = 0
        size, position, edge = WINDOW, bound, side
        while True:
            where = "" if position is None else f"AND m.id {edge} :bound"
            recent = (f"SELECT m.id, m.conversation_id, {TSV} @@ ({tsq}) AS hit FROM messages m "
                      f"WHERE m.tenant_id = :tenant {where} ORDER BY m.id {order} LIMIT :window")
            params.update(tenant=tenant_id, bound=position, window=size)
            window = (await conn.execute(sa.text(recent), params)).all()
            hits = [Hit(r.id, r.id, r.conversation_id) for r in window if r.hit]
            found += hits[:limit - len(found)]
            read, matched = read + len(window), matched + len(hits)
            if len(found) >= limit or len(window) < size:
                return found
            position, edge = window[-1].id, side[0]
            expected = (limit - len(found)) * read / matched if matched else None  # messages still to read
            if expected is None or read + expected > MAX_WINDOWED:
                break
            size = min(max(WINDOW, int(expected * 1.25) + 16), MAX_WINDOWED - read)
        params.update(bound=position, limit=limit - len(found))
        # `|| ''` keeps the tenant's index (migration 0010) out of this query: the planner guesses thousands of
        # matches for any word, and ANDed the GIN bitmap with all the tenant's 200,000 entries (44 ms of 55).
        rest = ("SELECT m.id, m.conversation_id FROM messages m WHERE (m.tenant_id || '') = :tenant "
                f"AND {TSV} @@ ({tsq}) AND m.id {side[0]} :bound ORDER BY m.id {order} LIMIT :limit")
        # Past a window this sparse, the index it is: a prefix's or a phrase's selectivity is guessed (1 row in
        # 1,000), and with that guess and a LIMIT the planner walks the primary key backwards through the whole
        # table for a word that is not there (measured: 750 ms at 1,000,000 messages, against a few ms).
        await conn.execute(sa.text("SET LOCAL enable_indexscan = off"))
        try:
            rows = (await conn.execute(sa.text(rest), params)).all()
        finally:
            await conn.execute(sa.text("SET LOCAL enable_indexscan = on"))
        return found + [Hit(r.id, r.id, r.conversation_id) for r in rows]

    async def newest(self, conn: AsyncConnection, tenant_id: str, query: TextQuery,
                     conversation_ids: list[str]) -> dict[str, Hit]:
        """Each of these conversations' newest matching message (a conversation without one is left out)."""
        if not conversation_ids:
            return {}
        if self.sqlite:  # every match in these conversations, newest first: the first of each is its newest
            sql = f"{FTS_HITS} ORDER BY f.rowid DESC"
            params: dict[str, Any] = {"match": fts5_match(tenant_id, query, conversation_ids), "tenant": tenant_id}
            out: dict[str, Hit] = {}
            for r in (await conn.execute(sa.text(sql), params)).all():
                out.setdefault(r.conversation_id, Hit(r.key, r.message_id, r.conversation_id))
            return out
        # One conversation at a time, down its own index from its newest message: each of them holds a match
        # (it was met at one), so the walk stops within that conversation. Through the GIN index instead, a common
        # prefix or phrase was rechecked on every message holding its words (measured: 243 ms for 189
        # conversations and the prefix 'deliv' at 1,000,000 messages, against 11 ms this way).
        tsq, params = _tsquery(query)
        sql = ("SELECT h.id AS key, h.id AS message_id, h.conversation_id "
               "FROM unnest(CAST(:ids AS varchar[])) AS c(id) CROSS JOIN LATERAL ("
               "SELECT m.id, m.conversation_id FROM messages m WHERE m.conversation_id = c.id "
               f"AND m.tenant_id = :tenant AND {TSV} @@ ({tsq}) ORDER BY m.id DESC LIMIT 1) h")
        params.update(tenant=tenant_id, ids=list(conversation_ids))
        rows = (await conn.execute(sa.text(sql), params)).all()
        return {r.conversation_id: Hit(r.key, r.message_id, r.conversation_id) for r in rows}
