"""The one ancestry walk (service.domain.ancestry): what it finds, by which parents, and
that it reads whole waves (its number of queries does not grow with the chain).

Rows are written directly, on SQLite and on PostgreSQL (`app_state`): the walk reads only
`records` and `record_parents`, and must keep finding parents when one of the two sources
was edited.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

from sqlalchemy import Engine, event, text

from service.domain.ancestry import derived_from, named_parents, walk
from service.state import ServiceState


def _leaf(rid: str) -> str:
    return hashlib.sha256(rid.encode()).hexdigest()


def _add(engine: Engine, rid: str, rtype: str, parents: Sequence[str] = (),
         *, named: Sequence[str] | None = None) -> None:
    """A record whose stored bytes name the leaves of `named` (default: its `parents`),
    linked to `parents` by `record_parents` rows."""
    canonical = json.dumps(
        {"id": rid, "type": rtype, "parents": [_leaf(p) for p in (parents if named is None
                                                                  else named)]}
    ).encode()
    with engine.begin() as conn:
        conn.execute(
            text("INSERT INTO records (id, type, institution, created_at, canonical, leaf_hash)"
                 " VALUES (:id, :type, 'I', '2026-11-22 00:00:00', :c, :leaf)"),
            {"id": rid, "type": rtype, "c": canonical, "leaf": _leaf(rid)},
        )
        for position, parent in enumerate(parents):
            conn.execute(
                text("INSERT INTO record_parents (child_id, parent_id, position)"
                     " VALUES (:c, :p, :pos)"),
                {"c": rid, "p": parent, "pos": position},
            )


def _chain(engine: Engine) -> None:
    """project <- contract <- commission <- sample S1 <- test record <- report, and beside
    it: S1's seal and a witness record of S1 and S2 (with a key image); S2, S2's seal, a
    receipt of S1's seal, and a stray record, none of which the report rests on."""
    _add(engine, "P", "project")
    _add(engine, "C", "contract", ["P"])
    _add(engine, "M", "commission", ["C"])
    _add(engine, "S1", "sample", ["M"])
    _add(engine, "S2", "sample", ["M"])
    _add(engine, "T", "test_record", ["S1"])
    _add(engine, "R", "report", ["T"])
    _add(engine, "IMG", "media")
    _add(engine, "SEAL1", "seal", ["S1", "IMG"])
    _add(engine, "SEAL2", "seal", ["S2"])
    _add(engine, "W", "witness", ["S1", "S2", "IMG"])
    _add(engine, "RC", "receipt", ["SEAL1"])
    _add(engine, "STRAY", "media")


@contextmanager
def _statements(engine: Engine) -> Iterator[list[str]]:
    seen: list[str] = []

    def count(_conn: object, _cursor: object, statement: str, *_: object) -> None:
        seen.append(statement)

    event.listen(engine, "before_cursor_execute", count)
    try:
        yield seen
    finally:
        event.remove(engine, "before_cursor_execute", count)


def test_ancestry_and_evidence(app_state: ServiceState) -> None:
    engine = app_state.engine
    _chain(engine)
    with app_state.sessions() as session:
        found = walk(session, ["R"])
        assert list(found.records) == ["R", "T", "S1", "M", "C", "P"]  # generation order
        assert found.complete
        assert found.links["R"] == ["T"] and found.links["S1"] == ["M"]
        evidence = walk(session, ["R"], attachments=True)
        # S1's seal and witness record come with their parents (the key image, and S2
        # as a parent of the witness record); S2's own seal does not, nor the receipt
        assert list(evidence.records)[:6] == ["R", "T", "S1", "M", "C", "P"]
        assert set(evidence.records) == {"R", "T", "S1", "M", "C", "P",
                                         "SEAL1", "W", "IMG", "S2"}
        assert derived_from(session, ["T", "S1", "IMG", "W"], "P") == {"T", "S1", "W"}
        assert derived_from(session, ["T"], "S2") == set()


def test_parents_are_followed_by_either_source(app_state: ServiceState) -> None:
    engine = app_state.engine
    _chain(engine)
    # the test record's link row is deleted: its bytes still name the sample's leaf
    with engine.begin() as conn:
        conn.execute(text("DELETE FROM record_parents WHERE child_id = 'T'"))
    # a record linked to the commission whose bytes name nothing
    _add(engine, "T2", "test_record", ["M"], named=[])
    with app_state.sessions() as session:
        found = walk(session, ["R"])
        assert set(found.records) == {"R", "T", "S1", "M", "C", "P"}
        assert "T" not in found.links  # no link rows: the parent was found by its leaf
        assert found.parents("T") == ["S1"]
        assert found.named["T"] == (_leaf("S1"),)
        assert set(walk(session, ["T2"]).records) == {"T2", "M", "C", "P"}
        assert derived_from(session, ["T", "T2"], "P") == {"T", "T2"}


def test_limit_stops_the_walk(app_state: ServiceState) -> None:
    _chain(app_state.engine)
    with app_state.sessions() as session:
        assert walk(session, ["R"], limit=6).complete
        short = walk(session, ["R"], limit=3)
        assert not short.complete and len(short.records) == 3 and "R" in short.records
        assert walk(session, ["NOPE"]).records == {}


def test_queries_do_not_grow_with_the_chain(app_state: ServiceState) -> None:
    engine = app_state.engine
    _chain(engine)
    previous = "T"
    for i in range(40):  # a long line of corrections
        _add(engine, f"T{i:02d}", "test_record", ["S1", previous])
        previous = f"T{i:02d}"
    _add(engine, "R2", "report", [previous])
    counts = []
    for root in ("R", "R2"):
        with app_state.sessions() as session, _statements(engine) as seen:
            found = walk(session, [root], attachments=True)
        counts.append(len([s for s in seen if s.lstrip().upper().startswith(("SELECT",
                                                                             "WITH"))]))
        assert "SEAL1" in found.records
    assert len(found.records) == 1 + 40 + 9  # R2, the corrections, the evidence of T
    assert counts[0] == counts[1] <= 5, counts


def test_named_parents_reads_only_leaf_hashes() -> None:
    leaf = "ab" * 32
    assert named_parents(json.dumps({"parents": [leaf, "short", 7]}).encode()) == (leaf,)
    assert named_parents(b"not json") == ()
    assert named_parents(b"[1, 2]") == ()
