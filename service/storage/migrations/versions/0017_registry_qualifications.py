"""Lab qualification scope (资质, std 4.1.1): `registry_qualifications`.

One row per qualification certificate (资质证书) the supervision agency registered for a
lab, as of the latest `registry` record of kind `qualification` for it: the certificate's
validity and the test items (检测项目/参数) of its scope (能力附表), as a JSON list of
{"specialty", "items"}. Report metadata is checked against it (422 `out_of_scope`).

Revision ID: 0017
Revises: 0016
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0017"
down_revision = "0016"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "registry_qualifications",
        sa.Column("institution", sa.String(18), primary_key=True),
        sa.Column("certificate_no", sa.String(100), primary_key=True),
        sa.Column("record_id", sa.String(26), sa.ForeignKey("records.id"), nullable=False),
        sa.Column("valid_from", sa.Date(), nullable=True),
        sa.Column("valid_until", sa.Date(), nullable=False),
        sa.Column("scope", sa.Text(), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("registry_qualifications")
