"""Test runs: a suite run in the background for a tenant, stored with its results (issue 15).

Revision ID: 0017
Revises: 0016
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0017"
down_revision = "0016"
TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "test_runs",
        sa.Column("id", sa.String(40), primary_key=True),
        sa.Column("tenant_id", sa.String(40), sa.ForeignKey("tenants.id", ondelete="CASCADE"), nullable=False),
        sa.Column("suite_name", sa.String(200), nullable=False),
        sa.Column("source", sa.String(12), nullable=False),
        sa.Column("status", sa.String(12), nullable=False),
        sa.Column("suite", sa.JSON, nullable=False),
        sa.Column("options", sa.JSON, nullable=False),
        sa.Column("summary", sa.JSON),
        sa.Column("result", sa.JSON),
        sa.Column("error", sa.String(500)),
        sa.Column("created_by", sa.String(40)),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("started_at", TS),
        sa.Column("finished_at", TS),
        sa.Column("beat_at", TS),
    )
    op.create_index("ix_test_runs_tenant", "test_runs", ["tenant_id", "created_at"])


def downgrade() -> None:
    op.drop_index("ix_test_runs_tenant", table_name="test_runs")
    op.drop_table("test_runs")
