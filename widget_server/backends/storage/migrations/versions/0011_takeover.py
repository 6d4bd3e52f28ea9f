"""Human takeover: a conversation remembers when and why it was escalated and which agent holds it; a message
remembers the agent who wrote it and whether it is an internal note (never shown to the visitor).

Revision ID: 0011
Revises: 0010
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

TS = sa.DateTime(timezone=True)

revision = "0011"
down_revision = "0010"


def upgrade() -> None:
    # Plain ADD COLUMN, never a batch: on SQLite a batch may copy the table, which would drop the full-text
    # search triggers on `messages` (migration 0009).
    for column in (sa.Column("escalated_at", TS), sa.Column("escalation_reason", sa.String(80)),
                   sa.Column("agent_id", sa.String(80)), sa.Column("agent_name", sa.String(80)),
                   sa.Column("claimed_at", TS)):
        op.add_column("conversations", column)
    op.create_index("ix_conversations_tenant_status", "conversations", ["tenant_id", "status", "escalated_at"])
    op.add_column("messages", sa.Column("agent", sa.JSON))
    op.add_column("messages", sa.Column("internal", sa.Boolean, nullable=False, server_default=sa.false()))
    # Conversations escalated before this revision wait in the queue since they were last changed.
    conversations = sa.table("conversations", sa.column("status", sa.String), sa.column("updated_at", TS),
                             sa.column("escalated_at", TS))
    op.execute(sa.update(conversations).where(conversations.c.status == "escalated")
               .values(escalated_at=conversations.c.updated_at))


def downgrade() -> None:
    op.drop_column("messages", "internal")  # (SQLite 3.35+ drops a column in place)
    op.drop_column("messages", "agent")
    op.drop_index("ix_conversations_tenant_status", table_name="conversations")
    for column in ("claimed_at", "agent_name", "agent_id", "escalation_reason", "escalated_at"):
        op.drop_column("conversations", column)
