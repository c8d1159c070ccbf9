"""Warnings of each report (INTERFACE §7.2), kept for the auditors' and agencies' lists.

A report's warnings follow from its anchored records (its history, and the flags in the
bodies of the records it rests on); `report_warnings` holds them as computed when the
report's latest record was written, one row per warning, so `GET /api/v1/audit/warnings`
can filter by region, institution, code and date without re-reading every report.

Revision ID: 0008
Revises: 0007
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

BIGINT = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "report_warnings",
        sa.Column("id", BIGINT, primary_key=True, autoincrement=True),
        sa.Column("report_code", sa.String(32), nullable=False),
        sa.Column("institution", sa.String(18), nullable=False),
        sa.Column("region", sa.String(6), nullable=False),
        sa.Column("code", sa.String(40), nullable=False),
        sa.Column("record_id", sa.String(26), nullable=True),
        sa.Column("detail", sa.Text(), nullable=False),
        sa.Column("report_record_id", sa.String(26), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_report_warnings_report_code", "report_warnings", ["report_code"])
    op.create_index(
        "ix_report_warnings_region_created", "report_warnings", ["region", "created_at"]
    )
    op.create_index("ix_report_warnings_institution", "report_warnings", ["institution"])
    op.create_index("ix_report_warnings_code", "report_warnings", ["code"])


def downgrade() -> None:
    op.drop_table("report_warnings")
