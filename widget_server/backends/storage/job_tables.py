"""The table of async prompt jobs (issue 16), beside `tables.py` (same metadata) to keep that module readable.

A job is claimed by a conditional UPDATE (its status and its lease in the WHERE clause), so that on several nodes
each job runs once; the node running it renews `lease_until`, and a job whose lease lapsed (its node died) is
claimed again by whichever node looks next, at most `MAX_ATTEMPTS` times in all (domain/prompt_jobs/worker.py).
"""

from __future__ import annotations

import sqlalchemy as sa

from widget_server.backends.storage.tables import TS, metadata

prompt_jobs = sa.Table(
    "prompt_jobs",
    metadata,
    sa.Column("id", sa.String(40), primary_key=True),
    sa.Column("tenant_id", sa.String(40), sa.ForeignKey("tenants.id", ondelete="CASCADE"), nullable=False),
    sa.Column("persona_id", sa.String(40), nullable=False),
    sa.Column("conversation_id", sa.String(40)),  # named by the body, or the one the first run opened
    sa.Column("request", sa.JSON, nullable=False),  # message, visitor_id: the body of POST …/prompt
    sa.Column("request_id", sa.String(40), nullable=False),  # the request that made it (in an error body)
    sa.Column("status", sa.String(12), nullable=False),  # queued | running | succeeded | failed | cancelled
    sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),  # runs started (a retry counts)
    sa.Column("claimed_by", sa.String(40)),  # the node running it (or delivering its callback)
    sa.Column("lease_until", TS),  # the claim holds until then; renewed while it runs
    sa.Column("cancel_requested", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Column("result", sa.JSON),  # succeeded (or cancelled mid-reply): the body POST …/prompt answers
    sa.Column("error", sa.JSON),  # failed: the error body of DESIGN.md
    sa.Column("callback_url", sa.String(2000)),
    sa.Column("callback_salt", sa.String(64)),  # the callback's signing secret is derived from it and the server key
    sa.Column("callback_state", sa.String(12)),  # pending | delivered | failed (NULL: no callback)
    sa.Column("callback_attempts", sa.Integer, nullable=False, server_default="0"),
    sa.Column("created_at", TS, nullable=False),
    sa.Column("started_at", TS),
    sa.Column("finished_at", TS),
    sa.Index("ix_prompt_jobs_tenant", "tenant_id", "id"),
    sa.Index("ix_prompt_jobs_status", "status", "lease_until"),  # every node's poll, across tenants
)
