"""The one walk through the traceable chain: a record's ancestry, and a report's evidence.

Used by the evidence bundle (`domain.bundle.plan_bundle`), the public view
(`domain.public.queries.load_ancestry`) and the report check that cited samples and test
records come from the report's project (`domain.reports.lifecycle.put_metadata`, via
`derived_from`).

A record's parents are found two ways, and the walk follows both:

- its `record_parents` rows, the links the service wrote when it accepted the record;
- the parent leaf hashes inside its stored canonical bytes, what its leaf commits to.

They agree unless someone edited the database. Following both means a record whose link
row or hash column was edited is still found, and then fails its checks, instead of
silently dropping out of what is checked.

A report's *evidence* (`attachments=True`) adds what hangs off the samples of its ancestry
without being an ancestor of the report: the seal and witness records of each such sample
(SAMPLE_ATTACHMENTS, the traceable chain of DESIGN.md shows them beside the receipt), with
their own ancestry (the witness's key images). Only samples of the ancestry proper bring
their attachments: a witness record that also names a sample the report does not rest on
brings that sample in as its parent, not that sample's own seals and witness records.

The walk reads whole waves, never one record at a time: the closure over the links in one
recursive query, a further round only for records that a leaf hash alone names, one query
for the attachments and one for the links among everything found (see `walk`).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson
from sqlalchemy import Connection
from sqlalchemy.orm import Session

from service.storage import ancestry_sql

#: Record types that hang off a sample without being the report's ancestors.
SAMPLE_ATTACHMENTS = ("seal", "witness")
_LEAF_HEX = 64


@dataclass(frozen=True)
class Node:
    """One record as the walk read it (its stored bytes included, unparsed)."""

    id: str
    type: str
    institution: str
    created_at: Any
    canonical: bytes
    leaf_hash: str


@dataclass
class Ancestry:
    """What a walk found."""

    #: Records found, in walk order: the roots first (as given), then generation by
    #: generation (ordered by id within one), then the attachments and their ancestry.
    records: dict[str, Node]
    #: The `record_parents` links of every record found: child id -> parent ids in
    #: position order (a parent is listed even if the walk stopped before reaching it).
    links: dict[str, list[str]]
    #: False when the walk stopped at its limit with more records still to find.
    complete: bool = True
    #: Parent leaf hashes named in each record's stored bytes.
    named: dict[str, tuple[str, ...]] = field(default_factory=dict)
    _by_leaf: dict[str, str] = field(init=False, repr=False, default_factory=dict)

    def __post_init__(self) -> None:
        self._by_leaf = {n.leaf_hash: rid for rid, n in self.records.items()}

    def parents(self, record_id: str) -> list[str]:
        """Ids of the record's parents found by either source (links first)."""
        out = dict.fromkeys(self.links.get(record_id, ()))
        for leaf in self.named.get(record_id, ()):
            pid = self._by_leaf.get(leaf)
            if pid is not None:
                out.setdefault(pid)
        return list(out)

    def ancestors(self, record_id: str) -> set[str]:
        """Every record found above `record_id` (itself excluded unless in a cycle)."""
        seen: set[str] = set()
        stack = self.parents(record_id)
        while stack:
            rid = stack.pop()
            if rid in seen:
                continue
            seen.add(rid)
            stack.extend(self.parents(rid))
        return seen


def named_parents(canonical: bytes) -> tuple[str, ...]:
    """Parent leaf hashes named inside a record's stored bytes (empty if unreadable)."""
    try:
        obj = orjson.loads(canonical)
    except orjson.JSONDecodeError:
        return ()
    parents = obj.get("parents") if isinstance(obj, dict) else None
    if not isinstance(parents, list):
        return ()
    return tuple(p for p in parents if isinstance(p, str) and len(p) == _LEAF_HEX)


