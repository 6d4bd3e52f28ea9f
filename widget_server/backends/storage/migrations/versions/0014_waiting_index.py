"""Every node looks for visitors waiting unclaimed every few seconds, across tenants (`escalation.wait_notice_s`):
an index on (status, escalated_at) keeps that a read of the waiting conversations, not of all of them.

Revision ID: 0014
Revises: 0013
"""

from __future__ import annotations

from alembic import op

revision = "0014"
down_revision = "0013"


def upgrade() -> None:
    op.create_index("ix_conversations_status", "conversations", ["status", "escalated_at"])


def downgrade() -> None:
    op.drop_index("ix_conversations_status", table_name="conversations")
