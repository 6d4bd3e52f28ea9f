"""Key quotas: a monthly GET /v1/persona quota per API key, and its usage per period (issue 17).

Revision ID: 0020
Revises: 0017
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0020"
down_revision = "0019"
TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    with op.batch_alter_table("api_keys") as batch:
        batch.add_column(sa.Column("persona_quota", sa.Integer))
    op.create_table(
        "persona_usage",
        sa.Column("key_id", sa.String(40), sa.ForeignKey("api_keys.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("period_start", TS, primary_key=True),
        sa.Column("count", sa.Integer, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("persona_usage")
    with op.batch_alter_table("api_keys") as batch:
        batch.drop_column("persona_quota")
