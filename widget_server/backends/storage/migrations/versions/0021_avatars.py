"""Generated avatars (issue 17): one stored SVG per persona or test persona, and the test persona's `avatar_url`.

Revision ID: 0021
Revises: 0017
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0021"
down_revision = "0020"


def upgrade() -> None:
    op.create_table(
        "avatars",
        sa.Column("id", sa.String(40), primary_key=True),
        sa.Column("tenant_id", sa.String(40), sa.ForeignKey("tenants.id", ondelete="CASCADE"), nullable=False),
        sa.Column("owner_kind", sa.String(20), nullable=False),
        sa.Column("owner_id", sa.String(40), nullable=False),
        sa.Column("media_type", sa.String(40), nullable=False),
        sa.Column("data", sa.LargeBinary, nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.UniqueConstraint("tenant_id", "owner_kind", "owner_id", name="uq_avatars_owner"),
    )
    with op.batch_alter_table("test_personas") as batch:
        batch.add_column(sa.Column("avatar_url", sa.String(500)))


def downgrade() -> None:
    with op.batch_alter_table("test_personas") as batch:
        batch.drop_column("avatar_url")
    op.drop_table("avatars")
