"""A report's history (INTERFACE §7.1), written by the platform into every report record.

For each sample the report cites — named in its parents, or the sample a cited test
record derives from — the sorted leaf hashes of every record the platform holds, when the
report record is made, that has that sample among its ancestors: seals, witness records,
receipts, every version of every test record, and any other type, except `report` and
`revocation` records. A lab cannot set or trim it: it is computed here from the parent
links, inside the transaction that appends the report record.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence

from sqlalchemy import bindparam, select, text
from sqlalchemy.orm import Session

from service.storage.models import Record, RecordParent

#: Record types a history never lists (the report's own stages and their revocation).
EXCLUDED_TYPES = ("report", "revocation")

_DESCENDANTS = text(
    "WITH RECURSIVE d(root, id) AS ("
    " SELECT parent_id, child_id FROM record_parents WHERE parent_id IN :roots"
    " UNION"
    " SELECT d.root, rp.child_id FROM record_parents rp JOIN d ON rp.parent_id = d.id"
    ") SELECT d.root, r.leaf_hash FROM d JOIN records r ON r.id = d.id"
    " WHERE r.type NOT IN ('report', 'revocation')"
).bindparams(bindparam("roots", expanding=True))


def cited_samples(session: Session, parents: Sequence[Record]) -> list[Record]:
    """The samples a report cites: sample parents, and the samples its test records (and
    the versions they correct) derive from directly."""
    samples = {p.id: p for p in parents if p.type == "sample"}
    tests = [p.id for p in parents if p.type == "test_record"]
    if tests:
        rows = session.scalars(
            select(Record)
            .join(RecordParent, RecordParent.parent_id == Record.id)
            .where(RecordParent.child_id.in_(tests), Record.type == "sample")
        ).all()
        for row in rows:
            samples.setdefault(row.id, row)
    return sorted(samples.values(), key=lambda r: r.leaf_hash)


def history_of(session: Session, samples: Iterable[Record]) -> dict[str, list[str]]:
    """{sample leaf hash: sorted leaf hashes of the records derived from it} (§7.1)."""
    samples = list(samples)
    out: dict[str, list[str]] = {s.leaf_hash: [] for s in samples}
    if not samples:
        return out
    leaf_of = {s.id: s.leaf_hash for s in samples}
    found: dict[str, set[str]] = {s.leaf_hash: set() for s in samples}
    for root, leaf in session.execute(_DESCENDANTS, {"roots": list(leaf_of)}):
        found[leaf_of[root]].add(str(leaf))
    return {sample: sorted(leaves) for sample, leaves in found.items()}


def cited_records(session: Session, metadata: Record) -> list[Record]:
    """The records a report's metadata record cites (its parents but the report records)."""
    return list(
        session.scalars(
            select(Record)
            .join(RecordParent, RecordParent.parent_id == Record.id)
            .where(RecordParent.child_id == metadata.id, Record.type != "report")
            .order_by(RecordParent.position)
        )
    )


def history_record_ids(session: Session, code: str) -> list[str]:
    """Ids of the records the `history` of report `code`'s records names (samples and the
    records derived from them); a record named but gone from the database is left out
    (the bundle then lacks it and the verifier says so, the public view fails its check)."""
    bodies = session.scalars(
        select(Record.canonical).where(Record.code == code, Record.type == "report")
    ).all()
    leaves: set[str] = set()
    for canonical in bodies:
        history = (json.loads(canonical).get("body") or {}).get("history")
        if isinstance(history, dict):
            for sample, named in history.items():
                leaves.add(str(sample))
                leaves.update(str(x) for x in named if isinstance(x, str))
    if not leaves:
        return []
    return list(
        session.scalars(
            select(Record.id).where(Record.leaf_hash.in_(sorted(leaves))).order_by(Record.id)
        )
    )


def report_history(session: Session, parents: Sequence[Record]) -> dict[str, list[str]]:
    """The `history` of a report record whose cited records are `parents`."""
    return history_of(session, cited_samples(session, parents))
