"""Batch leaves as outbox ranges (migration 0020): the SQL every reader shares.

The outbox keeps every accepted leaf in arrival order (`seq`); a batch is the range of
outbox rows from its `first_seq` to its `last_seq`, and a leaf's index in its batch is its
position in that range (its seq's offset from `first_seq` when the range has no gap, as
it usually has none). The rows above the highest `last_seq` (the watermark) still wait
for a batch. Closing a batch therefore writes one row, whatever its size.

The record -> batch step is an index lookup: the batch with the lowest `last_seq` at or
above the record's outbox seq (unique index on `batches.last_seq`), which covers it when
its `first_seq` is not above it.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import ColumnElement, Select, and_, case, exists, func, select
from sqlalchemy.orm import aliased

from service.storage.models import Batch, Outbox

_Later = aliased(Batch, name="later_batch")
_Before = aliased(Outbox, name="earlier_leaf")


def covering_batch_seq(outbox_seq: Any) -> Any:
    """A scalar subquery: the seq of the first batch whose range ends at or after
    `outbox_seq` (the batch covering it, if any covers it)."""
    return (
        select(_Later.seq)
        .where(_Later.last_seq >= outbox_seq)
        .order_by(_Later.last_seq)
        .limit(1)
        .scalar_subquery()
    )


def batch_of_leaf() -> ColumnElement[bool]:
    """The join condition Batch <- Outbox: the batch whose range holds the outbox row."""
    return and_(Batch.seq == covering_batch_seq(Outbox.seq), Batch.first_seq <= Outbox.seq)


def leaf_batch_seq() -> Any:
    """The joined outbox row's batch seq: the joined batch's, or, for a row below the
    watermark that no batch covers (its batch row was deleted), the seq just before the
    next remaining batch (the deleted batch's own seq when one batch was deleted)."""
    return func.coalesce(Batch.seq, covering_batch_seq(Outbox.seq) - 1)


def leaf_index() -> Any:
    """The joined outbox row's index in the joined batch (see `batch_of_leaf`)."""
    counted = (
        select(func.count())
        .select_from(_Before)
        .where(_Before.seq >= Batch.first_seq, _Before.seq < Outbox.seq)
        .scalar_subquery()
    )
    return case(
        (Batch.last_seq - Batch.first_seq + 1 == Batch.size, Outbox.seq - Batch.first_seq),
        else_=counted,
    )


def leaf_queued() -> ColumnElement[bool]:
    """Whether the joined outbox row waits above the watermark (in no batch yet)."""
    return and_(
        Outbox.seq.is_not(None), ~exists().where(_Later.last_seq >= Outbox.seq)
    )


def batch_leaf_hashes(seq: int) -> Select[str]:
    """The leaf hashes of batch `seq`, in leaf order."""
    return (
        select(Outbox.leaf_hash)
        .join(Batch, and_(Outbox.seq >= Batch.first_seq, Outbox.seq <= Batch.last_seq))
        .where(Batch.seq == seq)
        .order_by(Outbox.seq)
    )


def pending_filter(watermark: int | None) -> ColumnElement[bool]:
    """Outbox rows not yet in a batch, given the watermark (`watermark_of`)."""
    return Outbox.seq > watermark if watermark is not None else Outbox.seq.is_not(None)


WATERMARK = select(func.max(Batch.last_seq))


# Raw SQL twins for the public view's driver-level queries (service.storage.public_sql)
# and the worker (service.anchoring.batches): `o` is the outbox row, `b` the batch.
COVERING_BATCH_SQL = (
    "(SELECT lb.seq FROM batches lb WHERE lb.last_seq >= o.seq ORDER BY lb.last_seq LIMIT 1)"
)
LEAF_BATCH_SQL = f"COALESCE(b.seq, {COVERING_BATCH_SQL} - 1)"
LEAF_INDEX_SQL = (
    "CASE WHEN b.last_seq - b.first_seq + 1 = b.size THEN o.seq - b.first_seq"
    " ELSE (SELECT count(*) FROM outbox eo WHERE eo.seq >= b.first_seq AND eo.seq < o.seq)"
    " END"
)
QUEUED_SQL = (
    "CASE WHEN o.seq IS NOT NULL AND NOT EXISTS"
    " (SELECT 1 FROM batches lb WHERE lb.last_seq >= o.seq) THEN 1 ELSE 0 END"
)
