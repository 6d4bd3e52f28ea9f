"""The guardrail state of a conversation lives with it; persona topics follow the policy's topic schema.

- `conversations.guard_refusals` (refusals in a row, behind `escalation.after_refusals`) and `guard_previous` (the
  visitor's last turn let through, the context of a follow-up) were kept in one process's memory: they reset on a
  restart and differed between nodes.
- Persona `topics` were validated by a laxer model than the policy's: rules without examples, or with ids such as
  "bike repair", were accepted, then silently dropped at check time, so the persona's boundaries were not enforced.
  Such rules are rewritten here the way the one schema allows: an id becomes a valid id, a rule without examples
  (never enforced) is removed.

Revision ID: 0005
Revises: 0004
"""

from __future__ import annotations

import re
from typing import Any

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"

ID = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")


def upgrade() -> None:
    with op.batch_alter_table("conversations") as batch:
        batch.add_column(sa.Column("guard_refusals", sa.Integer, nullable=False, server_default="0"))
        batch.add_column(sa.Column("guard_previous", sa.Text))
    personas = sa.table("personas", sa.column("id", sa.String), sa.column("doc", sa.JSON))
    conn = op.get_bind()
    for row in conn.execute(sa.select(personas.c.id, personas.c.doc)).mappings().all():
        doc = dict(row["doc"])
        topics = doc.get("topics")
        if not isinstance(topics, dict):
            continue
        fixed = {**topics, **{side: _rules(topics.get(side) or []) for side in ("allowed", "denied")}}
        if fixed != topics:
            doc["topics"] = fixed
            conn.execute(sa.update(personas).where(personas.c.id == row["id"]).values(doc=doc))


def _rules(rules: list[Any]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    seen: set[str] = set()
    for rule in rules:
        if not isinstance(rule, dict) or not rule.get("examples"):
            continue
        rid = str(rule.get("id") or "topic")
        if not ID.match(rid):
            rid = (re.sub(r"[^A-Za-z0-9_.-]+", "-", rid).strip("-") or "topic")[:64]
        while rid in seen:
            rid = rid[:60] + "-" + str(len(seen))
        seen.add(rid)
        out.append({**rule, "id": rid})
    return out


def downgrade() -> None:
    with op.batch_alter_table("conversations") as batch:
        batch.drop_column("guard_previous")
        batch.drop_column("guard_refusals")
