"""Registry proposals and the agency a notification is for (issue 13).

- `registry_proposals`: a staff, device or qualification entry a lab proposed, pending
  until the supervision agency of its region approves it (its `registry` record) or
  rejects it;
- `notifications.agency_region`: the region of the supervision agency a notification is
  for (the payload's `agency_region`), so an agency lists its own; back-filled.

Revision ID: 0019
Revises: 0018
"""

from __future__ import annotations

import json

import sqlalchemy as sa
from alembic import op

revision = "0019"
down_revision = "0018"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "registry_proposals",
        sa.Column("id", sa.String(26), primary_key=True),
        sa.Column("institution", sa.String(18), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("entry", sa.Text(), nullable=False),
        sa.Column("proposed_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("decided_by", sa.String(26), nullable=True),
        sa.Column("decided_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("record_id", sa.String(26), sa.ForeignKey("records.id"), nullable=True),
    )
    op.create_index("ix_registry_proposals_institution", "registry_proposals", ["institution"])
    op.create_index("ix_registry_proposals_status", "registry_proposals", ["status"])
    with op.batch_alter_table("notifications") as batch:
        batch.add_column(sa.Column("agency_region", sa.String(6), nullable=True))
    op.create_index("ix_notifications_agency_region", "notifications", ["agency_region"])
    bind = op.get_bind()
    rows = bind.execute(sa.text("SELECT id, payload FROM notifications")).all()
    for notification_id, payload in rows:
        try:
            region = json.loads(payload).get("agency_region")
        except (ValueError, AttributeError):
            region = None
        if isinstance(region, str) and len(region) == 6:
            bind.execute(
                sa.text("UPDATE notifications SET agency_region = :r WHERE id = :i"),
                {"r": region, "i": notification_id},
            )


def downgrade() -> None:
    op.drop_index("ix_notifications_agency_region", table_name="notifications")
    with op.batch_alter_table("notifications") as batch:
        batch.drop_column("agency_region")
    op.drop_index("ix_registry_proposals_status", table_name="registry_proposals")
    op.drop_index("ix_registry_proposals_institution", table_name="registry_proposals")
    op.drop_table("registry_proposals")
