"""Full-text search over message text, kept by the database itself as messages are written and deleted.

SQLite: a contentless FTS5 index (`message_search`, columns `tenant` and `body`) kept by triggers on `messages`,
so every path that writes or deletes a message (the group commit, erasure, retention, a conversation's or a
tenant's cascade) keeps it right without knowing of it. Its rowids come from `message_search_docs`, whose
INTEGER PRIMARY KEY is stable: `messages` has a text primary key, and the implicit rowid of such a table may
change on VACUUM, which would silently point the index at other messages. The docs' ids grow with insertion, so
"newest first" is the index's own order. `tenant` holds one token per tenant (`t` + the hex of its id) that every
query requires: a query of one tenant cannot match another's messages. `conversation` holds one per conversation
(`c` + hex), so that "the newest match in each of these conversations" is one more query on the index rather than
one per message (measured: 160 ms for 25 conversations that way, at 50,000 messages).

Tokenizer `unicode61 remove_diacritics 2`: the product speaks English, German, Spanish, French, Italian,
Portuguese and Dutch, all split on spaces and punctuation; no stemmer fits seven languages at once (a message's
language is not stored), and folding diacritics lets "cafe" find "café" and "muller" find "Müller".
`columnsize=0`: results are ordered by recency, not by bm25, so the per-row sizes bm25 needs are not kept.

PostgreSQL: a stored generated column `search` = `to_tsvector('simple', text)` with a GIN index over it, kept by
PostgreSQL on every insert and delete, cascades included. Stored rather than an expression index, although it
costs a table rewrite here and the vectors' room on disk: the GIN index has no word positions, so a phrase is
rechecked on every row holding all its words, and recomputing the vector of each was the slowest part of a search
(a phrase of two common words, 1,000,000 messages: 560 ms a page). 'simple' folds case and neither stems nor drops
stop words, for the same reason as above; it keeps diacritics (unaccent is an extension this project does not
require).

Revision ID: 0009
Revises: 0008
"""

from __future__ import annotations

from alembic import op

revision = "0009"
down_revision = "0008"

KEYS = "'t' || lower(hex({0}.tenant_id)), 'c' || lower(hex({0}.conversation_id))"
SQLITE_UP = [
    "CREATE TABLE message_search_docs (doc_id INTEGER PRIMARY KEY, message_id VARCHAR(40) NOT NULL UNIQUE)",
    "CREATE VIRTUAL TABLE message_search USING fts5(tenant, conversation, body, content='', columnsize=0, "
    "tokenize='unicode61 remove_diacritics 2')",
    "INSERT INTO message_search_docs (message_id) SELECT id FROM messages ORDER BY id",
    "INSERT INTO message_search (rowid, tenant, conversation, body) SELECT d.doc_id, " + KEYS.format("m") +
    ", m.text FROM message_search_docs d JOIN messages m ON m.id = d.message_id",
    f"""CREATE TRIGGER message_search_insert AFTER INSERT ON messages BEGIN
        INSERT INTO message_search_docs (message_id) VALUES (new.id);
        INSERT INTO message_search (rowid, tenant, conversation, body)
            SELECT doc_id, {KEYS.format("new")}, new.text FROM message_search_docs WHERE message_id = new.id;
    END""",
    # A contentless index forgets a row only when told the values it indexed: the deleted row's own.
    f"""CREATE TRIGGER message_search_delete AFTER DELETE ON messages BEGIN
        INSERT INTO message_search (message_search, rowid, tenant, conversation, body)
            SELECT 'delete', doc_id, {KEYS.format("old")}, old.text FROM message_search_docs
            WHERE message_id = old.id;
        DELETE FROM message_search_docs WHERE message_id = old.id;
    END""",
    f"""CREATE TRIGGER message_search_update AFTER UPDATE OF id, tenant_id, conversation_id, text ON messages BEGIN
        INSERT INTO message_search (message_search, rowid, tenant, conversation, body)
            SELECT 'delete', doc_id, {KEYS.format("old")}, old.text FROM message_search_docs
            WHERE message_id = old.id;
        UPDATE message_search_docs SET message_id = new.id WHERE message_id = old.id;
        INSERT INTO message_search (rowid, tenant, conversation, body)
            SELECT doc_id, {KEYS.format("new")}, new.text FROM message_search_docs WHERE message_id = new.id;
    END""",
]
SQLITE_DOWN = ["DROP TRIGGER message_search_update", "DROP TRIGGER message_search_delete",
               "DROP TRIGGER message_search_insert", "DROP TABLE message_search", "DROP TABLE message_search_docs"]
POSTGRES_UP = [
    "ALTER TABLE messages ADD COLUMN search tsvector GENERATED ALWAYS AS (to_tsvector('simple'::regconfig, text)) "
    "STORED",
    "CREATE INDEX ix_messages_search ON messages USING gin (search)",
]
POSTGRES_DOWN = ["DROP INDEX ix_messages_search", "ALTER TABLE messages DROP COLUMN search"]


def _run(sqlite: list[str], postgres: list[str]) -> None:
    for statement in sqlite if op.get_bind().dialect.name == "sqlite" else postgres:
        op.execute(statement)


def upgrade() -> None:
    _run(SQLITE_UP, POSTGRES_UP)


def downgrade() -> None:
    _run(SQLITE_DOWN, POSTGRES_DOWN)
