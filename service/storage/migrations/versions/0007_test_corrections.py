"""One correction per test record (R10), enforced by the database: `test_corrections`.

`corrected_id` is the primary key, so of two corrections racing for the same test record
exactly one commits, on SQLite as on PostgreSQL; the other gets 409 `already_corrected`.
Corrections recorded before this migration are read back from the records' bodies.

Revision ID: 0007
Revises: 0006
"""

from __future__ import annotations

import json

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    table = op.create_table(
        "test_corrections",
        sa.Column("corrected_id", sa.String(26), sa.ForeignKey("records.id"), primary_key=True),
        sa.Column(
            "correction_id", sa.String(26), sa.ForeignKey("records.id"), nullable=False,
            unique=True,
        ),
    )
    rows = op.get_bind().execute(
        sa.text("SELECT id, canonical FROM records WHERE type = 'test_record'")
    )
    found = []
    for record_id, canonical in rows:
        corrects = (json.loads(bytes(canonical)).get("body") or {}).get("corrects")
        if isinstance(corrects, str):
            found.append({"corrected_id": corrects, "correction_id": record_id})
    if found:
        op.bulk_insert(table, found)


def downgrade() -> None:
    op.drop_table("test_corrections")