class _Walk:
    def __init__(self, conn: Connection, limit: int | None) -> None:
        self.conn = conn
        self.limit = limit
        self.records: dict[str, Node] = {}
        self.named: dict[str, tuple[str, ...]] = {}
        self.leaves: set[str] = set()
        self.complete = True

    def cap(self) -> int | None:
        """Most rows one query needs to return to tell whether the limit is exceeded."""
        return None if self.limit is None else self.limit + 1 + len(self.records)

    def add(self, rows: Iterable[tuple[Any, ...]]) -> list[Node]:
        """Keep the rows not seen yet, up to the limit; the new nodes."""
        added: list[Node] = []
        for rid, rtype, institution, created_at, canonical, leaf in rows:
            if rid in self.records:
                continue
            if self.limit is not None and len(self.records) >= self.limit:
                self.complete = False
                break
            node = Node(rid, rtype, institution, created_at, bytes(canonical), leaf)
            self.records[rid] = node
            self.named[rid] = named_parents(node.canonical)
            self.leaves.add(leaf)
            added.append(node)
        return added

    def close(self, seeds: Sequence[str]) -> None:
        """Add the records `seeds` and their ancestry: the closure over the links in one
        recursive query, then the records only a parent leaf hash names, and theirs."""
        fresh = self.add(ancestry_sql.link_closure(self.conn, seeds, self.cap()))
        check = [self.records[s] for s in seeds if s in self.records] + fresh
        while check and self.complete:
            refs = list(
                dict.fromkeys(
                    leaf for n in check for leaf in self.named[n.id] if leaf not in self.leaves
                )
            )
            if not refs:
                return
            found = self.add(ancestry_sql.by_leaf_hash(self.conn, refs))
            if not found:
                return
            ids = [n.id for n in found]
            check = found + self.add(ancestry_sql.link_closure(self.conn, ids, self.cap()))

    def attach(self) -> list[str]:
        """Add the attachments of every sample found so far, with their ancestry; their ids."""
        samples = [rid for rid, n in self.records.items() if n.type == "sample"]
        if not samples:
            return []
        rows = ancestry_sql.children_of_type(self.conn, samples, SAMPLE_ATTACHMENTS)
        attached = sorted(n.id for n in self.add(rows))
        if attached and self.complete:
            self.close(attached)
        return attached

    def links(self) -> dict[str, list[str]]:
        found: dict[str, list[tuple[int, str]]] = {}
        for child, parent, position in ancestry_sql.parent_links(self.conn, list(self.records)):
            found.setdefault(child, []).append((position, parent))
        return {child: [p for _, p in sorted(items)] for child, items in found.items()}


def _walk_order(found: Ancestry, *starts: Sequence[str]) -> list[str]:
    """Record ids generation by generation from each list of starts in turn (ids sorted
    within a generation), then anything left, sorted."""
    order: dict[str, None] = {}
    for start in starts:
        level = [rid for rid in dict.fromkeys(start) if rid in found.records and rid not in order]
        while level:
            order.update(dict.fromkeys(level))
            following = {
                pid
                for rid in level
                for pid in found.parents(rid)
                if pid in found.records and pid not in order
            }
            level = sorted(following)
    order.update(dict.fromkeys(sorted(set(found.records) - set(order))))
    return list(order)


def walk(
    session: Session,
    roots: Sequence[str],
    *,
    attachments: bool = False,
    limit: int | None = None,
) -> Ancestry:
    """The records reachable from `roots` through their parents (both sources); with
    `attachments`, a report's evidence: plus the seal and witness records of every sample
    in that ancestry, with their own ancestry. Stops after `limit` records (then
    `complete` is False). Roots that do not exist are left out.

    Queries: one recursive query for the closure over the links, one per further round
    when a parent leaf hash names a record the links do not lead to (only after an edit
    of the database), one for the attachments and one for their closure, one for the
    links of everything found.
    """
    w = _Walk(session.connection(), limit)
    w.close(roots)
    attached = w.attach() if attachments and w.complete else []
    found = Ancestry(records=w.records, links=w.links(), complete=w.complete, named=w.named)
    order = _walk_order(found, roots, attached)
    return Ancestry(
        records={rid: w.records[rid] for rid in order},
        links=found.links,
        complete=w.complete,
        named=w.named,
    )


def derived_from(session: Session, record_ids: Sequence[str], ancestor: str) -> set[str]:
    """Which of `record_ids` lead back, parent by parent, to record `ancestor`; one walk."""
    found = walk(session, record_ids)
    return {rid for rid in dict.fromkeys(record_ids) if ancestor in found.ancestors(rid)}
