"""The SQL of the ancestry walk (`service.domain.ancestry`), as plain DB-API statements.

Each function reads records as `(id, type, institution, created_at, canonical, leaf_hash)`
tuples, the values as the driver returns them (SQLite gives `created_at` as text).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import Connection

from service.storage.public_sql import placeholder

#: Ids (or leaf hashes) per statement.
CHUNK = 500
_COLUMNS = "r.id, r.type, r.institution, r.created_at, r.canonical, r.leaf_hash"


def _marks(dialect: str, count: int) -> str:
    return ", ".join([placeholder(dialect)] * count)


def _chunks(values: Sequence[str]) -> list[tuple[str, ...]]:
    return [tuple(values[i : i + CHUNK]) for i in range(0, len(values), CHUNK)]


def link_closure(
    conn: Connection, ids: Sequence[str], cap: int | None = None
) -> list[tuple[Any, ...]]:
    """The records `ids` and every record their `record_parents` links lead to, parent by
    parent (one recursive query per CHUNK ids), at most `cap` rows per query if given."""
    dialect = conn.dialect.name
    rows: list[tuple[Any, ...]] = []
    for chunk in _chunks(ids):
        sql = (
            "WITH RECURSIVE anc(id) AS ("
            f" SELECT id FROM records WHERE id IN ({_marks(dialect, len(chunk))})"
            " UNION SELECT p.parent_id FROM record_parents p JOIN anc ON p.child_id = anc.id"
            f") SELECT {_COLUMNS} FROM anc JOIN records r ON r.id = anc.id"
            + (f" LIMIT {int(cap)}" if cap is not None else "")
        )
        rows += [tuple(row) for row in conn.exec_driver_sql(sql, chunk)]
    return rows


def by_leaf_hash(conn: Connection, leaves: Sequence[str]) -> list[tuple[Any, ...]]:
    """The records with these leaf hashes."""
    dialect = conn.dialect.name
    rows: list[tuple[Any, ...]] = []
    for chunk in _chunks(leaves):
        sql = (
            f"SELECT {_COLUMNS} FROM records r"
            f" WHERE r.leaf_hash IN ({_marks(dialect, len(chunk))})"
        )
        rows += [tuple(row) for row in conn.exec_driver_sql(sql, chunk)]
    return rows


def children_of_type(
    conn: Connection, parents: Sequence[str], types: Sequence[str]
) -> list[tuple[Any, ...]]:
    """The records of these types that name one of `parents` in their `record_parents`
    (a record naming several of them comes once per parent named)."""
    dialect = conn.dialect.name
    rows: list[tuple[Any, ...]] = []
    for chunk in _chunks(parents):
        sql = (
            f"SELECT {_COLUMNS} FROM record_parents p"
            " JOIN records r ON r.id = p.child_id"
            f" WHERE p.parent_id IN ({_marks(dialect, len(chunk))})"
            f" AND r.type IN ({_marks(dialect, len(types))})"
        )
        rows += [tuple(row) for row in conn.exec_driver_sql(sql, (*chunk, *types))]
    return rows


def parent_links(conn: Connection, children: Sequence[str]) -> list[tuple[str, str, int]]:
    """(child id, parent id, position) of every `record_parents` row of `children`."""
    dialect = conn.dialect.name
    rows: list[tuple[str, str, int]] = []
    for chunk in _chunks(children):
        sql = (
            "SELECT child_id, parent_id, position FROM record_parents"
            f" WHERE child_id IN ({_marks(dialect, len(chunk))})"
        )
        rows += [(str(c), str(p), int(pos)) for c, p, pos in conn.exec_driver_sql(sql, chunk)]
    return rows
