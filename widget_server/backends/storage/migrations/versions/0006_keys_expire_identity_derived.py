"""Keys that expire (a rotated key keeps working for a grace period) and identity secrets that are not stored.

- `api_keys.expires_at`: set when a key is rotated; the old key stops working then (`revoked_at` stops it now).
- `tenants.identity_salt`: the identity secret is derived from the server's secret key and this salt, like webhook
  secrets, so a copy of the database reveals none. A plaintext `identity_secret` set by hand before this
  revision keeps working until the tenant rotates it, which clears it.
- `conversations.user_id`: the verified user a widget conversation belongs to; only that user resumes it.

Revision ID: 0006
Revises: 0005
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"


def upgrade() -> None:
    with op.batch_alter_table("api_keys") as batch:
        batch.add_column(sa.Column("expires_at", sa.DateTime(timezone=True)))
    with op.batch_alter_table("tenants") as batch:
        batch.add_column(sa.Column("identity_salt", sa.String(64)))
    with op.batch_alter_table("conversations") as batch:
        batch.add_column(sa.Column("user_id", sa.String(200)))


def downgrade() -> None:
    with op.batch_alter_table("conversations") as batch:
        batch.drop_column("user_id")
    with op.batch_alter_table("tenants") as batch:
        batch.drop_column("identity_salt")
    with op.batch_alter_table("api_keys") as batch:
        batch.drop_column("expires_at")
