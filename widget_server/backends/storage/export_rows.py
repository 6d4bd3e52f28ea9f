"""Event rows rendered by the database for the JSONL and CSV exports, in keyset pages up to a high-water mark.

A million events decoded into Python (datetimes, JSON attributes) and encoded again cost about 30 µs each, all
of it holding the interpreter lock that live conversations need. Here the database writes each JSON line, or
each CSV cell as text, so Python only joins strings (the csv module, in C, quotes the cells). The result is what
`event_json` gives: the columns in the same order, `ts` as ISO 8601 UTC with microseconds, `attributes` as the
stored JSON text (same values, so a line parses back to what the query returns). CSV cells that a spreadsheet
would run as a formula get a `'`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from widget_server.backends.storage.analytics import EventFilter
from widget_server.backends.storage.tables import events

c = events.c
# The cells a spreadsheet evaluates: these first characters, also after leading spaces (" =1" runs too).
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r", "\n")
COLUMNS = ("id", "ts", "tenant_id", "persona_id", "conversation_id", "visitor_id", "channel", "type", "schema_version",
           "attributes")  # the export schema's, as `query.COLUMNS` (a floor below it, so repeated; a test pins both)


class ExportReader:
    """Every query is tenant-scoped and stops at `upto`, like `EventStore.scan`."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        self.dialect = engine.dialect.name

    def _ts(self) -> sa.ColumnElement[str]:
        if self.dialect == "postgresql":
            return sa.func.to_char(sa.func.timezone("UTC", c.ts), 'YYYY-MM-DD"T"HH24:MI:SS.US"+00:00"',
                                   type_=sa.String)
        # SQLite holds the UTC wall clock as `YYYY-MM-DD HH:MM:SS.ffffff` (SQLAlchemy always writes microseconds)
        return sa.func.replace(sa.type_coerce(c.ts, sa.String), " ", "T", type_=sa.String) + "+00:00"

    def _attributes(self) -> sa.ColumnElement[str]:
        if self.dialect == "postgresql":
            return sa.cast(c.attributes, sa.Text)  # `json` keeps the text it was given
        return sa.func.json(sa.type_coerce(c.attributes, sa.String), type_=sa.String)

    def _json_line(self) -> sa.ColumnElement[str]:
        pg = self.dialect == "postgresql"
        # the JSON column goes in as JSON (PostgreSQL's `json` as it is; SQLite's text through `json()`), not a string
        special = {"ts": self._ts(), "attributes": c.attributes if pg else self._attributes()}
        pairs: list[Any] = []
        for name in COLUMNS:  # names are literals: PostgreSQL cannot type a bound parameter of json_build_object
            pairs += [sa.literal_column(f"'{name}'"), special.get(name, c[name])]
        if pg:
            return sa.cast(sa.func.json_build_object(*pairs), sa.Text)
        return sa.func.json_object(*pairs, type_=sa.String)

    def _cells(self) -> list[sa.ColumnElement[Any]]:
        def safe(value: sa.ColumnElement[str]) -> sa.ColumnElement[str]:
            first = sa.func.substr(sa.func.ltrim(value), 1, 1)  # ltrim: spaces, on SQLite and PostgreSQL
            return sa.case((first.in_(FORMULA_STARTS), "'" + value), else_=value)
        special = {"ts": self._ts(), "schema_version": c.schema_version, "attributes": self._attributes()}
        return [special[name] if name in special else safe(c[name]) for name in COLUMNS]

    async def lines(self, tenant_id: str, filters: EventFilter, *, upto: int, page: int) -> AsyncIterator[list[str]]:
        """Pages of JSON lines (without the line end)."""
        async for rows in self._pages([self._json_line()], tenant_id, filters, upto, page):
            yield [row[0] for row in rows]

    async def cells(
        self, tenant_id: str, filters: EventFilter, *, upto: int, page: int
    ) -> AsyncIterator[list[Sequence[Any]]]:
        """Pages of CSV rows in the export's columns: text cells (neutralised), the schema version, or None."""
        async for rows in self._pages(self._cells(), tenant_id, filters, upto, page):
            yield [row[:-1] for row in rows]

    async def _pages(
        self, columns: list[sa.ColumnElement[Any]], tenant_id: str, filters: EventFilter, upto: int, page: int
    ) -> AsyncIterator[Sequence[Sequence[Any]]]:
        """Rows with `seq` last, in commit order; one short connection per page, as `EventStore.scan`."""
        after = 0
        where = [*filters.where(tenant_id), c.seq <= upto]
        while True:
            query = sa.select(*columns, c.seq).where(*where, c.seq > after).order_by(c.seq).limit(page)
            async with self.engine.connect() as conn:
                rows = (await conn.execute(query)).all()
            if rows:
                yield rows
            if len(rows) < page:
                return
            after = rows[-1][-1]
