"""Migration 0020: existing batches (their `batch_leaves` rows) become outbox ranges, the
waiting leaves stay above them, new leaves go above everything; the downgrade restores
`batch_leaves` exactly."""

from __future__ import annotations

from typing import Any

from alembic import command
from sqlalchemy import Engine, text

from service.storage.db import alembic_config, make_engine
from service.storage.public_sql import read_batch_facts, read_batch_leaves


def _exec(engine: Engine, sql: str, **params: Any) -> None:
    with engine.begin() as conn:
        conn.execute(text(sql), params)


def _rows(engine: Engine, sql: str, **params: Any) -> list[tuple[Any, ...]]:
    with engine.connect() as conn:
        return [tuple(r) for r in conn.execute(text(sql), params)]


LEGACY_LEAVES = [(1, 0, "R1", "a1"), (1, 1, "R2", "a2"), (2, 0, "R3", "a3")]


def _legacy_database(engine: Engine) -> None:
    """Schema 0018: batch 1 (R1, R2; anchored), batch 2 (R3; prepared), R4 and R5 waiting
    in the outbox (with a gap in their seqs, as a rolled-back insert leaves)."""
    for rid in ("R1", "R2", "R3", "R4", "R5", "R6"):
        _exec(engine, "INSERT INTO records (id, type, institution, created_at, canonical,"
              " leaf_hash) VALUES (:id, 'project', 'I', '2026-11-22 00:00:00', :c, :h)",
              id=rid, c=b"{}", h="a" + rid[1:])
    _exec(engine, "INSERT INTO batches (seq, root, size, status, created_at, oldest_enqueued_at)"
          " VALUES (1, 'r1', 2, 'anchored', 0, 5), (2, 'r2', 1, 'prepared', 0, 6)")
    for batch, index, rid, leaf in LEGACY_LEAVES:
        _exec(engine, "INSERT INTO batch_leaves (batch_seq, leaf_index, record_id, leaf_hash)"
              " VALUES (:b, :i, :r, :h)", b=batch, i=index, r=rid, h=leaf)
    for seq, rid in ((7, "R4"), (9, "R5")):
        _exec(engine, "INSERT INTO outbox (seq, record_id, leaf_hash, enqueued_at)"
              " VALUES (:s, :r, :h, 8)", s=seq, r=rid, h="a" + rid[1:])


def test_batches_become_outbox_ranges_and_back(empty_db_url: str) -> None:
    cfg = alembic_config(empty_db_url)
    command.upgrade(cfg, "0018")
    engine = make_engine(empty_db_url)
    try:
        _legacy_database(engine)
        command.upgrade(cfg, "0020")
        engine.dispose()

        outbox = _rows(engine, "SELECT seq, record_id FROM outbox ORDER BY seq")
        assert [r for _, r in outbox] == ["R1", "R2", "R3", "R4", "R5"]
        seqs = {r: s for s, r in outbox}
        assert (seqs["R4"], seqs["R5"]) == (7, 9)  # the waiting rows keep their seqs
        ranges = _rows(engine, "SELECT seq, first_seq, last_seq, size FROM batches ORDER BY seq")
        assert ranges == [(1, seqs["R1"], seqs["R2"], 2), (2, seqs["R3"], seqs["R3"], 1)]
        with engine.connect() as conn:
            assert read_batch_leaves(conn, 1) == ["a1", "a2"]
            assert read_batch_leaves(conn, 2) == ["a3"]
            facts = read_batch_facts(conn, ["R1", "R2", "R3", "R4", "R6"])
        # (batch seq, leaf index, leaf hash, status, ...; queued last)
        assert facts["R1"][:4] == (1, 0, "a1", "anchored") and facts["R1"][-1] == 0
        assert facts["R2"][:4] == (1, 1, "a2", "anchored")
        assert facts["R3"][:4] == (2, 0, "a3", "prepared")
        assert facts["R4"][0] is None and facts["R4"][-1] == 1  # still waiting
        assert facts["R6"][0] is None and facts["R6"][-1] == 0  # never queued
        # a leaf written now goes above every existing one (PostgreSQL: the sequence too)
        _exec(engine, "INSERT INTO outbox (record_id, leaf_hash, enqueued_at)"
              " VALUES ('R6', 'a6', 9)")
        top = _rows(engine, "SELECT record_id FROM outbox ORDER BY seq DESC LIMIT 1")
        assert top == [("R6",)]

        command.downgrade(cfg, "0018")
        engine.dispose()
        leaves = _rows(engine, "SELECT batch_seq, leaf_index, record_id, leaf_hash"
                       " FROM batch_leaves ORDER BY batch_seq, leaf_index")
        assert leaves == LEGACY_LEAVES
        waiting = _rows(engine, "SELECT record_id FROM outbox ORDER BY seq")
        assert waiting == [("R4",), ("R5",), ("R6",)]
    finally:
        engine.dispose()
