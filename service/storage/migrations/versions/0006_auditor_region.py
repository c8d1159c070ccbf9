"""Auditors may be limited to a region (R21): `auditors.region_scope`.

An auditor of a city's supervision station sees the labs registered in that city only;
NULL keeps the platform-wide view of earlier accounts.

Revision ID: 0006
Revises: 0005
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # ADD COLUMN needs no table rebuild on SQLite (the change-stamp triggers stay).
    op.add_column("auditors", sa.Column("region_scope", sa.String(6), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("auditors") as batch:
        batch.drop_column("region_scope")
