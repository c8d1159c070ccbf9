"""The report facts table the console counts and searches (issue 14): one row per report
code and one per test item, indexed by region and issue date, institution and test item;
back-filled from the records.

Revision ID: 0018
Revises: 0017
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.orm import Session

revision = "0018"
down_revision = "0017"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "report_facts",
        sa.Column("code", sa.String(32), primary_key=True),
        sa.Column("institution", sa.String(18), nullable=False),
        sa.Column("region", sa.String(6), nullable=False),
        sa.Column("report_no", sa.String(64), nullable=False),
        sa.Column("year", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("issued_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("issued_on", sa.Date(), nullable=False),
        sa.Column("sealed", sa.Boolean(), nullable=False),
        sa.Column("revoked", sa.Boolean(), nullable=False),
        sa.Column("conclusion", sa.String(8), nullable=True),
        sa.Column("project_record_id", sa.String(26), nullable=False),
        sa.Column("project_name", sa.Text(), nullable=False),
        sa.Column("test_items", sa.Text(), nullable=False),
        sa.Column("warning_count", sa.Integer(), nullable=False),
    )
    op.create_index("ix_report_facts_region_issued_on", "report_facts", ["region", "issued_on"])
    op.create_index("ix_report_facts_issued_on_code", "report_facts", ["issued_on", "code"])
    op.create_index("ix_report_facts_institution_year", "report_facts",
                    ["institution", "year", "report_no"])
    op.create_table(
        "report_fact_items",
        sa.Column("code", sa.String(32), primary_key=True),
        sa.Column("test_item", sa.String(200), primary_key=True),
        sa.Column("institution", sa.String(18), nullable=False),
        sa.Column("region", sa.String(6), nullable=False),
        sa.Column("issued_on", sa.Date(), nullable=False),
        sa.Column("conclusion", sa.String(8), nullable=True),
    )
    op.create_index("ix_report_fact_items_item_region", "report_fact_items",
                    ["test_item", "region", "issued_on"])
    op.create_index("ix_report_fact_items_region_issued_on", "report_fact_items",
                    ["region", "issued_on"])
    # The back-fill reads the records with the service's own code (the same computation
    # every later write uses), so the table is right from the first request.
    from service.storage.report_facts import rebuild_facts

    session = Session(bind=op.get_bind())
    rebuild_facts(session)
    session.flush()


def downgrade() -> None:
    op.drop_table("report_fact_items")
    op.drop_table("report_facts")
