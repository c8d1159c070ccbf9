"""The console's count tables (`report_fact_days`, `report_fact_months`) keyed by day first:
primary key (day, region, institution, status, conclusion, test_items) instead of (region,
day, ...).

The overview's charts read a range of days (the last 30 days, 12 weeks, 12 months) of a
region given as a prefix range (`region >= '4403' AND region < '4404'`). With the region
first, no stretch of the key holds a range of days, and PostgreSQL read the whole table
(1,000,000 reports: 278,000 day rows, two parallel scans of ~44 ms each); with the day
first the days are one index range (~5 ms). Nothing else changes: the same columns and
rows, the same single index (the upserts of the triggers infer it from the same column
set), so the write path costs the same.

PostgreSQL: the key is dropped and added again in one ALTER TABLE per table (the index is
built once from the table). SQLite cannot change a primary key: each table is copied into
a new one with the new key (the rollup triggers on report_facts are dropped around it and
created again, as SQLite checks triggers when a table is renamed).

Revision ID: 0022
Revises: 0021
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0022"
down_revision = "0021"
branch_labels = None
depends_on = None

TABLES = ("report_fact_days", "report_fact_months")
OLD_KEY = ("region", "day", "institution", "status", "conclusion", "test_items")
NEW_KEY = ("day", "region", "institution", "status", "conclusion", "test_items")


def _sqlite_rekey(table: str, key: tuple[str, ...]) -> None:
    columns: dict[str, sa.Column[object]] = {
        "region": sa.Column("region", sa.String(6), nullable=False),
        "day": sa.Column("day", sa.Date(), nullable=False),
    }
    new = f"{table}_rekeyed"
    op.create_table(
        new,
        *(columns[c] for c in key[:2]),
        sa.Column("institution", sa.String(18), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("conclusion", sa.String(8), nullable=False),
        sa.Column("test_items", sa.Text(), nullable=False),
        sa.Column("n", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint(*key, name=None),
    )
    cols = ", ".join((*key, "n"))
    op.execute(f"INSERT INTO {new} ({cols}) SELECT {cols} FROM {table}")
    op.drop_table(table)
    op.rename_table(new, table)


def _rekey(key: tuple[str, ...]) -> None:
    bind = op.get_bind()
    if bind.dialect.name == "postgresql":
        for table in TABLES:
            op.execute(f"ALTER TABLE {table} DROP CONSTRAINT {table}_pkey,"
                       f" ADD CONSTRAINT {table}_pkey PRIMARY KEY ({', '.join(key)})")
        return
    from service.storage.rollups import SQLITE_DDL, SQLITE_DROP

    for statement in SQLITE_DROP:
        bind.exec_driver_sql(statement)
    for table in TABLES:
        _sqlite_rekey(table, key)
    for statement in SQLITE_DDL:
        bind.exec_driver_sql(statement)


def upgrade() -> None:
    _rekey(NEW_KEY)


def downgrade() -> None:
    _rekey(OLD_KEY)
