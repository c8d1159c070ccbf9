"""core evidence schema

Revision ID: 0001
Revises:
Create Date: 2026-11-22 17:44:59.963050
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "auditors",
        sa.Column("id", sa.String(length=26), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_table(
        "auth_nonces",
        sa.Column("key_id", sa.String(length=40), nullable=False),
        sa.Column("nonce", sa.String(length=64), nullable=False),
        sa.Column("seen_at", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("key_id", "nonce"),
    )
    with op.batch_alter_table("auth_nonces", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_auth_nonces_seen_at"), ["seen_at"], unique=False)

    op.create_table(
        "batches",
        sa.Column(
            "seq",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=False,
            nullable=False,
        ),
        sa.Column("root", sa.String(length=64), nullable=False),
        sa.Column("size", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("created_at", sa.Double(), nullable=False),
        sa.Column("oldest_enqueued_at", sa.Double(), nullable=False),
        sa.Column("chain_id", sa.BigInteger(), nullable=True),
        sa.Column("registry_address", sa.String(length=42), nullable=True),
        sa.Column("raw_tx", sa.LargeBinary(), nullable=True),
        sa.Column("tx_hash", sa.String(length=66), nullable=True),
        sa.Column("tx_nonce", sa.BigInteger(), nullable=True),
        sa.Column("block_number", sa.BigInteger(), nullable=True),
        sa.Column("block_timestamp", sa.BigInteger(), nullable=True),
        sa.Column("gas_used", sa.BigInteger(), nullable=True),
        sa.Column("anchored_at", sa.Double(), nullable=True),
        sa.PrimaryKeyConstraint("seq"),
        sa.UniqueConstraint("root"),
    )
    with op.batch_alter_table("batches", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_batches_status"), ["status"], unique=False)

    op.create_table(
        "institutions",
        sa.Column("uscc", sa.String(length=18), nullable=False),
        sa.Column("region", sa.String(length=6), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("uscc"),
    )
    op.create_table(
        "records",
        sa.Column("id", sa.String(length=26), nullable=False),
        sa.Column("type", sa.String(length=24), nullable=False),
        sa.Column("institution", sa.String(length=18), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("canonical", sa.LargeBinary(), nullable=False),
        sa.Column("leaf_hash", sa.String(length=64), nullable=False),
        sa.Column("code", sa.String(length=32), nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("leaf_hash"),
    )
    with op.batch_alter_table("records", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_records_code"), ["code"], unique=False)
        batch_op.create_index(batch_op.f("ix_records_institution"), ["institution"], unique=False)
        batch_op.create_index(batch_op.f("ix_records_type"), ["type"], unique=False)

    op.create_table(
        "service_state",
        sa.Column("key", sa.String(length=64), nullable=False),
        sa.Column("value", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("key"),
    )
    op.create_table(
        "api_keys",
        sa.Column("key_id", sa.String(length=40), nullable=False),
        sa.Column("role", sa.String(length=16), nullable=False),
        sa.Column("institution", sa.String(length=18), nullable=True),
        sa.Column("auditor_id", sa.String(length=26), nullable=True),
        sa.Column("secret_ciphertext", sa.LargeBinary(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["auditor_id"],
            ["auditors.id"],
        ),
        sa.ForeignKeyConstraint(
            ["institution"],
            ["institutions.uscc"],
        ),
        sa.PrimaryKeyConstraint("key_id"),
    )
    with op.batch_alter_table("api_keys", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_api_keys_institution"), ["institution"], unique=False)

    op.create_table(
        "batch_leaves",
        sa.Column(
            "batch_seq", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False
        ),
        sa.Column("leaf_index", sa.Integer(), nullable=False),
        sa.Column("record_id", sa.String(length=26), nullable=False),
        sa.Column("leaf_hash", sa.String(length=64), nullable=False),
        sa.ForeignKeyConstraint(
            ["batch_seq"],
            ["batches.seq"],
        ),
        sa.PrimaryKeyConstraint("batch_seq", "leaf_index"),
        sa.UniqueConstraint("record_id", name="uq_batch_leaves_record"),
    )
    op.create_table(
        "outbox",
        sa.Column(
            "seq",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("record_id", sa.String(length=26), nullable=False),
        sa.Column("leaf_hash", sa.String(length=64), nullable=False),
        sa.Column("enqueued_at", sa.Double(), nullable=False),
        sa.ForeignKeyConstraint(
            ["record_id"],
            ["records.id"],
        ),
        sa.PrimaryKeyConstraint("seq"),
        sa.UniqueConstraint("record_id"),
    )
    op.create_table(
        "record_files",
        sa.Column("record_id", sa.String(length=26), nullable=False),
        sa.Column("role", sa.String(length=32), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("media_type", sa.String(length=100), nullable=False),
        sa.ForeignKeyConstraint(
            ["record_id"],
            ["records.id"],
        ),
        sa.PrimaryKeyConstraint("record_id", "role"),
    )
    with op.batch_alter_table("record_files", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_record_files_sha256"), ["sha256"], unique=False)

    op.create_table(
        "record_parents",
        sa.Column("child_id", sa.String(length=26), nullable=False),
        sa.Column("parent_id", sa.String(length=26), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["child_id"],
            ["records.id"],
        ),
        sa.ForeignKeyConstraint(
            ["parent_id"],
            ["records.id"],
        ),
        sa.PrimaryKeyConstraint("child_id", "parent_id"),
    )
    with op.batch_alter_table("record_parents", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_record_parents_parent_id"), ["parent_id"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("record_parents", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_record_parents_parent_id"))

    op.drop_table("record_parents")
    with op.batch_alter_table("record_files", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_record_files_sha256"))

    op.drop_table("record_files")
    op.drop_table("outbox")
    op.drop_table("batch_leaves")
    with op.batch_alter_table("api_keys", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_api_keys_institution"))

    op.drop_table("api_keys")
    op.drop_table("service_state")
    with op.batch_alter_table("records", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_records_type"))
        batch_op.drop_index(batch_op.f("ix_records_institution"))
        batch_op.drop_index(batch_op.f("ix_records_code"))

    op.drop_table("records")
    op.drop_table("institutions")
    with op.batch_alter_table("batches", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_batches_status"))

    op.drop_table("batches")
    with op.batch_alter_table("auth_nonces", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_auth_nonces_seen_at"))

    op.drop_table("auth_nonces")
    op.drop_table("auditors")
