"""evidence change stamp (triggers) and stored signature verdicts for the public view

`evidence_stamp` holds one counter row. Triggers add one to it whenever evidence that a
public view was checked against is changed or removed:

- `records`, `record_files`, `record_parents`, `batch_leaves`: any UPDATE or DELETE
  (PostgreSQL: also TRUNCATE);
- `batches`: DELETE; an UPDATE that changes `seq`, `root` or `size`, or that changes
  anything a view shows (status, chain id, registry, tx hash, block number/time) of a
  batch that was already `anchored`.

Inserts do not move it, nor do the anchoring worker's normal updates of a batch on its
way to `anchored` (prepared -> sent -> anchored), so ingest does not invalidate every
cached view. On PostgreSQL the triggers are `ENABLE ALWAYS` (they fire under
`session_replication_role = replica` too). The public view (service.domain.public, its SQL
in service.storage.public_sql) reads the counter, and checks that these triggers are in
place, on every view.

`signature_checks` keeps the sealed PDF's signature verdict bound to the file's SHA-256
(see service.domain.public.verdicts.SignatureVerdicts for the rule under which a view may
use it).

Revision ID: 0004_change_stamp
Revises: 0003
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004_change_stamp"
down_revision = "0003"
branch_labels = None
depends_on = None

#: Tables whose every UPDATE/DELETE moves the stamp (kept in step with
#: service.storage.public_sql.STAMP_TRIGGERS).
EVIDENCE_TABLES = ("records", "record_files", "record_parents", "batch_leaves")

_BATCH_UPDATE_WHEN = (
    "NEW.seq {ne} OLD.seq OR NEW.root {ne} OLD.root OR NEW.size {ne} OLD.size"
    " OR (OLD.status = 'anchored' AND (NEW.status {ne} OLD.status"
    " OR NEW.chain_id {ne} OLD.chain_id OR NEW.registry_address {ne} OLD.registry_address"
    " OR NEW.tx_hash {ne} OLD.tx_hash OR NEW.block_number {ne} OLD.block_number"
    " OR NEW.block_timestamp {ne} OLD.block_timestamp))"
)
_BUMP = "UPDATE evidence_stamp SET counter = counter + 1 WHERE id = 1"


def upgrade() -> None:
    op.create_table(
        "evidence_stamp",
        sa.Column("id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("counter", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.execute("INSERT INTO evidence_stamp (id, counter) VALUES (1, 0)")
    op.create_table(
        "signature_checks",
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("context", sa.String(length=64), nullable=False),
        sa.Column("code", sa.String(length=32), nullable=False),
        sa.Column("verdict", sa.Text(), nullable=False),
        sa.Column("checked_at", sa.Double(), nullable=False),
        sa.Column("mac", sa.String(length=64), nullable=False),
        sa.PrimaryKeyConstraint("sha256", "context"),
    )

    if op.get_bind().dialect.name == "postgresql":
        op.execute(
            "CREATE FUNCTION jz_bump_evidence_stamp() RETURNS trigger LANGUAGE plpgsql AS $$"
            f" BEGIN {_BUMP}; RETURN NULL; END $$"
        )
        for table in EVIDENCE_TABLES:
            op.execute(
                f"CREATE TRIGGER jz_stamp_{table} AFTER UPDATE OR DELETE OR TRUNCATE ON {table}"
                " FOR EACH STATEMENT EXECUTE FUNCTION jz_bump_evidence_stamp()"
            )
            op.execute(f"ALTER TABLE {table} ENABLE ALWAYS TRIGGER jz_stamp_{table}")
        op.execute(
            "CREATE TRIGGER jz_stamp_batches_update AFTER UPDATE ON batches FOR EACH ROW"
            f" WHEN ({_BATCH_UPDATE_WHEN.format(ne='IS DISTINCT FROM')})"
            " EXECUTE FUNCTION jz_bump_evidence_stamp()"
        )
        op.execute(
            "CREATE TRIGGER jz_stamp_batches_delete AFTER DELETE OR TRUNCATE ON batches"
            " FOR EACH STATEMENT EXECUTE FUNCTION jz_bump_evidence_stamp()"
        )
        for name in ("jz_stamp_batches_update", "jz_stamp_batches_delete"):
            op.execute(f"ALTER TABLE batches ENABLE ALWAYS TRIGGER {name}")
        return

    # SQLite: row triggers only
    for table in EVIDENCE_TABLES:
        for event in ("UPDATE", "DELETE"):
            op.execute(
                f"CREATE TRIGGER jz_stamp_{table}_{event.lower()} AFTER {event} ON {table}"
                f" BEGIN {_BUMP}; END"
            )
    op.execute(
        "CREATE TRIGGER jz_stamp_batches_update AFTER UPDATE ON batches"
        f" WHEN {_BATCH_UPDATE_WHEN.format(ne='IS NOT')} BEGIN {_BUMP}; END"
    )
    op.execute(f"CREATE TRIGGER jz_stamp_batches_delete AFTER DELETE ON batches BEGIN {_BUMP}; END")


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        for table in EVIDENCE_TABLES:
            op.execute(f"DROP TRIGGER IF EXISTS jz_stamp_{table} ON {table}")
        op.execute("DROP TRIGGER IF EXISTS jz_stamp_batches_update ON batches")
        op.execute("DROP TRIGGER IF EXISTS jz_stamp_batches_delete ON batches")
        op.execute("DROP FUNCTION IF EXISTS jz_bump_evidence_stamp()")
    else:
        for table in EVIDENCE_TABLES:
            for event in ("update", "delete"):
                op.execute(f"DROP TRIGGER IF EXISTS jz_stamp_{table}_{event}")
        op.execute("DROP TRIGGER IF EXISTS jz_stamp_batches_update")
        op.execute("DROP TRIGGER IF EXISTS jz_stamp_batches_delete")
    op.drop_table("signature_checks")
    op.drop_table("evidence_stamp")
