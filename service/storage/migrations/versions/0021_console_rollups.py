"""The console's summaries (issue 14): report facts counted per day and per month (region,
lab, status, conclusion, test-item set), kept by triggers on report_facts; per lab and
numbering year the code count, each series' highest number and its gaps, kept by triggers
on report_codes and numbering_voids (PostgreSQL; SQLite: the service's own writes); an
index of unsealed codes. Back-filled from the tables they summarise.

Revision ID: 0021
Revises: 0018
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.orm import Session

revision = "0021"
down_revision = "0020"
branch_labels = None
depends_on = None


def _counts_table(name: str) -> None:
    op.create_table(
        name,
        sa.Column("region", sa.String(6), primary_key=True),
        sa.Column("day", sa.Date(), primary_key=True),
        sa.Column("institution", sa.String(18), primary_key=True),
        sa.Column("status", sa.String(16), primary_key=True),
        sa.Column("conclusion", sa.String(8), primary_key=True),
        sa.Column("test_items", sa.Text(), primary_key=True),
        sa.Column("n", sa.BigInteger(), nullable=False),
    )


def upgrade() -> None:
    _counts_table("report_fact_days")
    _counts_table("report_fact_months")
    op.create_table(
        "numbering_years",
        sa.Column("institution", sa.String(18), primary_key=True),
        sa.Column("year", sa.Integer(), primary_key=True),
        sa.Column("issued", sa.BigInteger(), nullable=False),
    )
    op.create_table(
        "numbering_series",
        sa.Column("institution", sa.String(18), primary_key=True),
        sa.Column("year", sa.Integer(), primary_key=True),
        sa.Column("prefix", sa.String(64), primary_key=True),
        sa.Column("suffix", sa.String(64), primary_key=True),
        sa.Column("last", sa.BigInteger(), nullable=False),
        sa.Column("width", sa.Integer(), nullable=False),
    )
    op.create_table(
        "numbering_gaps",
        sa.Column("institution", sa.String(18), primary_key=True),
        sa.Column("year", sa.Integer(), primary_key=True),
        sa.Column("prefix", sa.String(64), primary_key=True),
        sa.Column("suffix", sa.String(64), primary_key=True),
        sa.Column("lo", sa.BigInteger(), primary_key=True),
        sa.Column("hi", sa.BigInteger(), nullable=False),
    )
    op.create_index("ix_report_codes_unsealed", "report_codes",
                    ["year", "institution", "issued_at"],
                    postgresql_where=sa.text("sealed_at IS NULL"),
                    sqlite_where=sa.text("sealed_at IS NULL"))
    from service.storage.rollups import install, rebuild_numbering, rebuild_rollups

    bind = op.get_bind()
    install(bind)
    session = Session(bind=bind)
    rebuild_rollups(session)
    rebuild_numbering(session)
    session.flush()


def downgrade() -> None:
    from service.storage.rollups import uninstall

    uninstall(op.get_bind())
    op.drop_index("ix_report_codes_unsealed", table_name="report_codes")
    for name in ("numbering_gaps", "numbering_series", "numbering_years",
                 "report_fact_months", "report_fact_days"):
        op.drop_table(name)
