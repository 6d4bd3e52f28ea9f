"""Persona groups, their members (seed + version + overrides) and the tenant library (issue 17).

Revision ID: 0022
Revises: 0021
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0022"
down_revision = "0021"

TS = sa.DateTime(timezone=True)


def _tenant() -> sa.Column[str]:
    return sa.Column("tenant_id", sa.String(40), sa.ForeignKey("tenants.id", ondelete="CASCADE"), nullable=False)


def upgrade() -> None:
    op.create_table(
        "persona_groups",
        sa.Column("id", sa.String(40), primary_key=True), _tenant(),
        sa.Column("project_id", sa.String(64), nullable=False), sa.Column("name", sa.String(200), nullable=False),
        sa.Column("seed", sa.String(200), nullable=False),
        sa.Column("generator_version", sa.String(20), nullable=False),
        sa.Column("size", sa.Integer, nullable=False), sa.Column("filters", sa.JSON, nullable=False),
        sa.Column("created_at", TS, nullable=False),
    )
    op.create_index("ix_persona_groups_project", "persona_groups", ["tenant_id", "project_id", "id"])
    op.create_table(
        "group_personas",
        sa.Column("id", sa.String(40), primary_key=True), _tenant(),
        sa.Column("project_id", sa.String(64), nullable=False),
        sa.Column("group_id", sa.String(40), sa.ForeignKey("persona_groups.id", ondelete="CASCADE"), nullable=False),
        sa.Column("seed", sa.String(300), nullable=False), sa.Column("version", sa.String(20), nullable=False),
        sa.Column("overrides", sa.JSON, nullable=False), sa.Column("library_persona_id", sa.String(40)),
        sa.Column("created_at", TS, nullable=False),
    )
    op.create_index("ix_group_personas_group", "group_personas", ["tenant_id", "group_id", "id"])
    op.create_table(
        "library_personas",
        sa.Column("id", sa.String(40), primary_key=True), _tenant(),
        sa.Column("seed", sa.String(300), nullable=False), sa.Column("version", sa.String(20), nullable=False),
        sa.Column("overrides", sa.JSON, nullable=False), sa.Column("source", sa.JSON, nullable=False),
        sa.Column("created_at", TS, nullable=False),
    )
    op.create_index("ix_library_personas_tenant", "library_personas", ["tenant_id", "id"])


def downgrade() -> None:
    op.drop_table("library_personas")
    op.drop_table("group_personas")
    op.drop_table("persona_groups")
