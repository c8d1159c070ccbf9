"""Agency-verified witnesses and samplers (issue 13, INTERFACE §7.2 `witness_unverified`).

`witness_keys` gains what a supervision agency vouched for: the person's role (`witness`
见证人员 or `sampler` 取样人员), who verified the key and when, the `registry` evidence
record of that verification (a seal or witness record the key signs names it as a parent)
and the X.509 certificate the platform CA issued for the key (DER).

`registry_devices`: the equipment (检测设备) the agency registered for a lab, with its
calibration/verification (检定/校准) validity, as of the latest `registry` record of kind
`device` for it; test records naming a device are checked against it.

Revision ID: 0015
Revises: 0014
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("witness_keys") as batch:
        batch.add_column(
            sa.Column("role", sa.String(16), nullable=False, server_default="witness")
        )
        batch.add_column(sa.Column("verified_by", sa.String(26), nullable=True))
        batch.add_column(sa.Column("verified_at", sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("registry_record_id", sa.String(26), nullable=True))
        batch.add_column(sa.Column("certificate", sa.LargeBinary(), nullable=True))
    op.create_table(
        "registry_devices",
        sa.Column("institution", sa.String(18), primary_key=True),
        sa.Column("device_id", sa.String(64), primary_key=True),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("record_id", sa.String(26), sa.ForeignKey("records.id"), nullable=False),
        sa.Column("valid_until", sa.Date(), nullable=False),
    )
    op.create_table(
        "registry_staff",
        sa.Column("institution", sa.String(18), primary_key=True),
        sa.Column("name", sa.String(100), primary_key=True),
        sa.Column("record_id", sa.String(26), sa.ForeignKey("records.id"), nullable=False),
        sa.Column("roles", sa.String(64), nullable=False),
        sa.Column("signing_scope", sa.Text(), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("registry_staff")
    op.drop_table("registry_devices")
    with op.batch_alter_table("witness_keys") as batch:
        batch.drop_column("certificate")
        batch.drop_column("registry_record_id")
        batch.drop_column("verified_at")
        batch.drop_column("verified_by")
        batch.drop_column("role")
