"""Storage on SQLite and PostgreSQL: migrations, and group-committed messages that lose nothing."""

from __future__ import annotations

import asyncio

import pytest
from sqlalchemy.exc import IntegrityError

from widget_server.backends.storage import open_storage
from widget_server.backends.storage.engine import now
from widget_server.ids import new_id


def _message(tenant_id: str, conversation_id: str, text: str) -> dict[str, object]:
    return {"id": new_id("msg"), "tenant_id": tenant_id, "conversation_id": conversation_id, "role": "visitor",
            "text": text, "created_at": now()}


def test_concurrent_messages_are_all_stored_and_a_bad_one_fails_alone(db_url: str) -> None:
    async def run() -> None:
        storage = await open_storage(db_url)
        await storage.migrate()  # a second start-up migrates nothing and breaks nothing
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
