"""PostgreSQL: a tenant's messages newest first, from an index (search reads them in windows, `fulltext.py`).

Without it the window of a tenant's newest messages was read down the primary key, every tenant's messages
interleaved, or, for a tenant with few messages, by a scan of the whole table and a sort: a tenant with 2,000 of
1,000,000 messages took 200 ms a window (search mix p95 800 ms). SQLite searches its FTS5 index, which carries
the tenant's token, and does not need it.

Revision ID: 0010
Revises: 0009
"""

from __future__ import annotations

from alembic import op

revision = "0010"
down_revision = "0009"


def upgrade() -> None:
    if op.get_bind().dialect.name != "sqlite":
        op.create_index("ix_messages_tenant", "messages", ["tenant_id", "id"])


def downgrade() -> None:
    if op.get_bind().dialect.name != "sqlite":
        op.drop_index("ix_messages_tenant", table_name="messages")
