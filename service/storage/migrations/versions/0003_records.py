"""records of the traceable chain: witness keys, sample codes, uploads, flags,
nonconforming ledger, notifications

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

BigIntPK = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "witness_keys",
        sa.Column("key_id", sa.String(length=26), nullable=False),
        sa.Column("institution", sa.String(length=18), nullable=False),
        sa.Column("algorithm", sa.String(length=16), nullable=False),
        sa.Column("public_key", sa.LargeBinary(), nullable=False),
        sa.Column("fingerprint", sa.String(length=64), nullable=False),
        sa.Column("witness_name", sa.String(length=100), nullable=False),
        sa.Column("witness_id_number", sa.String(length=18), nullable=False),
        sa.Column("witness_unit", sa.String(length=200), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("key_id"),
        sa.UniqueConstraint("institution", "fingerprint", name="uq_witness_key_fp"),
    )
    op.create_index("ix_witness_keys_institution", "witness_keys", ["institution"])

    op.create_table(
        "sample_codes",
        sa.Column("institution", sa.String(length=18), nullable=False),
        sa.Column("sample_code", sa.String(length=64), nullable=False),
        sa.Column("record_id", sa.String(length=26), nullable=False),
        sa.ForeignKeyConstraint(["record_id"], ["records.id"]),
        sa.PrimaryKeyConstraint("institution", "sample_code"),
        sa.UniqueConstraint("record_id"),
    )

    op.create_table(
        "uploads",
        sa.Column("id", sa.String(length=26), nullable=False),
        sa.Column("institution", sa.String(length=18), nullable=False),
        sa.Column("length", sa.BigInteger(), nullable=False),
        sa.Column("media_type", sa.String(length=100), nullable=False),
        sa.Column("offset", sa.BigInteger(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=True),
        sa.Column("record_id", sa.String(length=26), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_uploads_institution", "uploads", ["institution"])

    op.create_table(
        "record_flags",
        sa.Column("id", BigIntPK, autoincrement=True, nullable=False),
        sa.Column("record_id", sa.String(length=26), nullable=False),
        sa.Column("institution", sa.String(length=18), nullable=False),
        sa.Column("record_type", sa.String(length=24), nullable=False),
        sa.Column("rule", sa.String(length=40), nullable=False),
        sa.Column("detail", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["record_id"], ["records.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_record_flags_record_id", "record_flags", ["record_id"])
    op.create_index("ix_record_flags_institution", "record_flags", ["institution"])
    op.create_index("ix_record_flags_rule", "record_flags", ["rule"])

    op.create_table(
        "nonconforming_ledger",
        sa.Column("id", BigIntPK, autoincrement=True, nullable=False),
        sa.Column("institution", sa.String(length=18), nullable=False),
        sa.Column("code", sa.String(length=32), nullable=False),
        sa.Column("report_record_id", sa.String(length=26), nullable=False),
        sa.Column("details", sa.Text(), nullable=False),
        sa.Column("notification_id", sa.String(length=26), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["report_record_id"], ["records.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("institution", "code", name="uq_nonconforming_code"),
    )
    op.create_index("ix_nonconforming_ledger_institution", "nonconforming_ledger", ["institution"])

    op.create_table(
        "notifications",
        sa.Column("id", sa.String(length=26), nullable=False),
        sa.Column("kind", sa.String(length=40), nullable=False),
        sa.Column("institution", sa.String(length=18), nullable=False),
        sa.Column("payload", sa.Text(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", sa.Double(), nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("delivered_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_notifications_institution", "notifications", ["institution"])
    op.create_index("ix_notifications_status", "notifications", ["status"])
    op.create_index("ix_notifications_next_attempt_at", "notifications", ["next_attempt_at"])


def downgrade() -> None:
    op.drop_table("notifications")
    op.drop_table("nonconforming_ledger")
    op.drop_table("record_flags")
    op.drop_table("uploads")
    op.drop_table("sample_codes")
    op.drop_table("witness_keys")
