"""The regulators' console (issue 14): sign-in for auditor and agency accounts, sessions,
sign-in attempts (throttling), the access log of unmasked views and downloads, and the
agencies' handling steps on nonconforming-ledger entries (`ledger_action` records).

Revision ID: 0016
Revises: 0015
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None

_BIGINT = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    with op.batch_alter_table("auditors") as batch:
        batch.add_column(sa.Column("login", sa.String(64), nullable=True))
        batch.add_column(sa.Column("password_hash", sa.Text(), nullable=True))
        batch.add_column(sa.Column("totp_ciphertext", sa.LargeBinary(), nullable=True))
        batch.add_column(sa.Column("totp_last_step", sa.BigInteger(), nullable=True))
        batch.create_unique_constraint("uq_auditors_login", ["login"])
    op.create_table(
        "console_sessions",
        sa.Column("token_sha256", sa.String(64), primary_key=True),
        sa.Column("account_id", sa.String(26), sa.ForeignKey("auditors.id"), nullable=False),
        sa.Column("csrf_token", sa.String(64), nullable=False),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.Column("last_seen_at", sa.Float(), nullable=False),
        sa.Column("ended_at", sa.Float(), nullable=True),
    )
    op.create_index("ix_console_sessions_account_id", "console_sessions", ["account_id"])
    op.create_table(
        "console_signins",
        sa.Column("id", _BIGINT, primary_key=True, autoincrement=True),
        sa.Column("login", sa.String(64), nullable=False),
        sa.Column("ip", sa.String(64), nullable=False),
        sa.Column("at", sa.Float(), nullable=False),
        sa.Column("ok", sa.Boolean(), nullable=False),
    )
    op.create_index("ix_console_signins_login_at", "console_signins", ["login", "at"])
    op.create_index("ix_console_signins_ip_at", "console_signins", ["ip", "at"])
    op.create_table(
        "console_access_log",
        sa.Column("id", _BIGINT, primary_key=True, autoincrement=True),
        sa.Column("account_id", sa.String(26), nullable=False),
        sa.Column("account_name", sa.String(200), nullable=False),
        sa.Column("region", sa.String(6), nullable=False),
        sa.Column("action", sa.String(32), nullable=False),
        sa.Column("report_code", sa.String(32), nullable=False),
        sa.Column("institution", sa.String(18), nullable=False),
        sa.Column("ip", sa.String(64), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_console_access_log_account_id", "console_access_log", ["account_id"])
    op.create_index("ix_console_access_region_at", "console_access_log", ["region", "at"])
    op.create_table(
        "nonconforming_actions",
        sa.Column("id", _BIGINT, primary_key=True, autoincrement=True),
        sa.Column("entry_id", _BIGINT, sa.ForeignKey("nonconforming_ledger.id"),
                  nullable=False),
        sa.Column("action", sa.String(24), nullable=False),
        sa.Column("note", sa.Text(), nullable=False),
        sa.Column("record_id", sa.String(26), sa.ForeignKey("records.id"), nullable=False),
        sa.Column("account_id", sa.String(26), nullable=False),
        sa.Column("account_name", sa.String(200), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_nonconforming_actions_entry_id", "nonconforming_actions", ["entry_id"])


def downgrade() -> None:
    op.drop_table("nonconforming_actions")
    op.drop_table("console_access_log")
    op.drop_table("console_signins")
    op.drop_table("console_sessions")
    with op.batch_alter_table("auditors") as batch:
        batch.drop_constraint("uq_auditors_login", type_="unique")
        batch.drop_column("totp_last_step")
        batch.drop_column("totp_ciphertext")
        batch.drop_column("password_hash")
        batch.drop_column("login")
