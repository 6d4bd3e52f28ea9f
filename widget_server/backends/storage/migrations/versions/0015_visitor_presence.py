"""A conversation a person has (or is fetching) remembers whether its visitor's widget is connected and when it
was last seen, so that the inbox shows who is still there on any node.

Revision ID: 0015
Revises: 0014
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0015"
down_revision = "0014"


def upgrade() -> None:
    op.add_column("conversations", sa.Column("visitor_online", sa.Boolean()))  # (no batch: 0011)
    op.add_column("conversations", sa.Column("visitor_seen_at", sa.DateTime(timezone=True)))


def downgrade() -> None:
    op.drop_column("conversations", "visitor_seen_at")
    op.drop_column("conversations", "visitor_online")
