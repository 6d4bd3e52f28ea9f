"""Storage on SQLite and PostgreSQL: migrations, and group-committed messages that lose nothing."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.exc import IntegrityError

from widget_server.backends.storage import open_storage
from widget_server.backends.storage.connect import migrate
from widget_server.clock import now
from widget_server.ids import new_id


def _message(tenant_id: str, conversation_id: str, text: str) -> dict[str, object]:
    return {"id": new_id("msg"), "tenant_id": tenant_id, "conversation_id": conversation_id, "role": "visitor",
            "text": text, "created_at": now()}


def test_concurrent_messages_are_all_stored_and_a_bad_one_fails_alone(db_url: str) -> None:
    async def run() -> None:
        storage = await open_storage(db_url)
        await migrate(storage.engine)  # a second start-up migrates nothing and breaks nothing
        tenant_id = new_id("ten")
        await storage.create_tenant(tenant_id, "T")
        conv_ids = [new_id("conv") for _ in range(5)]
        for cid in conv_ids:
            await storage.create_conversation({"id": cid, "tenant_id": tenant_id, "persona_id": "per_x",
                                               "visitor_id": "v", "channel": "api", "status": "bot",
                                               "created_at": now(), "updated_at": now()})
        writes = [storage.add_message(_message(tenant_id, conv_ids[i % 5], f"m{i}")) for i in range(200)]
        writes.insert(100, storage.add_message(_message(tenant_id, "conv_missing", "orphan")))
        results = await asyncio.gather(*writes, return_exceptions=True)
        failures = [r for r in results if isinstance(r, BaseException)]
        assert len(failures) == 1 and isinstance(failures[0], IntegrityError)
        stored = [m for cid in conv_ids for m in await storage.list_messages(tenant_id, cid)]
        assert sorted(m["text"] for m in stored) == sorted(f"m{i}" for i in range(200))
        for cid in conv_ids:
            texts = [m["text"] for m in await storage.list_messages(tenant_id, cid)]
            assert texts == [f"m{i}" for i in range(200) if i % 5 == conv_ids.index(cid)]  # in the order written
        assert await storage.list_messages("ten_other", conv_ids[0]) == []  # tenant-scoped
        await storage.close()

    asyncio.run(run())


def test_an_unknown_database_scheme_is_refused(tmp_path) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ValueError, match="unsupported database URL scheme"):
        asyncio.run(open_storage("mysql://x"))


@pytest.fixture(params=["sqlite", "postgresql"])
def empty_db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A database with no tables yet (the session's PostgreSQL database is shared, so a new one)."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'old.db'}"
        return
    from tests.conftest import fresh_pg_database

    with fresh_pg_database() as url:
        yield url


def test_migration_0005_rewrites_persona_topics_to_the_one_schema(empty_db_url: str) -> None:
    """Persona topics an older server accepted (ids with spaces, rules without examples, never enforced) are
    rewritten to what the policy's topic schema allows, so they are enforced from now on."""
    import sqlalchemy as sa
    from alembic import command
    from alembic.config import Config
    from sqlalchemy.ext.asyncio import create_async_engine

    from widget_server.backends.storage.connect import MIGRATIONS, async_url
    from widget_server.backends.storage.tables import personas, tenants

    def upgrade_to_0004(sync_conn: sa.Connection) -> None:
        cfg = Config()
        cfg.set_main_option("script_location", str(MIGRATIONS))
        cfg.attributes["connection"] = sync_conn
        command.upgrade(cfg, "0004")

    tenant_id, persona_id = new_id("ten"), new_id("per")
    old_topics = {"allowed": [{"id": "bike repair", "description": "", "examples": ["fix my bike"]},
                              {"id": "misc", "description": "anything", "examples": []}],
                  "denied": [], "off_topic": "refuse"}

    async def run() -> Any:
        engine = create_async_engine(async_url(empty_db_url))
        async with engine.begin() as conn:
            await conn.run_sync(upgrade_to_0004)
            await conn.execute(sa.insert(tenants).values(id=tenant_id, name="T", created_at=now()))
            await conn.execute(sa.insert(personas).values(
                id=persona_id, tenant_id=tenant_id, slug="bikes", created_at=now(), updated_at=now(),
                doc={"name": "Bikes", "topics": old_topics}))
        await engine.dispose()
        storage = await open_storage(empty_db_url)  # migrates to the newest revision
        try:
            row = await storage.get_persona(tenant_id, "bikes")
            assert row is not None
            return row["doc"]["topics"]
        finally:
            await storage.close()

    assert asyncio.run(run()) == {"allowed": [{"id": "bike-repair", "description": "", "examples": ["fix my bike"]}],
                                  "denied": [], "off_topic": "refuse"}


def test_the_data_dirs_files_are_private(stack_factory: Any, tmp_path: Path) -> None:
    """The database (and its WAL), the signing secret: readable by the server's user only, whatever the umask."""
    import os
    import stat

    data = tmp_path / "fresh" / "data"
    old = os.umask(0o022)  # the usual default: new files 0644
    try:
        stack = stack_factory(data_dir=data, database_url=f"sqlite:///{data / 'widget.db'}", secret_key=None)
        stack.turn(stack.persona(), "hello")
    finally:
        os.umask(old)
    files = sorted(p for p in data.iterdir() if p.is_file())
    assert {p.name for p in files} >= {"widget.db", "widget.db-wal", "secret_key"}
    assert {p.name: stat.filemode(p.stat().st_mode) for p in files} == {p.name: "-rw-------" for p in files}
    assert stat.S_IMODE(data.stat().st_mode) == 0o700
