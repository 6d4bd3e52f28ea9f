"""A conversation waiting unclaimed remembers when its visitor was told so (the policy's `escalation.wait_notice_s`),
so that exactly one node tells them, once per escalation.

Revision ID: 0012
Revises: 0011
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"


def upgrade() -> None:
    op.add_column("conversations", sa.Column("wait_noticed_at", sa.DateTime(timezone=True)))  # (no batch: 0011)


def downgrade() -> None:
    op.drop_column("conversations", "wait_noticed_at")
