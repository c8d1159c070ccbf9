"""lab API: report codes, numbering voids, idempotency keys, chain revocations

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-22 18:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "report_codes",
        sa.Column("code", sa.String(length=32), nullable=False),
        sa.Column("institution", sa.String(length=18), nullable=False),
        sa.Column("year", sa.Integer(), nullable=False),
        sa.Column("report_no", sa.String(length=64), nullable=False),
        sa.Column("project_record_id", sa.String(length=26), nullable=False),
        sa.Column("issued_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("issue_record_id", sa.String(length=26), nullable=False),
        sa.Column("report_record_id", sa.String(length=26), nullable=True),
        sa.Column("pdf_record_id", sa.String(length=26), nullable=True),
        sa.Column("sealed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("revocation_record_id", sa.String(length=26), nullable=True),
        sa.Column("superseded_by", sa.String(length=32), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.ForeignKeyConstraint(["institution"], ["institutions.uscc"]),
        sa.ForeignKeyConstraint(["issue_record_id"], ["records.id"]),
        sa.PrimaryKeyConstraint("code"),
        sa.UniqueConstraint(
            "institution", "year", "report_no", name="uq_report_codes_institution_year_no"
        ),
    )
    op.create_table(
        "numbering_voids",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("institution", sa.String(length=18), nullable=False),
        sa.Column("year", sa.Integer(), nullable=False),
        sa.Column("report_no", sa.String(length=64), nullable=False),
        sa.Column("code", sa.String(length=32), nullable=True),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("record_id", sa.String(length=26), nullable=False),
        sa.Column("voided_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["institution"], ["institutions.uscc"]),
        sa.ForeignKeyConstraint(["record_id"], ["records.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint(
            "institution", "year", "report_no", name="uq_numbering_voids_institution_year_no"
        ),
    )
    op.create_table(
        "idempotency_keys",
        sa.Column("scope", sa.String(length=40), nullable=False),
        sa.Column("key", sa.String(length=255), nullable=False),
        sa.Column("request_hash", sa.String(length=64), nullable=False),
        sa.Column("status_code", sa.Integer(), nullable=False),
        sa.Column("media_type", sa.String(length=100), nullable=False),
        sa.Column("response_body", sa.LargeBinary(), nullable=False),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("scope", "key"),
    )
    with op.batch_alter_table("idempotency_keys", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_idempotency_keys_created_at"), ["created_at"], unique=False
        )
    op.create_table(
        "chain_revocations",
        sa.Column("subject", sa.String(length=64), nullable=False),
        sa.Column("reason", sa.String(length=64), nullable=False),
        sa.Column("code", sa.String(length=32), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("tx_hash", sa.String(length=66), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("subject"),
    )
    with op.batch_alter_table("chain_revocations", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_chain_revocations_status"), ["status"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("chain_revocations", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_chain_revocations_status"))
    op.drop_table("chain_revocations")
    with op.batch_alter_table("idempotency_keys", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_idempotency_keys_created_at"))
    op.drop_table("idempotency_keys")
    op.drop_table("numbering_voids")
    op.drop_table("report_codes")
