"""Async prompt jobs: a prompt run in the background, stored so that a restart or a crash loses none (issue 16).

Revision ID: 0018
Revises: 0017
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0018"
down_revision = "0017"
TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "prompt_jobs",
        sa.Column("id", sa.String(40), primary_key=True),
        sa.Column("tenant_id", sa.String(40), sa.ForeignKey("tenants.id", ondelete="CASCADE"), nullable=False),
        sa.Column("persona_id", sa.String(40), nullable=False),
        sa.Column("conversation_id", sa.String(40)),
        sa.Column("request", sa.JSON, nullable=False),
        sa.Column("request_id", sa.String(40), nullable=False),
        sa.Column("status", sa.String(12), nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
        sa.Column("claimed_by", sa.String(40)),
        sa.Column("lease_until", TS),
        sa.Column("cancel_requested", sa.Boolean, nullable=False, server_default=sa.false()),
        sa.Column("result", sa.JSON),
        sa.Column("error", sa.JSON),
        sa.Column("callback_url", sa.String(2000)),
        sa.Column("callback_salt", sa.String(64)),
        sa.Column("callback_state", sa.String(12)),
        sa.Column("callback_attempts", sa.Integer, nullable=False, server_default="0"),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("started_at", TS),
        sa.Column("finished_at", TS),
    )
    op.create_index("ix_prompt_jobs_tenant", "prompt_jobs", ["tenant_id", "id"])
    op.create_index("ix_prompt_jobs_status", "prompt_jobs", ["status", "lease_until"])


def downgrade() -> None:
    op.drop_index("ix_prompt_jobs_status", table_name="prompt_jobs")
    op.drop_index("ix_prompt_jobs_tenant", table_name="prompt_jobs")
    op.drop_table("prompt_jobs")
