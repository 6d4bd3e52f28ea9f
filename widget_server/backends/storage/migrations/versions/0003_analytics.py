"""Analytics: events, per-tenant retention, webhooks and their delivery attempts.

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "events",
        sa.Column("seq", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True, autoincrement=True),
        sa.Column("id", sa.String(40), nullable=False, unique=True),
        sa.Column("ts", TS, nullable=False),
        sa.Column("tenant_id", sa.String(40), nullable=False),
        sa.Column("persona_id", sa.String(40)),
        sa.Column("conversation_id", sa.String(40)),
        sa.Column("visitor_id", sa.String(80)),
        sa.Column("channel", sa.String(12)),
        sa.Column("type", sa.String(40), nullable=False),
        sa.Column("schema_version", sa.SmallInteger, nullable=False),
        sa.Column("attributes", sa.JSON, nullable=False),
        sqlite_autoincrement=True,
    )
    op.create_index("ix_events_tenant_seq", "events", ["tenant_id", "seq"])
    op.create_index("ix_events_tenant_ts", "events", ["tenant_id", "ts"])
    op.create_index("ix_events_tenant_visitor", "events", ["tenant_id", "visitor_id"])
    op.create_index("ix_events_tenant_conversation", "events", ["tenant_id", "conversation_id", "seq"])
    op.create_index("ix_conversations_tenant_visitor", "conversations", ["tenant_id", "visitor_id"])
    op.create_table(
        "analytics_settings",
        sa.Column("tenant_id", sa.String(40), sa.ForeignKey("tenants.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("retention_days", sa.Integer),
        sa.Column("updated_at", TS, nullable=False),
    )
    op.create_table(
        "webhooks",
        sa.Column("id", sa.String(40), primary_key=True),
        sa.Column("tenant_id", sa.String(40), sa.ForeignKey("tenants.id", ondelete="CASCADE"), nullable=False),
        sa.Column("url", sa.String(2000), nullable=False),
        sa.Column("event_types", sa.JSON, nullable=False),
        sa.Column("salt", sa.String(64), nullable=False),
        sa.Column("created_at", TS, nullable=False),
    )
    op.create_index("ix_webhooks_tenant", "webhooks", ["tenant_id", "id"])
    op.create_table(
        "webhook_attempts",
        sa.Column("id", sa.String(40), primary_key=True),
        sa.Column("tenant_id", sa.String(40), nullable=False),
        sa.Column("webhook_id", sa.String(40), sa.ForeignKey("webhooks.id", ondelete="CASCADE"), nullable=False),
        sa.Column("event_id", sa.String(40), nullable=False),
        sa.Column("event_type", sa.String(40), nullable=False),
        sa.Column("attempt", sa.Integer, nullable=False),
        sa.Column("outcome", sa.String(12), nullable=False),
        sa.Column("status_code", sa.Integer),
        sa.Column("error", sa.String(300)),
        sa.Column("duration_ms", sa.Integer, nullable=False),
        sa.Column("created_at", TS, nullable=False),
    )
    op.create_index("ix_webhook_attempts_webhook", "webhook_attempts", ["tenant_id", "webhook_id", "id"])


def downgrade() -> None:
    op.drop_table("webhook_attempts")
    op.drop_table("webhooks")
    op.drop_table("analytics_settings")
    op.drop_index("ix_conversations_tenant_visitor", "conversations")
    op.drop_table("events")
