"""The tables of persona groups and the tenant library (issue 17), beside `tables.py` (same metadata).

A group member and a library persona are stored as seed + generator version + overrides, never as a copy of the
generated person: what is served is computed from `generate(seed, version)`, so the generator stays the one source.
Test runs are separate rows with no foreign key here: deleting a group's personas never touches past results.
"""

from __future__ import annotations

import sqlalchemy as sa

from widget_server.backends.storage.tables import TS, metadata

persona_groups = sa.Table(
    "persona_groups",
    metadata,
    sa.Column("id", sa.String(40), primary_key=True),
    sa.Column("tenant_id", sa.String(40), sa.ForeignKey("tenants.id", ondelete="CASCADE"), nullable=False),
    sa.Column("project_id", sa.String(64), nullable=False),  # the client's own id: nothing else stores projects
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("seed", sa.String(200), nullable=False),
    sa.Column("generator_version", sa.String(20), nullable=False),
    sa.Column("size", sa.Integer, nullable=False),
    sa.Column("filters", sa.JSON, nullable=False),
    sa.Column("created_at", TS, nullable=False),
    sa.Index("ix_persona_groups_project", "tenant_id", "project_id", "id"),
)

group_personas = sa.Table(
    "group_personas",
    metadata,
    sa.Column("id", sa.String(40), primary_key=True),
    sa.Column("tenant_id", sa.String(40), sa.ForeignKey("tenants.id", ondelete="CASCADE"), nullable=False),
    sa.Column("project_id", sa.String(64), nullable=False),
    sa.Column("group_id", sa.String(40), sa.ForeignKey("persona_groups.id", ondelete="CASCADE"), nullable=False),
    sa.Column("seed", sa.String(300), nullable=False),
    sa.Column("version", sa.String(20), nullable=False),
    sa.Column("overrides", sa.JSON, nullable=False),
    sa.Column("library_persona_id", sa.String(40)),  # where it came from, when added from the library
    sa.Column("created_at", TS, nullable=False),
    sa.Index("ix_group_personas_group", "tenant_id", "group_id", "id"),
)

library_personas = sa.Table(
    "library_personas",
    metadata,
    sa.Column("id", sa.String(40), primary_key=True),
    sa.Column("tenant_id", sa.String(40), sa.ForeignKey("tenants.id", ondelete="CASCADE"), nullable=False),
    sa.Column("seed", sa.String(300), nullable=False),
    sa.Column("version", sa.String(20), nullable=False),
    sa.Column("overrides", sa.JSON, nullable=False),
    sa.Column("source", sa.JSON, nullable=False),  # project_id, group_id, persona_id it was promoted from
    sa.Column("created_at", TS, nullable=False),
    sa.Index("ix_library_personas_tenant", "tenant_id", "id"),
)
