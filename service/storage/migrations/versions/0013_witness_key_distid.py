"""SM2 witness keys may name their distinguishing ID (INTERFACE §7.7).

- `witness_keys.distinguishing_id`: the SM2 distinguishing ID the key signs with; NULL means
  the GM/T 0009 default `1234567812345678` (and is the only value for Ed25519 / P-256 keys).

Revision ID: 0013
Revises: 0010
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("witness_keys") as batch:
        batch.add_column(sa.Column("distinguishing_id", sa.String(64), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("witness_keys") as batch:
        batch.drop_column("distinguishing_id")
