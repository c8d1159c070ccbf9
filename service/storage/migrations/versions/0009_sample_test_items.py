"""The first test record of each sample and test item (R23): `sample_test_items`.

A second test record of a sample for the same test item must correct the latest one or
give a `retest_reason`; the primary key (sample, test item) settles two first records
racing, on SQLite as on PostgreSQL. Test records written before this migration are read
back from the records (the earliest of each pair is kept).

Revision ID: 0009
Revises: 0008
"""

from __future__ import annotations

import json

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    table = op.create_table(
        "sample_test_items",
        sa.Column("sample_id", sa.String(26), sa.ForeignKey("records.id"), primary_key=True),
        sa.Column("test_item", sa.String(200), primary_key=True),
        sa.Column("record_id", sa.String(26), sa.ForeignKey("records.id"), nullable=False),
    )
    bind = op.get_bind()
    rows = bind.execute(
        sa.text(
            "SELECT r.id, r.canonical, p.parent_id FROM records r"
            " JOIN record_parents p ON p.child_id = r.id"
            " JOIN records s ON s.id = p.parent_id AND s.type = 'sample'"
            " WHERE r.type = 'test_record' ORDER BY r.created_at, r.id"
        )
    )
    seen: dict[tuple[str, str], str] = {}
    for record_id, canonical, sample_id in rows:
        item = (json.loads(bytes(canonical)).get("body") or {}).get("test_item")
        if isinstance(item, str):
            seen.setdefault((sample_id, item[:200]), record_id)
    if seen:
        op.bulk_insert(
            table,
            [{"sample_id": s, "test_item": i, "record_id": r} for (s, i), r in seen.items()],
        )


def downgrade() -> None:
    op.drop_table("sample_test_items")
