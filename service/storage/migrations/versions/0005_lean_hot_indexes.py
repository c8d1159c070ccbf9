"""Leaner indexes on the hottest insert path (every signed request, every record).

- `records.type`: no query looks records up by type alone (twelve values; joins go by
  id), yet every insert paid for the index. Dropped.
- `auth_nonces.seen_at` on PostgreSQL: only the periodic purge (`seen_at < cutoff`)
  reads it, and nonces arrive in time order, so a BRIN index (a few pages, nearly free
  to maintain) serves that range delete as well as a B-tree. SQLite keeps its B-tree.

Revision ID: 0005
Revises: 0004_change_stamp
"""

from __future__ import annotations

from alembic import op

revision = "0005"
down_revision = "0004_change_stamp"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Plain DROP/CREATE INDEX (no batch table rebuild: that would drop the change-stamp
    # triggers of migration 0004 on SQLite).
    op.drop_index("ix_records_type", table_name="records")
    if op.get_bind().dialect.name == "postgresql":
        op.drop_index("ix_auth_nonces_seen_at", table_name="auth_nonces")
        op.create_index(
            "ix_auth_nonces_seen_at",
            "auth_nonces",
            ["seen_at"],
            postgresql_using="brin",
        )


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.drop_index("ix_auth_nonces_seen_at", table_name="auth_nonces")
        op.create_index("ix_auth_nonces_seen_at", "auth_nonces", ["seen_at"])
    op.create_index("ix_records_type", "records", ["type"], unique=False)
