"""The schema, as SQLAlchemy Core tables. Every row carries `tenant_id`; migrations create these."""

from __future__ import annotations

import sqlalchemy as sa

metadata = sa.MetaData()

TS = sa.DateTime(timezone=True)

tenants = sa.Table(
    "tenants",
    metadata,
    sa.Column("id", sa.String(40), primary_key=True),
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("identity_secret", sa.String(100)),  # legacy plaintext, set by hand; cleared by a rotation
    sa.Column("identity_salt", sa.String(64)),  # the identity secret is derived from the server key and this
    sa.Column("require_identity", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Column("created_at", TS, nullable=False),
)

api_keys = sa.Table(
    "api_keys",
    metadata,
    sa.Column("id", sa.String(40), primary_key=True),
    sa.Column("tenant_id", sa.String(40), sa.ForeignKey("tenants.id", ondelete="CASCADE"), nullable=False),
    sa.Column("kind", sa.String(12), nullable=False),  # secret | publishable
    sa.Column("key_hash", sa.String(64), nullable=False, unique=True),
    sa.Column("hint", sa.String(16), nullable=False),  # the first characters, to tell keys apart
    sa.Column("origins", sa.JSON, nullable=False),
    sa.Column("created_at", TS, nullable=False),
    sa.Column("revoked_at", TS),
    sa.Column("expires_at", TS),  # a rotated key works until then
    sa.Column("persona_quota", sa.Integer),  # GET /v1/persona requests a month (NULL: the server's default)
)

# GET /v1/persona requests counted per key and quota period (a period starts on the key's creation day each month).
persona_usage = sa.Table(
    "persona_usage",
    metadata,
    sa.Column("key_id", sa.String(40), sa.ForeignKey("api_keys.id", ondelete="CASCADE"), primary_key=True),
    sa.Column("period_start", TS, primary_key=True),
    sa.Column("count", sa.Integer, nullable=False),
)

personas = sa.Table(
    "personas",
    metadata,
    sa.Column("id", sa.String(40), primary_key=True),
    sa.Column("tenant_id", sa.String(40), sa.ForeignKey("tenants.id", ondelete="CASCADE"), nullable=False),
    sa.Column("slug", sa.String(64), nullable=False),
    sa.Column("doc", sa.JSON, nullable=False),  # every other field of the persona, validated by the domain
    sa.Column("created_at", TS, nullable=False),
    sa.Column("updated_at", TS, nullable=False),
    sa.UniqueConstraint("tenant_id", "slug", name="uq_personas_tenant_slug"),
)

conversations = sa.Table(
    "conversations",
    metadata,
    sa.Column("id", sa.String(40), primary_key=True),
    sa.Column("tenant_id", sa.String(40), sa.ForeignKey("tenants.id", ondelete="CASCADE"), nullable=False),
    sa.Column("persona_id", sa.String(40), nullable=False),
    sa.Column("visitor_id", sa.String(80), nullable=False),
    sa.Column("user_id", sa.String(200)),  # the verified user it belongs to (identity verification), if any
    sa.Column("channel", sa.String(12), nullable=False),
    sa.Column("status", sa.String(12), nullable=False),
    sa.Column("origin", sa.String(300)),
    sa.Column("created_at", TS, nullable=False),
    sa.Column("updated_at", TS, nullable=False),
    # The guardrail state: refusals in a row (`escalation.after_refusals`) and the visitor's last turn let through
    # (the context a follow-up is read with). Written with the turn's messages, so it holds across restarts and nodes.
    sa.Column("guard_refusals", sa.Integer, nullable=False, server_default="0"),
    sa.Column("guard_previous", sa.Text),
    # Takeover (bot → escalated → agent → bot | closed): when and why it was escalated, who holds it since when.
    sa.Column("escalated_at", TS),
    sa.Column("escalation_reason", sa.String(80)),
    sa.Column("agent_id", sa.String(80)),
    sa.Column("agent_name", sa.String(80)),
    sa.Column("claimed_at", TS),
    sa.Column("wait_noticed_at", TS),  # when the visitor waiting unclaimed was told so (once per escalation)
    # Whether the visitor's widget is connected, while a person has or is fetching the conversation (None: not
    # a widget, or not known), and when that last changed.
    sa.Column("visitor_online", sa.Boolean),
    sa.Column("visitor_seen_at", TS),
    sa.Index("ix_conversations_tenant_id", "tenant_id", "id"),
    sa.Index("ix_conversations_tenant_visitor", "tenant_id", "visitor_id"),
    sa.Index("ix_conversations_tenant_status", "tenant_id", "status", "escalated_at"),  # the inbox's queue
    sa.Index("ix_conversations_status", "status", "escalated_at"),  # every node's wait sweep, across tenants
)

messages = sa.Table(
    "messages",
    metadata,
    sa.Column("id", sa.String(40), primary_key=True),
    sa.Column("tenant_id", sa.String(40), nullable=False),
    sa.Column(
        "conversation_id", sa.String(40), sa.ForeignKey("conversations.id", ondelete="CASCADE"), nullable=False
    ),
    sa.Column("role", sa.String(10), nullable=False),
    sa.Column("text", sa.Text, nullable=False),
    sa.Column("client_id", sa.String(80)),
    sa.Column("finish_reason", sa.String(12)),
    sa.Column("guardrail", sa.JSON),
    sa.Column("usage", sa.JSON),
    sa.Column("timing", sa.JSON),
    sa.Column("created_at", TS, nullable=False),
    sa.Column("agent", sa.JSON),  # role agent: {"id", "name"} of the person who wrote it
    sa.Column("internal", sa.Boolean, nullable=False, server_default=sa.false()),  # a note only agents see
    sa.Index("ix_messages_conversation", "conversation_id", "id"),
)

feedback = sa.Table(
    "feedback",
    metadata,
    sa.Column("id", sa.String(40), primary_key=True),
    sa.Column("tenant_id", sa.String(40), nullable=False),
    sa.Column("conversation_id", sa.String(40), nullable=False),
    sa.Column("message_id", sa.String(40), sa.ForeignKey("messages.id", ondelete="CASCADE"), nullable=False),
    sa.Column("rating", sa.String(4), nullable=False),
    sa.Column("comment", sa.Text),
    sa.Column("created_at", TS, nullable=False),
    sa.UniqueConstraint("message_id", name="uq_feedback_message"),
)

policies = sa.Table(
    "policies",
    metadata,
    sa.Column("tenant_id", sa.String(40), sa.ForeignKey("tenants.id", ondelete="CASCADE"), primary_key=True),
    sa.Column("doc", sa.JSON, nullable=False),  # the validated guardrail policy
    sa.Column("updated_at", TS, nullable=False),
)

# Analytics events. `seq` orders them by commit (writers serialize their batches), so a keyset cursor over it never
# skips an event that commits later with an older `id`; AUTOINCREMENT keeps SQLite from reusing an erased `seq`.
events = sa.Table(
    "events",
    metadata,
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
    sa.Index("ix_events_tenant_seq", "tenant_id", "seq"),
    sa.Index("ix_events_tenant_ts", "tenant_id", "ts"),
    sa.Index("ix_events_tenant_visitor", "tenant_id", "visitor_id"),
    sa.Index("ix_events_tenant_conversation", "tenant_id", "conversation_id", "seq"),
    sa.Index("ix_events_tenant_type_ts", "tenant_id", "type", "ts", "seq"),  # the summary's reads of one type
    sqlite_autoincrement=True,
)

# The per-day rollup of the events (migration 0023, `rollup.py`): written in the transaction of the events it counts
# (and of their erasure and expiry), so it never disagrees with them. `persona_id` is '' for an event without one.
analytics_days = sa.Table(
    "analytics_days",
    metadata,
    sa.Column("tenant_id", sa.String(40), primary_key=True),
    sa.Column("day", sa.String(10), primary_key=True),  # the UTC day, YYYY-MM-DD
    sa.Column("persona_id", sa.String(40), primary_key=True),
    # type | rule | no-rule | tokens-in | tokens-out | ttft-bucket
    sa.Column("figure", sa.String(16), primary_key=True),
    sa.Column("item", sa.Text, primary_key=True),  # the event type, the rule, the bucket ('' for the others)
    sa.Column("n", sa.BigInteger, nullable=False),
)

# Each day's replies by their exact time to first token (a histogram with one bar per value), the bars grouped in
# buckets (`rollup.bucket`) whose counts per day are in `analytics_days`: a percentile finds its bucket from those,
# then reads the bars of that bucket only.
analytics_ttft = sa.Table(
    "analytics_ttft",
    metadata,
    sa.Column("tenant_id", sa.String(40), primary_key=True),
    sa.Column("day", sa.String(10), primary_key=True),
    sa.Column("bucket", sa.Integer, primary_key=True),
    sa.Column("ttft_ms", sa.Double, primary_key=True),
    sa.Column("persona_id", sa.String(40), primary_key=True),
    sa.Column("n", sa.BigInteger, nullable=False),
    sa.Index("ix_analytics_ttft_bucket", "tenant_id", "bucket", "ttft_ms", "day"),  # a bucket over many days
)

analytics_settings = sa.Table(
    "analytics_settings",
    metadata,
    sa.Column("tenant_id", sa.String(40), sa.ForeignKey("tenants.id", ondelete="CASCADE"), primary_key=True),
    sa.Column("retention_days", sa.Integer),  # NULL: keep until erased
    sa.Column("updated_at", TS, nullable=False),
)

webhooks = sa.Table(
    "webhooks",
    metadata,
    sa.Column("id", sa.String(40), primary_key=True),
    sa.Column("tenant_id", sa.String(40), sa.ForeignKey("tenants.id", ondelete="CASCADE"), nullable=False),
    sa.Column("url", sa.String(2000), nullable=False),
    sa.Column("event_types", sa.JSON, nullable=False),  # ["*"] or a list of event types
    sa.Column("salt", sa.String(64), nullable=False),  # the signing secret is derived from it and the server key
    sa.Column("created_at", TS, nullable=False),
    sa.Index("ix_webhooks_tenant", "tenant_id", "id"),
)

webhook_attempts = sa.Table(
    "webhook_attempts",
    metadata,
    sa.Column("id", sa.String(40), primary_key=True),
    sa.Column("tenant_id", sa.String(40), nullable=False),
    sa.Column("webhook_id", sa.String(40), sa.ForeignKey("webhooks.id", ondelete="CASCADE"), nullable=False),
    sa.Column("event_id", sa.String(40), nullable=False),
    sa.Column("event_type", sa.String(40), nullable=False),
    sa.Column("attempt", sa.Integer, nullable=False),
    sa.Column("outcome", sa.String(12), nullable=False),  # delivered | retrying | failed
    sa.Column("status_code", sa.Integer),
    sa.Column("error", sa.String(300)),
    sa.Column("duration_ms", sa.Integer, nullable=False),
    sa.Column("created_at", TS, nullable=False),
    sa.Index("ix_webhook_attempts_webhook", "tenant_id", "webhook_id", "id"),
)

# The webhook outbox: one row per (webhook, event) still to be delivered, written in the transaction that stores the
# event. A worker on any node claims due rows (`claimed_until`, a lease) and deletes a row once it is delivered or
# out of tries; the history of every try is in `webhook_attempts`.
webhook_deliveries = sa.Table(
    "webhook_deliveries",
    metadata,
    sa.Column("id", sa.String(40), primary_key=True),
    sa.Column("tenant_id", sa.String(40), nullable=False),
    sa.Column("webhook_id", sa.String(40), sa.ForeignKey("webhooks.id", ondelete="CASCADE"), nullable=False),
    sa.Column("event_id", sa.String(40), nullable=False),  # the body is rebuilt from `events` at each try
    sa.Column("event_type", sa.String(40), nullable=False),
    sa.Column("attempts", sa.Integer, nullable=False),  # tries made so far
    sa.Column("next_attempt_at", TS, nullable=False),
    sa.Column("claimed_until", TS),  # NULL: nobody is trying it now
    sa.Column("claimed_by", sa.String(40)),  # the dispatcher (node) holding the claim
    sa.Column("created_at", TS, nullable=False),
    sa.UniqueConstraint("webhook_id", "event_id", name="uq_webhook_deliveries_webhook_event"),
    sa.Index("ix_webhook_deliveries_due", "next_attempt_at"),
)

# Console users: the people of a tenant who sign in to /console. The e-mail is unique across tenants (it is what a
# person signs in with, so it names one account), stored folded to lower case. `password_hash` is scrypt's
# (`domain/console_users.py`, the parameters inside it).
console_users = sa.Table(
    "console_users",
    metadata,
    sa.Column("id", sa.String(40), primary_key=True),
    sa.Column("tenant_id", sa.String(40), sa.ForeignKey("tenants.id", ondelete="CASCADE"), nullable=False),
    sa.Column("email", sa.String(254), nullable=False, unique=True),
    sa.Column("role", sa.String(8), nullable=False),  # owner | agent | viewer
    sa.Column("display_name", sa.String(100)),
    sa.Column("password_hash", sa.String(200), nullable=False),
    sa.Column("created_at", TS, nullable=False),
    sa.Index("ix_console_users_tenant", "tenant_id", "id"),
)

# Console sessions, one per sign-in: the cookie carries the session's id, signed; the row holds only its SHA-256,
# so a copy of the database signs nobody in. Deleting the row (sign-out, the user deleted) ends the session on every
# node at once; `last_seen_at` gives the idle lifetime and `created_at` the absolute one.
console_sessions = sa.Table(
    "console_sessions",
    metadata,
    sa.Column("id_hash", sa.String(64), primary_key=True),
    sa.Column("tenant_id", sa.String(40), nullable=False),
    sa.Column("user_id", sa.String(40), sa.ForeignKey("console_users.id", ondelete="CASCADE"), nullable=False),
    sa.Column("created_at", TS, nullable=False),
    sa.Column("last_seen_at", TS, nullable=False),
    sa.Index("ix_console_sessions_user", "user_id"),
)

# Test cases saved from the console's playground: a case of the test-suite file format (`doc`), kept per persona
# until a suite runs it.
# Canned replies an agent inserts in the inbox by typing `/` and its shortcut.
canned_replies = sa.Table(
    "canned_replies",
    metadata,
    sa.Column("id", sa.String(40), primary_key=True),
    sa.Column("tenant_id", sa.String(40), sa.ForeignKey("tenants.id", ondelete="CASCADE"), nullable=False),
    sa.Column("shortcut", sa.String(40), nullable=False),
    sa.Column("text", sa.Text, nullable=False),
    sa.Column("created_at", TS, nullable=False),
    sa.UniqueConstraint("tenant_id", "shortcut", name="uq_canned_replies_shortcut"),
)

test_cases = sa.Table(
    "test_cases",
    metadata,
    sa.Column("id", sa.String(40), primary_key=True),
    sa.Column("tenant_id", sa.String(40), sa.ForeignKey("tenants.id", ondelete="CASCADE"), nullable=False),
    sa.Column("persona_id", sa.String(40), nullable=False),
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("doc", sa.JSON, nullable=False),
    sa.Column("created_by", sa.String(40)),
    sa.Column("created_at", TS, nullable=False),
    sa.Index("ix_test_cases_tenant", "tenant_id", "persona_id", "id"),
)

# Test personas: the simulated visitors a test suite's case may be driven by (issue 15). `name_key` is the name
# folded (NFKC, case folded), so that "Ada" and "ada" are one name: the constraint decides a race of two writers.
test_personas = sa.Table(
    "test_personas",
    metadata,
    sa.Column("id", sa.String(40), primary_key=True),
    sa.Column("tenant_id", sa.String(40), sa.ForeignKey("tenants.id", ondelete="CASCADE"), nullable=False),
    sa.Column("name_key", sa.String(400), nullable=False),
    sa.Column("doc", sa.JSON, nullable=False),  # every field but the id and the timestamps, validated by the domain
    sa.Column("created_at", TS, nullable=False),
    sa.Column("updated_at", TS, nullable=False),
    sa.Column("avatar_url", sa.String(500)),  # set by generate-image, not by the tenant's PUT (issue 17)
    sa.UniqueConstraint("tenant_id", "name_key", name="uq_test_personas_name"),
)

# Generated avatars (issue 17): one SVG per owner (a persona or a test persona), replaced when regenerated. The id is
# unguessable and is the public URL's (`/avatars/{id}.svg`, read without a key, as an <img> cannot send one); the
# owner pair is unique, so of two concurrent regenerations one row survives.
avatars = sa.Table(
    "avatars",
    metadata,
    sa.Column("id", sa.String(40), primary_key=True),
    sa.Column("tenant_id", sa.String(40), sa.ForeignKey("tenants.id", ondelete="CASCADE"), nullable=False),
    sa.Column("owner_kind", sa.String(20), nullable=False),  # persona | test_persona
    sa.Column("owner_id", sa.String(40), nullable=False),
    sa.Column("media_type", sa.String(40), nullable=False),  # image/svg+xml (drawn here) or image/png (opt-in upstream)
    sa.Column("data", sa.LargeBinary, nullable=False),  # the image's bytes, as served
    sa.Column("sha256", sa.String(64), nullable=False),  # of `data`: the ETag
    sa.Column("created_at", TS, nullable=False),
    sa.UniqueConstraint("tenant_id", "owner_kind", "owner_id", name="uq_avatars_owner"),
)

# A test suite run for a tenant (POST /v1/test-runs, the console's Tests page): the suite as run, its state and,
# once it ended, every case's result. `beat_at` is written while it runs: a run whose node stopped is seen stale.
test_runs = sa.Table(
    "test_runs",
    metadata,
    sa.Column("id", sa.String(40), primary_key=True),
    sa.Column("tenant_id", sa.String(40), sa.ForeignKey("tenants.id", ondelete="CASCADE"), nullable=False),
    sa.Column("suite_name", sa.String(200), nullable=False),
    sa.Column("source", sa.String(12), nullable=False),  # api | console
    sa.Column("status", sa.String(12), nullable=False),  # queued | running | passed | failed | error
    sa.Column("suite", sa.JSON, nullable=False),
    sa.Column("options", sa.JSON, nullable=False),  # repeat, only
    sa.Column("summary", sa.JSON),  # cases, passed, failed, errors
    sa.Column("result", sa.JSON),
    sa.Column("error", sa.String(500)),
    sa.Column("created_by", sa.String(40)),
    sa.Column("created_at", TS, nullable=False),
    sa.Column("started_at", TS),
    sa.Column("finished_at", TS),
    sa.Column("beat_at", TS),
    sa.Index("ix_test_runs_tenant", "tenant_id", "created_at"),
)

# `Idempotency-Key` of a POST (issue 16), per tenant: the key hashed (any 1–255 characters fit), the request's
# fingerprint (method, path, query and body hashed), and once it ran, its answer (sealed: a new key's secret is
# in one). A row `running` is a request in flight on some node; a row past `expires_at` counts as absent.
idempotency_keys = sa.Table(
    "idempotency_keys",
    metadata,
    sa.Column("tenant_id", sa.String(40), sa.ForeignKey("tenants.id", ondelete="CASCADE"), primary_key=True),
    sa.Column("key_hash", sa.String(64), primary_key=True),
    sa.Column("fingerprint", sa.String(64), nullable=False),
    sa.Column("state", sa.String(8), nullable=False),  # running | done
    sa.Column("response", sa.Text),
    sa.Column("created_at", TS, nullable=False),
    sa.Column("expires_at", TS, nullable=False),
    sa.Index("ix_idempotency_keys_expires", "expires_at"),
)
