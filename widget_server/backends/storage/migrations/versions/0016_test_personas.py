"""Test personas: the simulated visitors of test suites (issue 15), one name per tenant (folded, so the database
refuses "Ada" beside "ada" whichever writer comes second).

Revision ID: 0016
Revises: 0015
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0016"
down_revision = "0015"


def upgrade() -> None:
    op.create_table(
        "test_personas",
        sa.Column("id", sa.String(40), primary_key=True),
        sa.Column("tenant_id", sa.String(40), sa.ForeignKey("tenants.id", ondelete="CASCADE"), nullable=False),
        sa.Column("name_key", sa.String(400), nullable=False),
        sa.Column("doc", sa.JSON, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.UniqueConstraint("tenant_id", "name_key", name="uq_test_personas_name"),
    )


def downgrade() -> None:
    op.drop_table("test_personas")
