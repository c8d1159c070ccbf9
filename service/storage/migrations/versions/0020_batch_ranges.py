"""batches are outbox ranges: `batches.first_seq/last_seq`, no `batch_leaves` (issue 17)

Closing a batch used to copy each of its leaves into `batch_leaves` and delete it from
the outbox; now the outbox keeps every leaf in arrival order and a batch is the range of
outbox rows from `first_seq` to `last_seq` (service.storage.leaves), so closing one
writes one row.

Upgrade: the leaves of the existing batches go back into the outbox, numbered in
(batch, leaf index) order just below the lowest waiting seq, so every batch is one
contiguous range below the rows still waiting; `first_seq`/`last_seq` are set from them
(unique index on `last_seq`), `batch_leaves` is dropped, and the evidence change-stamp
triggers move from `batch_leaves` to `outbox` (the `batches` update trigger also fires
when a range changes). Downgrade reverses it.

Revision ID: 0020
Revises: 0018
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0020"
down_revision = "0019"
branch_labels = None
depends_on = None

_BUMP = "UPDATE evidence_stamp SET counter = counter + 1 WHERE id = 1"
#: migration 0004's condition, plus the range columns.
_BATCH_UPDATE_WHEN = (
    "NEW.seq {ne} OLD.seq OR NEW.root {ne} OLD.root OR NEW.size {ne} OLD.size"
    " OR NEW.first_seq {ne} OLD.first_seq OR NEW.last_seq {ne} OLD.last_seq"
    " OR (OLD.status = 'anchored' AND (NEW.status {ne} OLD.status"
    " OR NEW.chain_id {ne} OLD.chain_id OR NEW.registry_address {ne} OLD.registry_address"
    " OR NEW.tx_hash {ne} OLD.tx_hash OR NEW.block_number {ne} OLD.block_number"
    " OR NEW.block_timestamp {ne} OLD.block_timestamp))"
)
_BATCH_UPDATE_WHEN_0004 = (
    "NEW.seq {ne} OLD.seq OR NEW.root {ne} OLD.root OR NEW.size {ne} OLD.size"
    " OR (OLD.status = 'anchored' AND (NEW.status {ne} OLD.status"
    " OR NEW.chain_id {ne} OLD.chain_id OR NEW.registry_address {ne} OLD.registry_address"
    " OR NEW.tx_hash {ne} OLD.tx_hash OR NEW.block_number {ne} OLD.block_number"
    " OR NEW.block_timestamp {ne} OLD.block_timestamp))"
)


def _pg() -> bool:
    return op.get_bind().dialect.name == "postgresql"


def _stamp_triggers(table: str, *, create: bool) -> None:
    """Create or drop migration 0004's evidence triggers on `table`."""
    if _pg():
        if create:
            op.execute(
                f"CREATE TRIGGER jz_stamp_{table} AFTER UPDATE OR DELETE OR TRUNCATE ON {table}"
                " FOR EACH STATEMENT EXECUTE FUNCTION jz_bump_evidence_stamp()"
            )
            op.execute(f"ALTER TABLE {table} ENABLE ALWAYS TRIGGER jz_stamp_{table}")
        else:
            op.execute(f"DROP TRIGGER IF EXISTS jz_stamp_{table} ON {table}")
        return
    for event in ("UPDATE", "DELETE"):
        name = f"jz_stamp_{table}_{event.lower()}"
        if create:
            op.execute(f"CREATE TRIGGER {name} AFTER {event} ON {table} BEGIN {_BUMP}; END")
        else:
            op.execute(f"DROP TRIGGER IF EXISTS {name}")


def _batch_update_trigger(when: str) -> None:
    if _pg():
        op.execute("DROP TRIGGER IF EXISTS jz_stamp_batches_update ON batches")
        op.execute(
            "CREATE TRIGGER jz_stamp_batches_update AFTER UPDATE ON batches FOR EACH ROW"
            f" WHEN ({when.format(ne='IS DISTINCT FROM')})"
            " EXECUTE FUNCTION jz_bump_evidence_stamp()"
        )
        op.execute("ALTER TABLE batches ENABLE ALWAYS TRIGGER jz_stamp_batches_update")
    else:
        op.execute("DROP TRIGGER IF EXISTS jz_stamp_batches_update")
        op.execute(
            "CREATE TRIGGER jz_stamp_batches_update AFTER UPDATE ON batches"
            f" WHEN {when.format(ne='IS NOT')} BEGIN {_BUMP}; END"
        )


