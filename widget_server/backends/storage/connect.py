"""Opening the database: the URL picks SQLite (WAL) or PostgreSQL, and the schema is brought to the newest migration."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from widget_server.backends.storage.store import Storage
from widget_server.private_files import private_file
from widget_server.text import storable

MIGRATIONS = Path(__file__).parent / "migrations"
MIGRATION_LOCK = 727274  # PostgreSQL advisory lock: one of several starting nodes migrates, the others wait


def async_url(url: str) -> str:
    """`sqlite:///x.db` and `postgresql://…` as the async drivers spell them."""
    scheme, _, rest = url.partition("://")
    base = scheme.split("+")[0]
    if base == "sqlite":
        return f"sqlite+aiosqlite://{rest}"
    if base in ("postgresql", "postgres"):
        return f"postgresql+asyncpg://{rest}"
    raise ValueError(f"unsupported database URL scheme {scheme!r}: use sqlite:/// or postgresql://")


async def open_storage(url: str) -> Storage:
    """Connect and bring the schema to the newest migration."""
    aurl = async_url(url)
    if aurl.startswith("sqlite"):
        database = Path(aurl.split(":///", 1)[1])
        private_file(database)  # SQLite gives its -wal and -shm files the database's mode
        for side in ("-wal", "-shm"):
            if (extra := database.with_name(database.name + side)).exists():
                private_file(extra)
        engine = create_async_engine(aurl, connect_args={"timeout": 30}, json_serializer=json_text)
        event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
    else:
        engine = create_async_engine(aurl, pool_size=10, max_overflow=20, pool_pre_ping=True,
                                     json_serializer=json_text)
    await migrate(engine)
    return Storage(engine)


def json_text(value: Any) -> str:
    """JSON columns as both databases can hold and read back: no NaN or Infinity (PostgreSQL refuses them, SQLite's
    JSON functions cannot read them), no NUL and no lone surrogate (PostgreSQL's `->>` fails on them). A value with
    any of these is refused before it is sent, so the writer can set its event aside."""
    if not storable(value):
        raise ValueError("a JSON value holds a NUL or a lone surrogate, which no database here reads back")
    return json.dumps(value, allow_nan=False)


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA busy_timeout=30000")
    cur.close()


def _upgrade(sync_conn: sa.Connection) -> None:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.attributes["connection"] = sync_conn
    command.upgrade(cfg, "head")


async def migrate(engine: AsyncEngine) -> None:
    async with engine.begin() as conn:
        if engine.dialect.name == "postgresql":
            await conn.execute(sa.text(f"SELECT pg_advisory_xact_lock({MIGRATION_LOCK})"))
        await conn.run_sync(_upgrade)
