"""The SQL of the public report view, as plain DB-API statements.

The view's hot path costs one statement (`StampReader`), so these are written for the
driver directly (`exec_driver_sql`, or a raw connection) instead of through SQLAlchemy's
statement compiler:

- the *head* of a view: the report code row, the evidence change stamp, and how many of
  the triggers that move the stamp (migration 0004_change_stamp) are in place and armed;
- the batch facts of records (their leaf, the batch whose outbox range holds it, and whether
  it waits above the watermark; service.storage.leaves),
  the leaves of one batch, the highest batch the database knows;
- the stored signature verdicts of sealed PDFs (`signature_checks`).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from typing import Any

from sqlalchemy import Connection, Engine

from service.storage.leaves import (
    COVERING_BATCH_SQL,
    LEAF_BATCH_SQL,
    LEAF_INDEX_SQL,
    QUEUED_SQL,
)

log = logging.getLogger(__name__)

#: The statement every stamp trigger runs (migration 0004_change_stamp).
STAMP_BUMP = "UPDATE evidence_stamp SET counter = counter + 1 WHERE id = 1"
_STAMP_TABLES = ("records", "record_files", "record_parents", "outbox")
#: The triggers that move the change stamp, per dialect (migrations 0004_change_stamp and
#: 0020, which moved the batch leaves into the outbox).
STAMP_TRIGGERS: dict[str, tuple[str, ...]] = {
    "sqlite": (
        *(f"jz_stamp_{t}_{e}" for t in _STAMP_TABLES for e in ("update", "delete")),
        "jz_stamp_batches_update",
        "jz_stamp_batches_delete",
    ),
    "postgresql": (
        *(f"jz_stamp_{t}" for t in _STAMP_TABLES),
        "jz_stamp_batches_update",
        "jz_stamp_batches_delete",
    ),
}
#: Columns of the code row in a head tuple; then the stamp, then the armed-trigger count.
HEAD_ROW = 13
#: The highest batch the database knows (compared with the chain's `batchCount`).
KNOWN_BATCHES_SQL = "SELECT max(seq) FROM batches"
#: Ids per statement when reading facts of many records.
_CHUNK = 500


def placeholder(dialect: str) -> str:
    return "?" if dialect == "sqlite" else "%s"


def stamp_guard_sql(dialect: str) -> str:
    """A subquery answering how many of the stamp triggers are in place and armed."""
    names = ", ".join(f"'{n}'" for n in STAMP_TRIGGERS.get(dialect, ()))
    if dialect == "sqlite":
        return (
            "SELECT count(*) FROM sqlite_master WHERE type = 'trigger'"
            f" AND name IN ({names}) AND instr(sql, '{STAMP_BUMP}') > 0"
        )
    if dialect == "postgresql":
        # enabled ALWAYS, and the function they run still bumps the counter
        return (
            "SELECT count(*) FROM pg_trigger t JOIN pg_proc f ON f.oid = t.tgfoid"
            f" WHERE t.tgname IN ({names}) AND t.tgenabled = 'A'"
            f" AND f.proname = 'jz_bump_evidence_stamp' AND strpos(f.prosrc, '{STAMP_BUMP}') > 0"
        )
    return "SELECT 0"


def head_sql(dialect: str) -> str:
    """One query: the code row, the change stamp, and how many stamp triggers are armed."""
    return (
        "SELECT c.code, c.institution, i.name, c.report_no, c.project_record_id, c.issued_at,"
        " c.issue_record_id, c.report_record_id, c.pdf_record_id, c.sealed_at,"
        " c.revocation_record_id, c.superseded_by, c.status,"
        " (SELECT counter FROM evidence_stamp WHERE id = 1),"
        f" ({stamp_guard_sql(dialect)})"
        " FROM report_codes c LEFT JOIN institutions i ON i.uscc = c.institution"
        f" WHERE c.code = {placeholder(dialect)}"
    )


def stamp_armed(dialect: str, head: Sequence[Any]) -> bool:
    """Whether every stamp trigger was in place when `head` was read."""
    expected = len(STAMP_TRIGGERS.get(dialect, ()))
    return expected > 0 and head[HEAD_ROW] is not None and head[HEAD_ROW + 1] == expected


def read_head(conn: Connection, code: str) -> tuple[Any, ...] | None:
    """The head of a view (see `head_sql`) through a SQLAlchemy connection."""
    row = conn.exec_driver_sql(head_sql(conn.dialect.name), (code,)).first()
    return tuple(row) if row is not None else None


#: SQLite's schema cookie: it moves with every schema change (a trigger dropped, replaced
#: or added included), so the armed-trigger count need only be re-counted when it moves.
SQLITE_SCHEMA_VERSION_SQL = "SELECT schema_version FROM pragma_schema_version()"
#: Moves whenever another connection has committed since this one last asked.
SQLITE_DATA_VERSION_SQL = "PRAGMA data_version"
#: Heads a StampReader answers again while SQLite's data version stands still.
MAX_REMEMBERED_HEADS = 4096


class StampReader:
    """The one query a cached view costs: `head_sql` on a connection of its own.

    The connection is taken out of the engine's pool once and kept in autocommit, so a
    read is a single statement round trip (no checkout, no BEGIN/ROLLBACK) that sees the
    latest committed rows. Safe to call from the event loop and from worker threads.

    On SQLite the head reads the schema version instead of counting the armed triggers in
    `sqlite_master` (a scan of the schema, most of the statement's cost): the count is
    taken again, in a second statement, whenever the version differs from the one it was
    taken at, and put in the head in its place, so callers see the same head.

    Also on SQLite, a read first asks `PRAGMA data_version`, which moves whenever any other
    connection (any process: ours, a worker, the sqlite3 shell) has committed anything
    since this connection last asked. While it stands still the database is exactly as it
    was at the last read, so the heads read since then are answered again from memory; the
    first read after it moves forgets them all. The pragma is the cheapest statement that
    still opens a read transaction on the file (about a third of the head query's cost,
    which in a loaded API process was a sixth of a cached answer's CPU), and nothing it
    skips could have changed. PostgreSQL has no such counter; there every read is the
    head query.
    """

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.dialect = engine.dialect.name
        self.sql = head_sql(self.dialect)
        self._guard_sql = f"SELECT ({stamp_guard_sql(self.dialect)})"
        if self.dialect == "sqlite":
            self.sql = self.sql.replace(
                f"({stamp_guard_sql(self.dialect)})", f"({SQLITE_SCHEMA_VERSION_SQL})"
            )
        #: (schema version, armed-trigger count at that version); SQLite only.
        self._guard: tuple[Any, Any] | None = None
        #: SQLite: `PRAGMA data_version` at the last read, and the heads read since.
        self._data_version: Any = None
        self._heads: dict[str, tuple[Any, ...] | None] = {}
        #: Head queries run (reads answered from memory are not counted), for tests.
        self.head_queries = 0
        self._conn: Any = None
        self._lock = threading.Lock()

    def _connect(self) -> Any:
        proxied = self.engine.raw_connection()
        dbapi: Any = proxied.driver_connection
        proxied.detach()  # ours for good: never returned to (or reset by) the pool
        if self.dialect == "sqlite":
            dbapi.isolation_level = None  # autocommit: every SELECT sees the latest commit
        else:
            dbapi.autocommit = True
        return dbapi

    def read(self, code: str) -> tuple[Any, ...] | None:
        with self._lock:
            try:
                if self._conn is None:
                    self._conn = self._connect()
                if self.dialect != "sqlite":
                    self.head_queries += 1
                    row = self._conn.execute(self.sql, (code,)).fetchone()
                    return tuple(row) if row is not None else None
                version = self._conn.execute(SQLITE_DATA_VERSION_SQL).fetchone()[0]
                if version == self._data_version and code in self._heads:
                    return self._heads[code]
                if version != self._data_version:
                    self._heads.clear()
                    self._data_version = version
                head = self._read_sqlite(code)
                if len(self._heads) >= MAX_REMEMBERED_HEADS:
                    self._heads.clear()
                self._heads[code] = head
                return head
            except Exception:
                self._close()
                raise

    def _read_sqlite(self, code: str) -> tuple[Any, ...] | None:
        self.head_queries += 1
        row = self._conn.execute(self.sql, (code,)).fetchone()
        if row is None:
            return None
        version = row[HEAD_ROW + 1]
        guard = self._guard
        if guard is None or guard[0] != version:
            armed = self._conn.execute(self._guard_sql).fetchone()
            guard = self._guard = (version, armed[0] if armed else None)
        return (*row[: HEAD_ROW + 1], guard[1])

    def _close(self) -> None:
        conn, self._conn = self._conn, None
        self._guard = None
        self._data_version = None
        self._heads.clear()
        if conn is not None:
            try:
                conn.close()
            except Exception:  # pragma: no cover - a broken connection is dropped anyway
                log.debug("closing the stamp connection failed", exc_info=True)

    def close(self) -> None:
        with self._lock:
            self._close()


def _batch_facts_sql(dialect: str, ids: int) -> str:
    ph = placeholder(dialect)
    return (
        f"SELECT r.id, {LEAF_BATCH_SQL}, {LEAF_INDEX_SQL}, o.leaf_hash, b.status, b.root, b.size,"
        " b.chain_id, b.registry_address, b.tx_hash, b.block_number, b.block_timestamp,"
        f" {QUEUED_SQL}"
        " FROM records r"
        " LEFT JOIN outbox o ON o.record_id = r.id"
        f" LEFT JOIN batches b ON b.seq = {COVERING_BATCH_SQL} AND b.first_seq <= o.seq"
        f" WHERE r.id IN ({', '.join([ph] * ids)})"
    )


def read_batch_facts(conn: Connection, ids: Sequence[str]) -> dict[str, tuple[Any, ...]]:
    """Per record id: (batch seq, leaf index, batch leaf hash, batch status, root, size,
    chain id, registry, tx hash, block number, block timestamp, queued). The leaf, its
    batch and whether it still waits are read in one statement, so a batch closing
    meanwhile is never seen half done."""
    dialect = conn.dialect.name
    facts: dict[str, tuple[Any, ...]] = {}
    for i in range(0, len(ids), _CHUNK):
        chunk = tuple(ids[i : i + _CHUNK])
        for row in conn.exec_driver_sql(_batch_facts_sql(dialect, len(chunk)), chunk):
            facts[row[0]] = tuple(row[1:])
    return facts


def read_batch_leaves(conn: Connection, seq: int) -> list[str]:
    """The leaf hashes of batch `seq`, in leaf order."""
    sql = (
        "SELECT o.leaf_hash FROM batches b JOIN outbox o"
        " ON o.seq >= b.first_seq AND o.seq <= b.last_seq"
        f" WHERE b.seq = {placeholder(conn.dialect.name)} ORDER BY o.seq"
    )
    return [h for (h,) in conn.exec_driver_sql(sql, (seq,))]


def read_known_batches(conn: Connection) -> int:
    """The highest batch sequence number the database knows (0 for none)."""
    return int(conn.exec_driver_sql(KNOWN_BATCHES_SQL).scalar() or 0)


def read_signature_check(
    conn: Connection, sha256: str, context: str
) -> tuple[str, str, float, str] | None:
    """The stored verdict row (code, verdict, checked_at, mac) of a file under a context."""
    ph = placeholder(conn.dialect.name)
    row = conn.exec_driver_sql(
        "SELECT code, verdict, checked_at, mac FROM signature_checks"
        f" WHERE sha256 = {ph} AND context = {ph}",
        (sha256, context),
    ).first()
    if row is None:
        return None
    return str(row[0]), str(row[1]), float(row[2]), str(row[3])


def write_signature_check(
    engine: Engine,
    sha256: str,
    context: str,
    code: str,
    verdict: str,
    checked_at: float,
    mac: str,
) -> None:
    """Store (replace) the verdict row of a file under a context, in its own transaction."""
    ph = placeholder(engine.dialect.name)
    with engine.begin() as conn:
        conn.exec_driver_sql(
            f"DELETE FROM signature_checks WHERE sha256 = {ph} AND context = {ph}",
            (sha256, context),
        )
        conn.exec_driver_sql(
            "INSERT INTO signature_checks (sha256, context, code, verdict, checked_at, mac)"
            f" VALUES ({ph}, {ph}, {ph}, {ph}, {ph}, {ph})",
            (sha256, context, code, verdict, checked_at, mac),
        )