def _advance_outbox_sequence() -> None:
    """PostgreSQL: the outbox's sequence past every seq now in the table."""
    if not _pg():
        return  # SQLite: a new rowid is max(rowid) + 1
    bind = op.get_bind()
    name = bind.execute(sa.text("SELECT pg_get_serial_sequence('outbox', 'seq')")).scalar()
    top = bind.execute(sa.text("SELECT max(seq) FROM outbox")).scalar()
    if name is None or top is None:
        return
    last = bind.execute(sa.text(f"SELECT last_value FROM {name}")).scalar()
    if last is None or top > last:
        bind.execute(sa.text("SELECT setval(CAST(:n AS regclass), :v)"), {"n": name, "v": top})


def upgrade() -> None:
    bind = op.get_bind()
    op.add_column("batches", sa.Column("first_seq", sa.BigInteger(), nullable=True))
    op.add_column("batches", sa.Column("last_seq", sa.BigInteger(), nullable=True))
    moved = bind.execute(sa.text("SELECT count(*) FROM batch_leaves")).scalar() or 0
    if moved:
        low = bind.execute(sa.text("SELECT min(seq) FROM outbox")).scalar()
        base = (1 if low is None else int(low)) - int(moved) - 1
        bind.execute(
            sa.text(
                "INSERT INTO outbox (seq, record_id, leaf_hash, enqueued_at)"
                " SELECT :base + ROW_NUMBER() OVER (ORDER BY bl.batch_seq, bl.leaf_index),"
                " bl.record_id, bl.leaf_hash, b.oldest_enqueued_at"
                " FROM batch_leaves bl JOIN batches b ON b.seq = bl.batch_seq"
            ),
            {"base": base},
        )
        bind.execute(
            sa.text(
                "UPDATE batches SET"
                " first_seq = (SELECT min(o.seq) FROM outbox o JOIN batch_leaves bl"
                " ON bl.record_id = o.record_id WHERE bl.batch_seq = batches.seq),"
                " last_seq = (SELECT max(o.seq) FROM outbox o JOIN batch_leaves bl"
                " ON bl.record_id = o.record_id WHERE bl.batch_seq = batches.seq)"
            )
        )
        _advance_outbox_sequence()
    op.create_index("ix_batches_last_seq", "batches", ["last_seq"], unique=True)
    _stamp_triggers("batch_leaves", create=False)
    op.drop_table("batch_leaves")
    _stamp_triggers("outbox", create=True)
    _batch_update_trigger(_BATCH_UPDATE_WHEN)


def downgrade() -> None:
    bind = op.get_bind()
    _batch_update_trigger(_BATCH_UPDATE_WHEN_0004)
    _stamp_triggers("outbox", create=False)
    op.create_table(
        "batch_leaves",
        sa.Column("batch_seq", sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
                  nullable=False),
        sa.Column("leaf_index", sa.Integer(), nullable=False),
        sa.Column("record_id", sa.String(length=26), nullable=False),
        sa.Column("leaf_hash", sa.String(length=64), nullable=False),
        sa.ForeignKeyConstraint(["batch_seq"], ["batches.seq"]),
        sa.PrimaryKeyConstraint("batch_seq", "leaf_index"),
        sa.UniqueConstraint("record_id", name="uq_batch_leaves_record"),
    )
    bind.execute(
        sa.text(
            "INSERT INTO batch_leaves (batch_seq, leaf_index, record_id, leaf_hash)"
            " SELECT b.seq, ROW_NUMBER() OVER (PARTITION BY b.seq ORDER BY o.seq) - 1,"
            " o.record_id, o.leaf_hash"
            " FROM batches b JOIN outbox o ON o.seq >= b.first_seq AND o.seq <= b.last_seq"
        )
    )
    top = bind.execute(sa.text("SELECT max(last_seq) FROM batches")).scalar()
    if top is not None:
        bind.execute(sa.text("DELETE FROM outbox WHERE seq <= :top"), {"top": top})
    _stamp_triggers("batch_leaves", create=True)
    op.drop_index("ix_batches_last_seq", table_name="batches")
    op.execute("ALTER TABLE batches DROP COLUMN last_seq")
    op.execute("ALTER TABLE batches DROP COLUMN first_seq")
