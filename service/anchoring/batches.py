"""The anchoring worker's SQL on `outbox` and `batches`.

A batch is a range of the outbox (service.storage.leaves): it is prepared by inserting
its one row in one transaction (all or nothing), its signed transaction is stored before
it is broadcast, and it is marked anchored once its receipt (and its confirmations) are
in hand. The state machine that decides when each of these
happens is anchoring/worker.py; this module only reads and writes rows.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, Engine, func, insert, select, update

from service.anchoring.status import STATE_LAST_ERROR
from service.storage import loghash
from service.storage.leaves import WATERMARK, pending_filter
from service.storage.models import Batch, KeyValue, Outbox
from verifier.merkle import merkle_root

log = logging.getLogger(__name__)

#: A batch whose prepare transaction saw the watermark move is retried this often.
PREPARE_ATTEMPTS = 5


@dataclass(frozen=True)
class BatchRow:
    """The columns of a batch the worker needs (raw_tx, tx_hash, tx_nonce once signed)."""

    seq: int
    root: str
    size: int
    status: str
    raw_tx: bytes | None
    tx_hash: str | None
    tx_nonce: int | None


class _Retry(Exception):
    """Internal: the prepare transaction saw a concurrent change; roll back and retry."""


def unanchored_batches(engine: Engine) -> list[Any]:
    """Every batch not yet `anchored`, lowest seq first (rows with BatchRow's columns)."""
    with engine.connect() as conn:
        return list(
            conn.execute(
                select(
                    Batch.seq,
                    Batch.root,
                    Batch.size,
                    Batch.status,
                    Batch.raw_tx,
                    Batch.tx_hash,
                    Batch.tx_nonce,
                )
                .where(Batch.status != "anchored")
                .order_by(Batch.seq)
            ).all()
        )


def _watermark(conn: Connection) -> int | None:
    """The highest outbox seq in a batch (None: no batch yet)."""
    value = conn.execute(WATERMARK).scalar()
    return int(value) if value is not None else None


def batch_ready(
    conn: Connection, *, max_leaves: int, max_age_s: float, now: float,
    watermark: int | None = None,
) -> bool:
    """Whether a batch is due: the oldest waiting leaf waited `max_age_s`, or `max_leaves`
    leaves are waiting (above `watermark`)."""
    waiting = pending_filter(watermark)
    oldest = conn.execute(
        select(Outbox.enqueued_at).where(waiting).order_by(Outbox.seq).limit(1)
    ).scalar()
    if oldest is None:
        return False
    if now - oldest >= max_age_s:
        return True
    full = conn.execute(
        select(Outbox.seq).where(waiting).order_by(Outbox.seq).offset(max_leaves - 1).limit(1)
    ).scalar()
    return full is not None


def _settled_bound(engine: Engine) -> int | None:
    """The highest outbox seq below which no row can still appear.

    SQLite: writers are serialised and a row's seq (its rowid) is assigned inside its
    writer's transaction, so every committed row is final. PostgreSQL: a transaction may
    take seq n and commit after another committed n + 1; `LOCK TABLE ... IN SHARE MODE`
    waits for every transaction writing the outbox to end (each holds ROW EXCLUSIVE from
    its INSERT until it ends, and takes its seq inside that INSERT), so the highest seq read
    under it is settled. It is held only for that one read; a writer waits at most that
    long, or `lock_timeout` ends the wait (the batch is tried again on the next pass)."""
    top = select(func.max(Outbox.seq))
    if engine.dialect.name != "postgresql":
        with engine.connect() as conn:
            value = conn.execute(top).scalar()
    else:
        with engine.begin() as conn:
            conn.exec_driver_sql("SET LOCAL lock_timeout = '2s'")
            conn.exec_driver_sql("LOCK TABLE outbox IN SHARE MODE")
            value = conn.execute(top).scalar()
    return int(value) if value is not None else None


def prepare_batch(
    engine: Engine,
    *,
    max_leaves: int,
    max_age_s: float,
    now: Callable[[], float],
    chain_id: int,
    registry: str,
) -> BatchRow | None:
    """Close a batch if one is due: one transaction inserts the Batch (`prepared`) covering
    the next outbox range (at most `max_leaves` rows above the watermark, none above the
    settled bound). Nothing is copied or deleted: the range is the batch. Returns the
    batch, or None."""
    for _ in range(PREPARE_ATTEMPTS):
        with engine.connect() as conn:
            watermark = _watermark(conn)
            if not batch_ready(
                conn, max_leaves=max_leaves, max_age_s=max_age_s, now=now(),
                watermark=watermark,
            ):
                return None
        bound = _settled_bound(engine)
        if bound is None or (watermark is not None and bound <= watermark):
            return None
        with engine.connect() as conn:
            # Plain DB-API tuples: Row objects cost more than the query at 20,000 rows.
            mark = "?" if conn.dialect.name == "sqlite" else "%s"
            low = "" if watermark is None else f"seq > {int(watermark)} AND "
            rows = conn.exec_driver_sql(
                f"SELECT seq, leaf_hash, enqueued_at FROM outbox WHERE {low}seq <= {mark}"
                f" ORDER BY seq LIMIT {int(max_leaves)}",
                (bound,),
            ).cursor.fetchall()
            last_seq = conn.execute(select(func.max(Batch.seq))).scalar() or 0
        if not rows:
            return None
        leaves = [bytes.fromhex(r[1]) for r in rows]
        root = merkle_root(leaves, loghash.of(engine)).hex()
        first, last = rows[0][0], rows[-1][0]
        seq = last_seq + 1
        try:
            with engine.begin() as conn:
                # The leader lock keeps other workers out; this re-check keeps the batch
                # honest should the watermark have moved meanwhile all the same.
                if _watermark(conn) != watermark:
                    raise _Retry
                conn.execute(
                    insert(Batch).values(
                        seq=seq,
                        root=root,
                        size=len(rows),
                        status="prepared",
                        created_at=now(),
                        oldest_enqueued_at=min(r[2] for r in rows),
                        chain_id=chain_id,
                        registry_address=registry,
                        first_seq=first,
                        last_seq=last,
                    )
                )
        except _Retry:
            log.info("the outbox watermark moved under batch %d; building it again", seq)
            continue
        log.debug("prepared batch %d: %d leaves (outbox %d..%d), root %s",
                  seq, len(rows), first, last, root)
        return BatchRow(seq, root, len(rows), "prepared", None, None, None)
    return None


def store_signed(engine: Engine, seq: int, raw_tx: bytes, tx_hash: str, nonce: int) -> None:
    """Record the signed anchor transaction of batch `seq` (status `sent`) before it is
    broadcast, so that a crash after broadcasting can always find it again."""
    with engine.begin() as conn:
        conn.execute(
            update(Batch)
            .where(Batch.seq == seq, Batch.status != "anchored")
            .values(status="sent", raw_tx=raw_tx, tx_hash=tx_hash, tx_nonce=nonce)
        )


def mark_anchored(
    engine: Engine,
    seq: int,
    *,
    tx_hash: str,
    block_number: int,
    block_timestamp: int,
    gas_used: int | None,
    anchored_at: float,
) -> None:
    """Batch `seq` is anchored by `tx_hash`; the worker's last error is cleared with it."""
    with engine.begin() as conn:
        conn.execute(
            update(Batch)
            .where(Batch.seq == seq)
            .values(
                status="anchored",
                tx_hash=tx_hash,
                block_number=block_number,
                block_timestamp=block_timestamp,
                gas_used=gas_used,
                anchored_at=anchored_at,
            )
        )
        conn.execute(update(KeyValue).where(KeyValue.key == STATE_LAST_ERROR).values(value=""))


def anchored_tip(engine: Engine) -> tuple[Any | None, int]:
    """The highest anchored batch (seq, root, size, registry_address, block_number) or
    None, and the highest batch seq of any status (0 when there is none)."""
    with engine.connect() as conn:
        last = conn.execute(
            select(Batch.seq, Batch.root, Batch.size, Batch.registry_address,
                   Batch.block_number)
            .where(Batch.status == "anchored")
            .order_by(Batch.seq.desc())
            .limit(1)
        ).first()
        top = conn.execute(select(func.max(Batch.seq))).scalar() or 0
    return last, int(top)


def recent_anchored(engine: Engine, limit: int) -> list[Any]:
    """The newest `limit` anchored batches (seq, root, size, block_number), newest first."""
    with engine.connect() as conn:
        return list(conn.execute(
            select(Batch.seq, Batch.root, Batch.size, Batch.block_number)
            .where(Batch.status == "anchored")
            .order_by(Batch.seq.desc())
            .limit(limit)
        ).all())


def batch_root(engine: Engine, seq: int) -> tuple[str, int] | None:
    """(root, size) of batch `seq`, or None."""
    with engine.connect() as conn:
        row = conn.execute(select(Batch.root, Batch.size).where(Batch.seq == seq)).first()
    return (row.root, row.size) if row is not None else None


def roots_after(engine: Engine, seq: int) -> list[Any]:
    """(seq, root) of every batch after `seq`, lowest first."""
    with engine.connect() as conn:
        return list(conn.execute(
            select(Batch.seq, Batch.root).where(Batch.seq > seq).order_by(Batch.seq)
        ).all())


def unanchor_after(engine: Engine, seq: int) -> int:
    """A chain reorganisation dropped the anchors of every batch after `seq`: set them
    back to `prepared` (their transaction forgotten, their leaves kept) so that they are
    anchored again in order and no proof of them is served meanwhile. Returns how many."""
    with engine.begin() as conn:
        return conn.execute(
            update(Batch)
            .where(Batch.seq > seq)
            .values(status="prepared", raw_tx=None, tx_hash=None, tx_nonce=None,
                    block_number=None, block_timestamp=None, gas_used=None, anchored_at=None)
        ).rowcount


def pending_leaves(conn: Connection) -> tuple[int, float | None]:
    """How many leaves wait above the watermark, and the oldest one's enqueued_at."""
    count, oldest = conn.execute(
        select(func.count(Outbox.seq), func.min(Outbox.enqueued_at)).where(
            pending_filter(_watermark(conn))
        )
    ).one()
    return int(count or 0), oldest


def drained(engine: Engine) -> bool:
    """No leaf waits in the outbox and every batch is anchored."""
    with engine.connect() as conn:
        pending, _ = pending_leaves(conn)
        open_batches = conn.execute(
            select(func.count()).select_from(Batch).where(Batch.status != "anchored")
        ).scalar()
    return not pending and not open_batches
