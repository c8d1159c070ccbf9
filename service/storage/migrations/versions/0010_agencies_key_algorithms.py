"""Supervision-agency accounts and API key facts (version 1.1).

- `auditors.kind`: `auditor` (reads) or `agency` (a supervision agency, 监督机构: reads its
  region like an auditor and writes the registry of its region; INTERFACE §7.8);
- `api_keys.algorithm`: `hmac-sha256` (INTERFACE §5.1) or `hmac-sm3` (§7.7);
- `api_keys.expires_at`: a key may carry an expiry, after which it signs nothing.

Revision ID: 0010
Revises: 0009
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("auditors") as batch:
        batch.add_column(
            sa.Column("kind", sa.String(16), nullable=False, server_default="auditor")
        )
    with op.batch_alter_table("api_keys") as batch:
        batch.add_column(
            sa.Column("algorithm", sa.String(16), nullable=False, server_default="hmac-sha256")
        )
        batch.add_column(sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("api_keys") as batch:
        batch.drop_column("expires_at")
        batch.drop_column("algorithm")
    with op.batch_alter_table("auditors") as batch:
        batch.drop_column("kind")
