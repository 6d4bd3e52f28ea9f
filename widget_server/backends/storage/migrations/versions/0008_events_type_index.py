"""Events by type within a time range: the summary's and the dashboard's queries read one or two types of event of a
few days (the replies' time to first token, the guardrail triggers, the ratings); with only (tenant_id, ts) each
read every event of those days and looked each row up. `seq` is in the key so that counts per type are read from
the index alone (on SQLite it is the rowid, there anyway). bench/console.py has the figures.

Revision ID: 0008
Revises: 0007
"""

from __future__ import annotations

from alembic import op

revision = "0008"
down_revision = "0007"


def upgrade() -> None:
    op.create_index("ix_events_tenant_type_ts", "events", ["tenant_id", "type", "ts", "seq"])


def downgrade() -> None:
    op.drop_index("ix_events_tenant_type_ts", table_name="events")
