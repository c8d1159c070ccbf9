"""The public view of a report: its standing, its masked summary and its checked history.

A view checks the report's whole ancestry against its anchored batches:

1. the stored canonical bytes hash to the record's leaf (and parse back to the same id/type);
2. every file the record names is in the blob store with that SHA-256;
3. the record's `parents` are the leaf hashes of the rows its parent links lead to;
4. the leaf sits in its batch: the audit path built from the stored batch leaves leads to
   the batch root, and `anchorOf(root)` on the chain and the `Anchored` event of the
   batch transaction agree with the batch (verifier.proof, the same checks an auditor runs);
   a record is *pending* only while its leaf waits in the outbox or its batch is on its way
   to the chain: one in neither, or whose batch row is gone, lost its anchoring evidence and
   fails (数据异常 naming the step), and so does a waiting record when the chain's
   `batchCount` is beyond the last batch the database knows (anchored batches dropped);
5. the sealed PDF's signature (verifier.pdf), under the rule of `SignatureVerdicts`.

What is cached, and what every view still reads (the checks are real on every view):

- A record that was checked is cached under everything its check read (canonical bytes,
  leaf columns, batch row, parent leaves, the blob files' size/mtime/ctime/inode), so a
  changed row or a swapped file is rechecked while an unchanged record costs a tuple
  comparison.
- A finished view (no pending or unavailable check) is kept with what it was built from:
  the report code row, the evidence change stamp, and the stat of every blob file it read.
  Migration 0004_change_stamp installs triggers that add one to `evidence_stamp.counter` on
  every UPDATE/DELETE of records, record files, parent links, batch leaves and of a batch's
  anchored facts. Every view reads, in one query, the code row, the counter and whether
  those triggers are in place (`StampReader`), and `os.stat`s the files; when all of it is
  as it was, the view's checks still hold and its JSON is answered as it is. Anything else
  (the counter moved, a trigger is missing or disabled, a file's stat changed, the view is
  older than VIEW_MAX_AGE_S) rebuilds the view, re-reading every row and re-checking what
  differs from its cached inputs.
  Deleting a batch or a batch leaf moves the stamp (0004's delete triggers); a view whose
  checks found lost anchoring evidence is not kept as final (putting rows back is an
  INSERT, which does not move the stamp), so it is rebuilt on every request.
- The report's revocation is read from the contract and reused for REVOCATION_TTL_S
  seconds; anchors, once confirmed, never change and are kept.
"""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import io
import logging
import os
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

import orjson
from sqlalchemy import Connection, Engine
from sqlalchemy.orm import Session, sessionmaker

from service.anchoring.chaininfo import ChainInfo
from service.clock import rfc3339
from service.domain.codes import InvalidCode, parse_code
from service.domain.masking import (  # noqa: F401 - re-exported for callers of this module
    mask_id_number,
    mask_name,
    mask_phone,
    mask_text,
    mask_value,
)
from service.settings import Settings
from service.storage.blobs import BlobStore, sha256_file
from verifier.canonical import canonicalize, loads_strict
from verifier.chain import RpcClient, report_subject
from verifier.errors import CanonicalizationError, ChainError
from verifier.merkle import audit_path, leaf_hash
from verifier.models import AnchorInfo, AnchorRef, BatchInfo, Proof, Receipt, RevocationInfo
from verifier.pdf import PdfVerification, verify_sealed_pdf
from verifier.proof import PROOF_FORMAT, Pins, evaluate_proof

log = logging.getLogger(__name__)

Status = Literal["genuine", "revoked", "superseded", "pending_anchor", "tampered"]
CheckState = Literal["verified", "pending", "failed", "unavailable"]

#: Seconds a revocation read from the contract is reused (never longer).
REVOCATION_TTL_S = 3.0
#: Age at which a cached view's revocation is re-read in the background (one read per
#: code at a time), so requests keep being answered from the cache meanwhile.
REVOCATION_REFRESH_S = 2.0
#: Seconds an unreachable chain is not asked again (views answer from what is cached).
CHAIN_RETRY_S = 5.0
#: Timeout of one JSON-RPC read made while answering a public request.
CHAIN_TIMEOUT_S = 3.0
#: Most records one report's ancestry may hold before the view refuses to walk further.
MAX_ANCESTRY = 2_000
#: Most report views kept in the in-process cache.
MAX_CACHED_VIEWS = 10_000
#: Seconds a finished view is answered from its cache before it is rebuilt from the rows
#: regardless of the change stamp (bounds anything the triggers cannot see, such as a
#: database restored from a backup or a witness record added later under a sample).
VIEW_MAX_AGE_S = 60.0
#: Age at which a cached view is rebuilt and re-checked in the background.
VIEW_RECHECK_S = 45.0
#: Seconds a stored signature verdict is used before the PDF is validated again
#: (certificate validity is judged at validation time).
SIGNATURE_VERDICT_MAX_AGE_S = 24 * 3600.0
#: Version of the signature-verdict rule; stored verdicts of another version are ignored.
SIGNATURE_RULE = "verify_sealed_pdf/check_qr=0/v1"
#: Locks that make concurrent builds of one view wait for each other (striped by code).
BUILD_STRIPES = 64
#: Most raw code spellings remembered with their canonical form.
MAX_CODE_SPELLINGS = 50_000

#: The statement every stamp trigger runs (migration 0004_change_stamp).
STAMP_BUMP = "UPDATE evidence_stamp SET counter = counter + 1 WHERE id = 1"
_STAMP_TABLES = ("records", "record_files", "record_parents", "batch_leaves")
#: The triggers that move the change stamp, per dialect (migration 0004_change_stamp).
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

#: Timeline order (project -> ... -> report) and the labels a person sees.
STEP_ORDER: dict[str, int] = {
    "project": 0,
    "contract": 1,
    "commission": 2,
    "sample": 3,
    "seal": 4,
    "witness": 5,
    "media": 6,
    "receipt": 7,
    "test_record": 8,
    "numbering_void": 9,
    "report": 10,
    "revocation": 11,
}
STEP_LABELS: dict[str, tuple[str, str]] = {
    "project": ("工程项目", "Project"),
    "contract": ("检测合同", "Contract"),
    "commission": ("委托单", "Commission"),
    "sample": ("样品", "Sample"),
    "seal": ("电子封志", "Sample seal"),
    "witness": ("见证记录", "Witness record"),
    "media": ("影像资料", "Key images"),
    "receipt": ("收样验封", "Receipt"),
    "test_record": ("检测数据", "Test record"),
    "numbering_void": ("编号作废", "Number voided"),
    "report": ("检测报告", "Report"),
    "revocation": ("作废/更正", "Revocation"),
}
REPORT_ROLE_LABELS: dict[str, tuple[str, str]] = {
    "issue": ("报告赋码", "Report code issued"),
    "metadata": ("报告信息", "Report details"),
    "pdf": ("报告签章", "Report sealed"),
}
STATUS_LABELS: dict[str, tuple[str, str]] = {
    "genuine": ("真实有效", "Genuine"),
    "revoked": ("已作废", "Revoked"),
    "superseded": ("已更正", "Superseded"),
    "pending_anchor": ("待上链", "Pending anchor"),
    "tampered": ("数据异常", "Data anomaly"),
    "unknown": ("未找到", "Not found"),
}

#: Longest text shown for one detail of a step.
MAX_DETAIL_CHARS = 200
#: Most values one list-valued detail of a step (witness activities) carries.
MAX_DETAIL_ITEMS = 12
#: Details that are points in time: RFC 3339 UTC in the JSON (whatever offset the record
#: carries), shown in Beijing time on the page.
TIME_FIELDS = frozenset(
    {"sampled_at", "sealed_at", "witnessed_at", "taken_at", "received_at", "tested_at"}
)

class UnknownCode(Exception):
    """No report code of that form was ever issued."""


# --- what one view reads from the database ---------------------------------------------------


@dataclass(frozen=True)
class CodeRow:
    code: str
    institution: str
    institution_name: str | None
    report_no: str
    project_record_id: str | None
    issued_at: Any
    issue_record_id: str
    report_record_id: str | None
    pdf_record_id: str | None
    sealed_at: Any
    revocation_record_id: str | None
    superseded_by: str | None
    status: str


@dataclass(frozen=True)
class RecordRow:
    id: str
    type: str
    institution: str
    canonical: bytes
    leaf_hash: str
    created_at: Any
    batch_seq: int | None
    leaf_index: int | None
    batch_leaf_hash: str | None
    batch_status: str | None
    batch_root: str | None
    batch_size: int | None
    batch_chain_id: int | None
    batch_registry: str | None
    batch_tx_hash: str | None
    batch_block_number: int | None
    batch_block_timestamp: int | None
    #: The record's leaf waits in the outbox for its batch (read in the same statement as
    #: its batch leaf, so the worker moving it is never seen half done).
    queued: bool = False

    @property
    def batch_key(self) -> tuple[Any, ...]:
        return (
            self.queued,
            self.batch_seq,
            self.leaf_index,
            self.batch_leaf_hash,
            self.batch_status,
            self.batch_root,
            self.batch_size,
            self.batch_chain_id,
            self.batch_registry,
            self.batch_tx_hash,
            self.batch_block_number,
            self.batch_block_timestamp,
        )


def _placeholder(dialect: str) -> str:
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
        f" WHERE c.code = {_placeholder(dialect)}"
    )


#: Columns of the code row in a head tuple; then the stamp, then the armed-trigger count.
_HEAD_ROW = 13


def stamp_armed(dialect: str, head: Sequence[Any]) -> bool:
    """Whether every stamp trigger was in place when `head` was read."""
    expected = len(STAMP_TRIGGERS.get(dialect, ()))
    return expected > 0 and head[_HEAD_ROW] is not None and head[_HEAD_ROW + 1] == expected


def _ancestry_sql(dialect: str, roots: int) -> str:
    """Every record reachable from the roots through parent links, plus the witness and
    seal records that hang off a sample reached (they are not ancestors of the report),
    with their own ancestry; each with its batch leaf and batch."""
    ph = _placeholder(dialect)
    return (
        "WITH RECURSIVE anc(id) AS ("
        f" SELECT id FROM records WHERE id IN ({', '.join([ph] * roots)})"
        " UNION SELECT p.parent_id FROM record_parents p JOIN anc ON p.child_id = anc.id"
        "), side(id) AS ("
        " SELECT p.child_id FROM record_parents p"
        " JOIN records s ON s.id = p.parent_id AND s.type = 'sample'"
        " JOIN records c ON c.id = p.child_id AND c.type IN ('witness', 'seal')"
        " WHERE p.parent_id IN (SELECT id FROM anc)"
        "), everything(id) AS ("
        " SELECT id FROM anc UNION SELECT id FROM side"
        " UNION SELECT p.parent_id FROM record_parents p JOIN everything e ON p.child_id = e.id"
        ") SELECT r.id, r.type, r.institution, r.canonical, r.leaf_hash, r.created_at,"
        " bl.batch_seq, bl.leaf_index, bl.leaf_hash, b.status, b.root, b.size, b.chain_id,"
        " b.registry_address, b.tx_hash, b.block_number, b.block_timestamp,"
        " CASE WHEN o.record_id IS NULL THEN 0 ELSE 1 END"
        " FROM everything e JOIN records r ON r.id = e.id"
        " LEFT JOIN batch_leaves bl ON bl.record_id = r.id"
        " LEFT JOIN batches b ON b.seq = bl.batch_seq"
        " LEFT JOIN outbox o ON o.record_id = r.id"
        f" LIMIT {MAX_ANCESTRY + 1}"
    )


def _edges_sql(dialect: str, children: int) -> str:
    ph = _placeholder(dialect)
    return (
        "SELECT child_id, parent_id, position FROM record_parents"
        f" WHERE child_id IN ({', '.join([ph] * children)})"
    )


def _batch_leaves_sql(dialect: str) -> str:
    return (
        "SELECT leaf_hash FROM batch_leaves"
        f" WHERE batch_seq = {_placeholder(dialect)} ORDER BY leaf_index"
    )


#: The highest batch the database knows (compared with the chain's `batchCount`).
KNOWN_BATCHES_SQL = "SELECT max(seq) FROM batches"


def read_head(conn: Connection, code: str) -> tuple[Any, ...] | None:
    """The head of a view (see `head_sql`) through a SQLAlchemy connection."""
    row = conn.exec_driver_sql(head_sql(conn.dialect.name), (code,)).first()
    return tuple(row) if row is not None else None


def load_code(session: Session, code: str) -> CodeRow | None:
    head = read_head(session.connection(), code)
    return CodeRow(*head[:_HEAD_ROW]) if head is not None else None


def load_ancestry(
    session: Session, roots: Sequence[str]
) -> tuple[dict[str, RecordRow], dict[str, list[str]]]:
    """Every record of a report's view (see `_ancestry_sql`) and the parent links among
    them (ordered by position); two queries."""
    conn = session.connection()
    dialect = conn.dialect.name
    records: dict[str, RecordRow] = {}
    for row in conn.exec_driver_sql(_ancestry_sql(dialect, len(roots)), tuple(roots)):
        batch = tuple(row[6:17])
        rec = RecordRow(
            row[0], row[1], row[2], bytes(row[3]), row[4], row[5],
            batch[0], batch[1], batch[2], batch[3], batch[4], batch[5], batch[6], batch[7],
            batch[8], batch[9], batch[10], queued=bool(row[17]),
        )
        records[rec.id] = rec
    edges: dict[str, list[tuple[int, str]]] = {}
    if records:
        ids = tuple(records)
        for child, parent, position in conn.exec_driver_sql(_edges_sql(dialect, len(ids)), ids):
            edges.setdefault(child, []).append((position, parent))
    parents = {child: [p for _, p in sorted(items)] for child, items in edges.items()}
    return records, parents


class StampReader:
    """The one query a cached view costs: `head_sql` on a connection of its own.

    The connection is taken out of the engine's pool once and kept in autocommit, so a
    read is a single statement round trip (no checkout, no BEGIN/ROLLBACK) that sees the
    latest committed rows. Safe to call from the event loop and from worker threads.
    """

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.dialect = engine.dialect.name
        self.sql = head_sql(self.dialect)
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
                row = self._conn.execute(self.sql, (code,)).fetchone()
            except Exception:
                self._close()
                raise
        return tuple(row) if row is not None else None

    def _close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            try:
                conn.close()
            except Exception:  # pragma: no cover - a broken connection is dropped anyway
                log.debug("closing the stamp connection failed", exc_info=True)

    def close(self) -> None:
        with self._lock:
            self._close()


# --- chain reads, cached -----------------------------------------------------------------


@dataclass(frozen=True)
class BatchChainData:
    node_chain_id: int
    anchor: AnchorInfo | None
    receipt: Receipt | None


class ChainReader:
    """The reads a view needs from the chain, cached: anchors are immutable once confirmed,
    revocations are reread after `revocation_ttl` seconds. Network trouble raises ChainError;
    after a failure the node is not asked again for CHAIN_RETRY_S seconds."""

    def __init__(
        self,
        rpc_url: str,
        registry: str,
        chain_id: int | None,
        *,
        revocation_ttl: float = REVOCATION_TTL_S,
        timeout: float = CHAIN_TIMEOUT_S,
    ) -> None:
        self.rpc = RpcClient(rpc_url, timeout=timeout)
        self.registry = registry
        self.chain_id = chain_id
        self.revocation_ttl = revocation_ttl
        self._node_chain_id: int | None = None
        self._batches: dict[tuple[str, str], BatchChainData] = {}
        self._revocations: dict[str, tuple[float, RevocationInfo | None]] = {}
        self._batch_count: tuple[float, int] | None = None
        self._down_until = 0.0
        self._lock = threading.Lock()

    def _guard(self, fn: Callable[[], Any]) -> Any:
        if time.monotonic() < self._down_until:
            raise ChainError("chain endpoint recently unreachable", code="chain_unreachable")
        try:
            return fn()
        except ChainError as exc:
            if exc.unreachable:
                self._down_until = time.monotonic() + CHAIN_RETRY_S
            raise

    def node_chain_id(self) -> int:
        if self._node_chain_id is None:
            self._node_chain_id = int(self._guard(self.rpc.chain_id))
        return self._node_chain_id

    def batch_data(self, root: str, tx_hash: str) -> BatchChainData:
        key = (root, tx_hash)
        cached = self._batches.get(key)
        if cached is not None:
            return cached
        node_chain_id = self.node_chain_id()
        anchor = self._guard(lambda: self.rpc.anchor_of(self.registry, bytes.fromhex(root)))
        receipt = self._guard(lambda: self.rpc.get_transaction_receipt(tx_hash))
        data = BatchChainData(node_chain_id, anchor, receipt)
        if anchor is not None and receipt is not None:
            self._batches[key] = data  # confirmed anchors never change; misses are re-read
        return data

    def revocation(self, code: str, max_age: float | None = None) -> RevocationInfo | None:
        """The revocation of `code`, re-read when the cached one is older than `max_age`
        (default: the TTL)."""
        now = time.monotonic()
        cached = self._revocations.get(code)
        limit = self.revocation_ttl if max_age is None else min(max_age, self.revocation_ttl)
        if cached is not None and now - cached[0] < limit:
            return cached[1]
        info: RevocationInfo | None = self._guard(
            lambda: self.rpc.revocation_of(self.registry, report_subject(code))
        )
        self._revocations[code] = (now, info)
        return info

    def batch_count(self) -> int:
        """The registry's `batchCount()`, re-read once it is older than the revocation TTL.
        Read only when a view has a record that looks pending (never on a genuine view)."""
        now = time.monotonic()
        cached = self._batch_count
        if cached is not None and now - cached[0] < self.revocation_ttl:
            return cached[1]
        count = int(self._guard(lambda: self.rpc.batch_count(self.registry)))
        self._batch_count = (now, count)
        return count

    def revocation_read_at(self, code: str) -> float | None:
        """When the revocation of `code` now in the cache was read (monotonic), if any."""
        cached = self._revocations.get(code)
        return cached[0] if cached is not None else None

    def revocation_fresh(self, code: str, read_at: float | None, now: float) -> bool:
        """Whether the cached revocation of `code` is still the one read at `read_at` and
        younger than the TTL (no chain call)."""
        cached = self._revocations.get(code)
        return (
            read_at is not None
            and cached is not None
            and cached[0] == read_at
            and now - read_at < self.revocation_ttl
        )

    def forget(self) -> None:
        self._batches.clear()
        self._revocations.clear()
        self._batch_count = None


# --- per-record checks ------------------------------------------------------------------


@dataclass(frozen=True)
class RecordCheck:
    """The outcome of checking one record; `problem` says why it is not verified."""

    record_id: str
    type: str
    state: CheckState
    problem: str | None = None
    problem_zh: str | None = None
    #: Failed because the record's anchoring evidence (its batch position, its batch) is
    #: gone. Putting rows back is an INSERT, which does not move the change stamp, so a
    #: view holding such a check is rebuilt on every request rather than cached.
    lost: bool = False

    @property
    def ok(self) -> bool:
        return self.state == "verified"


FileStat = tuple[int, int, int, int]
#: A file a check read: (path, its stat when it was read, or None when missing).
FileSeen = tuple[str, FileStat | None]


@dataclass
class _CacheEntry:
    key: tuple[Any, ...]
    check: RecordCheck
    body: Mapping[str, Any]
    files: tuple[tuple[str, str, int], ...]
    seen: tuple[FileSeen, ...]


def stat_path(path: str) -> FileStat | None:
    """Size, mtime, ctime and inode: a file written, replaced or touched changes it."""
    try:
        st = os.stat(path)
    except (OSError, ValueError):
        return None
    return (st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino)


def _blob_path(blobs: BlobStore, sha256: str) -> str:
    try:
        return str(blobs.path(sha256))
    except (OSError, ValueError):
        return ""


class Checker:
    """Checks records and caches the ones that passed (or failed) under everything the
    check read."""

    def __init__(self, blobs: BlobStore, chain: ChainReader | None) -> None:
        self.blobs = blobs
        self.chain = chain
        self._records: dict[str, _CacheEntry] = {}
        self._files: dict[tuple[str, FileStat], bool] = {}
        self._paths: dict[str, str] = {}
        #: Counts of full (uncached) record checks, for tests and the bench.
        self.full_checks = 0

    def clear(self) -> None:
        self._records.clear()
        self._files.clear()
        if self.chain is not None:
            self.chain.forget()

    def path(self, sha256: str) -> str:
        path = self._paths.get(sha256)
        if path is None:
            path = _blob_path(self.blobs, sha256)
            if len(self._paths) < MAX_CACHED_VIEWS * 10:
                self._paths[sha256] = path
        return path

    def file_ok(self, sha256: str, size: int) -> tuple[bool, FileSeen]:
        """Whether the blob `sha256` is there with that size and content; the stat is taken
        before the content is hashed, so a file replaced meanwhile shows up as changed."""
        path = self.path(sha256)
        stat = stat_path(path) if path else None
        seen = (path, stat)
        if stat is None or stat[0] != size:
            return False, seen
        key = (sha256, stat)
        cached = self._files.get(key)
        if cached is not None:
            return cached, seen
        ok = sha256_file(self.blobs.path(sha256)) == sha256
        if len(self._files) > MAX_CACHED_VIEWS * 10:
            self._files.clear()
        self._files[key] = ok
        return ok, seen

    def check(
        self,
        rec: RecordRow,
        parent_leaves: tuple[str, ...],
        batch_leaves: Callable[[int], list[str]],
    ) -> tuple[RecordCheck, Mapping[str, Any], tuple[FileSeen, ...]]:
        """Check one record (cached); the check, the record's parsed body, the files read."""
        entry = self._records.get(rec.id)
        if entry is not None and entry.key[0] == rec.canonical:
            seen = tuple((path, stat_path(path) if path else None) for path, _ in entry.seen)
            key = (rec.canonical, rec.leaf_hash, rec.type, parent_leaves, rec.batch_key, seen)
            if entry.key == key:
                return entry.check, entry.body, entry.seen
        self.full_checks += 1
        check, body, files, seen = self._full_check(rec, parent_leaves, batch_leaves)
        key = (rec.canonical, rec.leaf_hash, rec.type, parent_leaves, rec.batch_key, seen)
        if check.state in ("verified", "failed"):
            # a pending or unavailable check depends on the worker/chain: do it again next time
            if len(self._records) > MAX_CACHED_VIEWS * 20:
                self._records.clear()
            self._records[rec.id] = _CacheEntry(key, check, body, files, seen)
        else:
            self._records.pop(rec.id, None)
        return check, body, seen

    def _full_check(
        self,
        rec: RecordRow,
        parent_leaves: tuple[str, ...],
        batch_leaves: Callable[[int], list[str]],
    ) -> tuple[
        RecordCheck, Mapping[str, Any], tuple[tuple[str, str, int], ...], tuple[FileSeen, ...]
    ]:
        seen: list[FileSeen] = []
        check, body, files = self._full_check_inner(rec, parent_leaves, batch_leaves, seen)
        return check, body, files, tuple(seen)

    def _full_check_inner(
        self,
        rec: RecordRow,
        parent_leaves: tuple[str, ...],
        batch_leaves: Callable[[int], list[str]],
        seen: list[FileSeen],
    ) -> tuple[RecordCheck, Mapping[str, Any], tuple[tuple[str, str, int], ...]]:
        def fail(en: str, zh: str, *, lost: bool = False) -> RecordCheck:
            return RecordCheck(rec.id, rec.type, "failed", en, zh, lost)

        # (1) canonical bytes -> record, leaf
        try:
            obj = loads_strict(rec.canonical)
            if not isinstance(obj, dict):
                raise CanonicalizationError("not an object")
            canonical_again = canonicalize(obj)
        except CanonicalizationError:
            return fail("stored record is not valid canonical JSON", "存证记录无法解析"), {}, ()
        raw_body = obj.get("body")
        body: Mapping[str, Any] = raw_body if isinstance(raw_body, dict) else {}
        files = _files_of(obj)
        leaf = leaf_hash(rec.canonical).hex()
        if canonical_again != rec.canonical or leaf != rec.leaf_hash:
            return (
                fail(
                    f"stored record hashes to {leaf}, not to its leaf {rec.leaf_hash}",
                    "存证记录内容与其哈希不符（记录被修改）",
                ),
                body,
                files,
            )
        if obj.get("id") != rec.id or obj.get("type") != rec.type:
            return (
                fail("record id or type differs from its row", "记录编号或类型被修改"),
                body,
                files,
            )
        # (2) files
        for role, sha, size in files:
            ok, file_seen = self.file_ok(sha, size)
            seen.append(file_seen)
            if not ok:
                return (
                    fail(
                        f"file {role} ({sha[:16]}…) is missing or its content changed",
                        f"文件（{role}）缺失或内容被替换",
                    ),
                    body,
                    files,
                )
        # (3) parents
        if tuple(obj.get("parents") or ()) != parent_leaves:
            return (
                fail("the record's parents differ from its parent links", "前序记录关联被修改"),
                body,
                files,
            )
        # (4) batch and anchor. A record is pending only while its leaf waits in the outbox
        # or sits in a batch on its way to the chain; a record that is in neither lost its
        # anchoring evidence (the worker moves a leaf from the outbox into its batch in one
        # transaction, so no committed state has it in neither).
        if rec.batch_seq is None:
            if rec.queued:
                return RecordCheck(rec.id, rec.type, "pending"), body, files
            return (
                fail(
                    "the record is neither queued for anchoring nor in any batch: its batch "
                    "position was deleted",
                    "记录不在待上链队列中，也不在任何上链批次中（上链数据被删除）",
                    lost=True,
                ),
                body,
                files,
            )
        if rec.batch_status is None:
            return (
                fail(
                    f"the record's batch {rec.batch_seq} is missing from the database",
                    f"记录所在的上链批次 {rec.batch_seq} 已从数据库中删除",
                    lost=True,
                ),
                body,
                files,
            )
        if rec.batch_status != "anchored":
            return RecordCheck(rec.id, rec.type, "pending"), body, files
        if rec.batch_leaf_hash != leaf:
            return (
                fail(
                    f"record hashes to {leaf}, batch {rec.batch_seq} holds "
                    f"{rec.batch_leaf_hash} (the record was changed)",
                    "存证记录与上链批次中的哈希不符（记录被修改）",
                ),
                body,
                files,
            )
        if self.chain is None:
            return (
                RecordCheck(rec.id, rec.type, "unavailable", "no chain configured", "未连接区块链"),
                body,
                files,
            )
        assert rec.batch_root is not None and rec.batch_size is not None
        assert rec.leaf_index is not None
        leaves = batch_leaves(rec.batch_seq)
        if len(leaves) != rec.batch_size or not 0 <= rec.leaf_index < len(leaves):
            return (
                fail(
                    f"batch {rec.batch_seq} holds {len(leaves)} leaves, "
                    f"anchored with {rec.batch_size}",
                    "上链批次的记录数与链上不符（批次被修改）",
                ),
                body,
                files,
            )
        try:
            chain_data = self.chain.batch_data(rec.batch_root, rec.batch_tx_hash or "")
        except ChainError as exc:
            return (
                RecordCheck(rec.id, rec.type, "unavailable", exc.message, "暂时无法读取区块链"),
                body,
                files,
            )
        try:
            proof = Proof(
                format=PROOF_FORMAT,
                record=obj,
                leaf_hash=bytes.fromhex(rec.batch_leaf_hash),
                batch=BatchInfo(
                    seq=rec.batch_seq,
                    tree_size=rec.batch_size,
                    leaf_index=rec.leaf_index,
                    root=bytes.fromhex(rec.batch_root),
                    path=tuple(audit_path([bytes.fromhex(h) for h in leaves], rec.leaf_index)),
                ),
                anchor=AnchorRef(
                    chain_id=int(rec.batch_chain_id or 0),
                    registry=(rec.batch_registry or "").lower(),
                    tx_hash=(rec.batch_tx_hash or "").lower(),
                    block_number=int(rec.batch_block_number or 0),
                    block_timestamp=int(rec.batch_block_timestamp or 0),
                ),
            )
        except ValueError as exc:
            return fail(f"batch data unusable: {exc}", "上链批次数据损坏"), body, files
        pins = Pins(chain_id=self.chain.chain_id, registry=self.chain.registry)
        result = evaluate_proof(
            proof,
            pins,
            node_chain_id=chain_data.node_chain_id,
            anchor_info=chain_data.anchor,
            receipt=chain_data.receipt,
        )
        if not result.bottom_line:
            first = result.findings[0]
            zh = {
                "record_hash": "存证记录与上链哈希不符（记录被修改）",
                "inclusion": "记录不在其上链批次中（批次被修改）",
                "anchor": "批次根哈希与链上存证不符",
                "anchor_event": "上链交易与批次不符",
                "chain_id": "区块链网络不符",
                "registry": "存证合约不符",
            }.get(first.check, "与链上存证不符")
            return fail(f"{first.check}: {first.message}", zh), body, files
        return RecordCheck(rec.id, rec.type, "verified"), body, files


def _files_of(obj: Mapping[str, Any]) -> tuple[tuple[str, str, int], ...]:
    out = []
    for f in obj.get("files") or ():
        if isinstance(f, dict) and isinstance(f.get("sha256"), str):
            size = f.get("size")
            out.append(
                (str(f.get("role", "")), f["sha256"], int(size) if isinstance(size, int) else -1)
            )
    return tuple(out)


# --- the view ------------------------------------------------------------------------------


@dataclass
class Signature:
    """The sealed PDF's signature as the public sees it (None fields when not checked)."""

    checked: bool
    ok: bool
    signer: str | None = None
    signed_at: str | None = None
    timestamped: bool | None = None
    detail: str | None = None

    def as_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


SignatureCheck = Callable[[bytes, str, str], Signature]


@dataclass(frozen=True)
class Checked:
    """What the checks of one view found; reused while nothing it read has changed."""

    row: CodeRow
    records: dict[str, RecordRow]
    parents: dict[str, list[str]]
    checks: dict[str, RecordCheck]
    bodies: dict[str, Mapping[str, Any]]
    signature: Signature | None
    sealed_sha: str | None
    #: Every blob file the checks read, with its stat at the time.
    files: tuple[FileSeen, ...]
    #: No check is pending or unavailable (those depend on the worker or the chain).
    final: bool
    #: time.monotonic() when the checks were made.
    checked_at: float

    def files_unchanged(self) -> bool:
        for path, stat in self.files:
            if (stat_path(path) if path else None) != stat:
                return False
        return True


@dataclass
class ReportView:
    code: str
    status: Status
    data: dict[str, Any]
    #: `data` as JSON bytes (what `GET /api/v1/public/reports/{code}` answers).
    json: bytes = b""
    #: What the view was built from: the head read (code row, stamp, armed triggers)...
    head: tuple[Any, ...] = field(repr=False, default=())
    #: ...the checks...
    checked: Checked | None = field(repr=False, default=None)
    #: ...and when the revocation it shows was read (ChainReader), if it was.
    revocation_read_at: float | None = field(repr=False, default=None)
    revocation_key: tuple[Any, ...] = field(repr=False, default=())
    #: Whether the change stamp could be trusted when the head was read.
    armed: bool = False


class SignatureVerdicts:
    """Stored signature verdicts of sealed PDFs, so a cold view need not re-parse the PDF.

    The rule. A view may use a stored verdict for the sealed PDF of report `code` only if
    all of these hold:

    - the verdict is stored under the SHA-256 the report's anchored PDF record names, and
      under the same context: the report code, the pinned trust roots, whether a
      time-stamp is required, and SIGNATURE_RULE (the verifier call it stands for);
    - the blob file on disk was hashed, at its current size/mtime/ctime/inode, to that
      SHA-256 during this view's record checks (`Checker.file_ok`): the bytes are the
      very bytes that were validated, and a verdict is a function of the bytes and the
      context alone;
    - it is younger than SIGNATURE_VERDICT_MAX_AGE_S (certificate validity is judged at
      validation time, so a verdict does not stand forever);
    - its HMAC (a key derived from the service's master key) verifies, so a row written
      into the database by hand is not believed.

    Otherwise the PDF is validated again with verifier.pdf and the new verdict stored.
    The sealing step stores the verdict of the file it has just made (`prime`), so the
    first public view of a report finds it.
    """

    def __init__(self, engine: Engine, key: bytes, context: Callable[[], str]) -> None:
        self.engine = engine
        self.dialect = engine.dialect.name
        self._key = hashlib.sha256(b"jianzheng/signature-verdict/v1\0" + key).digest()
        self._context = context

    def context(self, code: str) -> str:
        return hashlib.sha256(f"{SIGNATURE_RULE}|{code}|{self._context()}".encode()).hexdigest()

    def _mac(self, sha256: str, context: str, code: str, checked_at: float, verdict: str) -> str:
        msg = f"{sha256}|{context}|{code}|{checked_at!r}|{verdict}".encode()
        return hmac.new(self._key, msg, hashlib.sha256).hexdigest()

    def load(self, conn: Connection, sha256: str, code: str) -> tuple[Signature, float] | None:
        """The stored verdict and when it was made (time.time()), if the rule allows it.
        Read on the caller's connection (a second one per request could exhaust the pool)."""
        context = self.context(code)
        ph = _placeholder(self.dialect)
        row = conn.exec_driver_sql(
            "SELECT code, verdict, checked_at, mac FROM signature_checks"
            f" WHERE sha256 = {ph} AND context = {ph}",
            (sha256, context),
        ).first()
        if row is None:
            return None
        stored_code, verdict, checked_at, mac = row
        checked_at = float(checked_at)
        age = time.time() - checked_at
        if stored_code != code or not -60.0 <= age < SIGNATURE_VERDICT_MAX_AGE_S:
            return None
        if not hmac.compare_digest(mac, self._mac(sha256, context, code, checked_at, verdict)):
            log.warning("stored signature verdict for %s fails its MAC; ignored", code)
            return None
        try:
            fields = orjson.loads(verdict)
            return Signature(**fields), checked_at
        except (orjson.JSONDecodeError, TypeError):
            return None

    def store(self, sha256: str, code: str, signature: Signature) -> float:
        context = self.context(code)
        checked_at = time.time()
        verdict = orjson.dumps(signature.as_json()).decode()
        mac = self._mac(sha256, context, code, checked_at, verdict)
        ph = _placeholder(self.dialect)
        with self.engine.begin() as conn:
            conn.exec_driver_sql(
                f"DELETE FROM signature_checks WHERE sha256 = {ph} AND context = {ph}",
                (sha256, context),
            )
            conn.exec_driver_sql(
                "INSERT INTO signature_checks (sha256, context, code, verdict, checked_at, mac)"
                f" VALUES ({ph}, {ph}, {ph}, {ph}, {ph}, {ph})",
                (sha256, context, code, verdict, checked_at, mac),
            )
        return checked_at


def display_code(code: str) -> str:
    """The code as printed for reading aloud (440300-26-K7QZ3-M9XB2-T, INTERFACE.md §4).

    The signer owns the grouping (it cannot import the service) so the stamp on the PDF
    and the public page show the same form; imported here so that loading this module
    does not pull in the signer's PDF and image libraries.
    """
    from signer.stamp import group_code

    return group_code(code)


def _iso(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, datetime):
        return rfc3339(value)
    if isinstance(value, int | float):
        return rfc3339(value)
    text_value = str(value)
    # SQLite returns "YYYY-MM-DD HH:MM:SS[.ffffff][+00:00]"
    try:
        return _iso(datetime.fromisoformat(text_value))
    except ValueError:
        return text_value


def _g(obj: Any, *path: str) -> Any:
    for key in path:
        if not isinstance(obj, Mapping):
            return None
        obj = obj.get(key)
    return obj


def _org(value: Any) -> Any:
    return value.get("name") if isinstance(value, Mapping) else value


def _person(value: Any) -> str | None:
    name = value.get("name") if isinstance(value, Mapping) else value
    return mask_name(str(name)) if name else None


def _details(type_: str, b: Mapping[str, Any]) -> dict[str, Any]:
    """The facts of each record type a person checking a report wants to see."""
    signed = b.get("signed") if isinstance(b.get("signed"), Mapping) else {}
    if type_ == "project":
        return {
            "name": b.get("name"),
            "project_no": b.get("project_no"),
            "location": b.get("location"),
            "builder": _org(b.get("construction_unit")),
            "supervisor": _org(b.get("supervision_unit")),
            "constructor": _org(b.get("contractor")),
        }
    if type_ == "contract":
        raw_parties = b.get("parties")
        parties: list[Any] = raw_parties if isinstance(raw_parties, list) else []
        return {
            "contract_no": b.get("contract_no"),
            "signed_on": b.get("signed_on"),
            "client": "、".join(
                str(_org(p)) for p in parties if isinstance(p, Mapping) and p.get("role") != "lab"
            ),
        }
    if type_ == "commission":
        raw_items = b.get("items")
        items: list[Any] = raw_items if isinstance(raw_items, list) else []
        return {
            "commission_no": b.get("commission_no"),
            "client": _org(b.get("client")),
            "items": "、".join(str(_org(i)) for i in items),
        }
    if type_ == "sample":
        qty = b.get("quantity")
        return {
            "sample_code": b.get("sample_code"),
            "sample_name": b.get("name"),
            "specification": " ".join(
                str(v) for v in (b.get("material"), b.get("specification")) if v
            ),
            "quantity": f"{qty:g} {b.get('unit', '')}".strip() if isinstance(qty, int | float)
            else None,
            "sampled_at": b.get("sampled_at"),
            "location": b.get("sampling_location"),
        }
    if type_ == "seal":
        return {
            "sample_code": b.get("sample_code"),
            "sealed_at": _g(signed, "sealed_at"),
            "place": _g(signed, "place"),
            "witness": _person(b.get("witness")),
        }
    if type_ == "witness":
        activities = _g(signed, "activities")
        return {
            "witness": _person(b.get("witness")),
            "witness_unit": _g(b, "witness", "unit"),
            "witnessed_at": _g(signed, "witnessed_at"),
            "place": _g(signed, "location"),
            "activities": [str(a) for a in activities] if isinstance(activities, list) else None,
        }
    if type_ == "media":
        return {
            "kind": b.get("kind"),
            "taken_at": b.get("captured_at"),
            "description": b.get("description"),
        }
    if type_ == "receipt":
        return {
            "received_at": b.get("received_at"),
            "received_by": _person(b.get("received_by")),
            "seal_intact": b.get("seal_intact"),
            "seal_check": _seal_check_passed(b),
        }
    if type_ == "test_record":
        return {
            "test_item": b.get("test_item"),
            "standard": b.get("standard"),
            "device": " ".join(
                str(v) for v in (_g(b, "device", "name"), _g(b, "device", "id")) if v
            ),
            "tested_at": b.get("finished_at"),
            "tester": _person(b.get("tester")),
            "correction_reason": b.get("correction_reason"),
        }
    if type_ == "report":
        return {
            "report_no": b.get("report_no") if b.get("event") == "code_issued" else None,
            "conclusion": b.get("conclusion"),
            "issued_on": b.get("issued_on"),
            "approver": _person(b.get("approver")),
        }
    if type_ == "revocation":
        return {"reason": b.get("reason"), "superseded_by": b.get("superseded_by")}
    return {}


def _seal_check_passed(body: Mapping[str, Any]) -> bool | None:
    """The receipt's re-verification of the seal (`domain.seals`): passed, failed, or absent."""
    result = _g(body, "seal_check", "result")
    return {"pass": True, "fail": False}.get(result) if isinstance(result, str) else None


def public_fields(type_: str, body: Mapping[str, Any]) -> dict[str, Any]:
    """The masked facts of a record body the public page shows (None/empty dropped)."""
    out: dict[str, Any] = {}
    for key, value in _details(type_, body).items():
        if value is None or value == "" or isinstance(value, Mapping):
            continue
        if isinstance(value, bool):
            out[key] = value
        elif isinstance(value, list):
            items = [_detail_text(v) for v in value[:MAX_DETAIL_ITEMS] if _scalar(v)]
            if items:
                out[key] = items
        elif key in TIME_FIELDS and (stamp := _utc_rfc3339(value)) is not None:
            out[key] = stamp
        else:
            out[key] = _detail_text(value)
    return out


def _scalar(value: Any) -> bool:
    return value is not None and value != "" and not isinstance(value, Mapping | list)


def _detail_text(value: Any) -> str:
    text_value = mask_text(str(value))
    if len(text_value) > MAX_DETAIL_CHARS:
        text_value = text_value[: MAX_DETAIL_CHARS - 1] + "…"
    return text_value


def _utc_rfc3339(value: Any) -> str | None:
    """An RFC 3339 time with an offset as UTC (`...Z`); None when it is not one."""
    if not isinstance(value, str):
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    if parsed.tzinfo is None:
        return None
    return rfc3339(parsed)


class ReportViews:
    """Builds report views; one per service process (state.extras["public_views"])."""

    def __init__(
        self,
        blobs: BlobStore,
        chain: ChainReader | None,
        signature_check: SignatureCheck | None,
        base_url: str,
        *,
        stamp: StampReader | None = None,
        verdicts: SignatureVerdicts | None = None,
    ) -> None:
        self.blobs = blobs
        self.checker = Checker(blobs, chain)
        self.chain = chain
        self.signature_check = signature_check
        self.base_url = base_url.rstrip("/")
        self.stamp = stamp
        self.verdicts = verdicts
        #: (code, sha256, file stat) -> (verdict, time.time() it was made)
        self._signatures: dict[tuple[str, str, FileStat | None], tuple[Signature, float]] = {}
        self._views: dict[str, ReportView] = {}
        self._spellings: dict[str, str | None] = {}
        #: Rebuilds the view of a code off the request path (set by the service; it opens
        #: a session and calls `view(session, code, refresh=True)`).
        self.refresher: Callable[[str], object] | None = None
        self._refreshing: set[str] = set()
        self._refresh_pool: ThreadPoolExecutor | None = None
        self._refresh_lock = threading.Lock()
        self._stripes = [threading.Lock() for _ in range(BUILD_STRIPES)]
        self._pending: set[Future[None]] = set()
        #: Views answered from the cache without any check redone, for tests and the bench.
        self.cached_answers = 0
        #: Full PDF signature validations views made, for tests and the bench.
        self.signature_validations = 0
        #: Sealed PDFs validated by the sealing step (`prime_signature`).
        self.signatures_primed = 0

    def clear(self) -> None:
        """Forget every cached check in this process (the bench's uncached path); stored
        signature verdicts stay (see SignatureVerdicts)."""
        self.checker.clear()
        self._signatures.clear()
        self._views.clear()

    def canonical(self, code_text: str) -> str | None:
        """The canonical form of a code as typed, or None when it cannot be a code."""
        canonical = self._spellings.get(code_text, "")
        if canonical != "":
            return canonical
        try:
            canonical = parse_code(code_text).canonical
        except InvalidCode:
            canonical = None
        if len(self._spellings) >= MAX_CODE_SPELLINGS:
            self._spellings.clear()
        self._spellings[code_text] = canonical
        return canonical

    # -- the cached answer (no check redone) --------------------------------------------

    def cached_view(self, code: str) -> ReportView | None:
        """The cached view of canonical `code` if nothing it was checked against changed.

        Costs one small query (`StampReader`) and an `os.stat` per blob file; no network
        and no hashing, so the event loop may call it. None: build the view (`view`).
        """
        view = self._views.get(code)
        if view is None or self.stamp is None or not view.armed:
            return None
        checked = view.checked
        if checked is None or not checked.final:
            return None
        now = time.monotonic()
        if now - checked.checked_at >= VIEW_MAX_AGE_S:
            return None
        if self.chain is not None and not self.chain.revocation_fresh(
            code, view.revocation_read_at, now
        ):
            return None
        try:
            head = self.stamp.read(code)
        except Exception as exc:  # the slow path reports database trouble properly
            log.warning("change stamp read failed: %s", type(exc).__name__)
            return None
        if head != view.head or not checked.files_unchanged():
            return None
        if now - checked.checked_at >= VIEW_RECHECK_S or (
            view.revocation_read_at is not None
            and now - view.revocation_read_at >= REVOCATION_REFRESH_S
        ):
            self._refresh_soon(code)
        self.cached_answers += 1
        return view

    def building(self, code: str) -> threading.Lock:
        """The lock a caller holds while it builds the view of `code`, taken before it opens
        a database session: concurrent requests for a view being built wait for it (and
        then find it cached) instead of all checking the same records at once."""
        return self._stripes[hash(code) % BUILD_STRIPES]

    def _pool(self) -> ThreadPoolExecutor:
        with self._refresh_lock:
            if self._refresh_pool is None:
                self._refresh_pool = ThreadPoolExecutor(2, thread_name_prefix="jz-view-refresh")
            return self._refresh_pool

    def _background(self, fn: Callable[..., object], *args: Any) -> None:
        def run() -> None:
            try:
                fn(*args)
            except Exception:
                log.warning("background %s failed", getattr(fn, "__name__", fn), exc_info=True)

        future = self._pool().submit(run)
        with self._refresh_lock:
            self._pending.add(future)
        future.add_done_callback(self._pending.discard)

    def drain(self, timeout: float = 30.0) -> None:
        """Wait for the background work started so far (stores, refreshes)."""
        with self._refresh_lock:
            pending = list(self._pending)
        wait(pending, timeout=timeout)

    def _refresh_soon(self, code: str) -> None:
        """Rebuild the view of `code` in the background, once at a time per code."""
        if self.refresher is None:
            return
        refresher = self.refresher
        with self._refresh_lock:
            if code in self._refreshing:
                return
            self._refreshing.add(code)
        pool = self._pool()

        def run() -> None:
            try:
                refresher(code)
            except Exception:
                log.warning("refreshing the view of %s failed", code, exc_info=True)
            finally:
                with self._refresh_lock:
                    self._refreshing.discard(code)

        future = pool.submit(run)
        with self._refresh_lock:
            self._pending.add(future)
        future.add_done_callback(self._pending.discard)

    def cached_json(self, code_text: str) -> bytes | None:
        """`cached_view` of a code as typed, as JSON bytes."""
        code = self.canonical(code_text)
        if code is None:
            return None
        view = self.cached_view(code)
        return view.json if view is not None else None

    # -- signature ----------------------------------------------------------------------

    def _signature(
        self, conn: Connection, code: str, sealed_sha: str, size: int
    ) -> tuple[Signature, FileSeen]:
        """The sealed PDF's verdict, and the file as it was when its hash was checked."""
        ok, seen = self.checker.file_ok(sealed_sha, size)
        if self.signature_check is None:
            return (
                Signature(checked=False, ok=False, detail="signature checking not configured"),
                seen,
            )
        if not ok:
            detail = "the sealed PDF is missing or differs from its anchored SHA-256"
            return Signature(checked=True, ok=False, detail=detail), seen
        path, stat = seen
        key = (code, sealed_sha, stat)
        now = time.time()
        memo = self._signatures.get(key)
        if memo is not None and now - memo[1] < SIGNATURE_VERDICT_MAX_AGE_S:
            return memo[0], seen
        stored = self.verdicts.load(conn, sealed_sha, code) if self.verdicts else None
        if stored is not None:
            sig, made_at = stored
        else:
            sig = self._validate(code, sealed_sha, path)
            made_at = now
            if self.verdicts is not None and sig.checked:
                self._background(self.verdicts.store, sealed_sha, code, sig)
        if len(self._signatures) >= MAX_CACHED_VIEWS:
            self._signatures.clear()
        self._signatures[key] = (sig, made_at)
        return sig, seen

    def _validate(self, code: str, sealed_sha: str, path: str) -> Signature:
        assert self.signature_check is not None
        self.signature_validations += 1
        try:
            with open(path, "rb") as fh:
                data = fh.read()
            if hashlib.sha256(data).hexdigest() != sealed_sha:
                return Signature(checked=True, ok=False, detail="sealed PDF changed while read")
            return self.signature_check(data, code, sealed_sha)
        except Exception as exc:  # a broken file is a failed check, not a crash
            log.warning("signature check of %s failed: %s", code, type(exc).__name__)
            return Signature(checked=True, ok=False, detail="sealed PDF unreadable")

    def prime_signature(self, code: str, sealed_sha: str, data: bytes) -> Signature | None:
        """Validate a freshly sealed PDF and store its verdict (the sealing step's result
        under the rule of SignatureVerdicts)."""
        if self.signature_check is None or self.verdicts is None:
            return None
        if hashlib.sha256(data).hexdigest() != sealed_sha:
            return None
        self.signatures_primed += 1
        sig = self.signature_check(data, code, sealed_sha)
        self.verdicts.store(sealed_sha, code, sig)
        return sig

    # -- the view -------------------------------------------------------------------------

    def view(self, session: Session, code: str, *, refresh: bool = False) -> ReportView:
        """The checked view of `code` (canonical form); raises UnknownCode.

        `refresh`: a background rebuild ahead of expiry: re-read the revocation and, when
        the checks are VIEW_RECHECK_S old, redo them."""
        if not refresh:
            cached = self.cached_view(code)
            if cached is not None:
                return cached
        conn = session.connection()
        dialect = conn.dialect.name
        head = read_head(conn, code)  # before any record is read: a later change moves it
        if head is None:
            raise UnknownCode(code)
        armed = self.stamp is not None and stamp_armed(dialect, head)
        row = CodeRow(*head[:_HEAD_ROW])
        prev = self._views.get(code)
        checked: Checked | None = None
        if (
            prev is not None
            and armed
            and prev.armed
            and prev.head == head
            and prev.checked is not None
            and prev.checked.final
            and time.monotonic() - prev.checked.checked_at < VIEW_RECHECK_S
            and prev.checked.files_unchanged()
        ):
            checked = prev.checked  # only the revocation is read again
        else:
            checked = self._check(session, row)

        revocation_chain: RevocationInfo | None = None
        chain_revocation_error: str | None = None
        revocation_read_at: float | None = None
        if self.chain is not None:
            try:
                revocation_chain = self.chain.revocation(
                    code, REVOCATION_REFRESH_S if refresh else None
                )
                revocation_read_at = self.chain.revocation_read_at(code)
            except ChainError as exc:
                chain_revocation_error = exc.message
        revocation_key = (revocation_chain, chain_revocation_error is not None)

        if prev is not None and prev.checked is checked and prev.revocation_key == revocation_key:
            data, status, body = prev.data, prev.status, prev.json
        else:
            built = self._build(checked, revocation_chain)
            data, status, body = built.data, built.status, orjson.dumps(built.data)
        view = ReportView(
            code=code,
            status=status,
            data=data,
            json=body,
            head=head,
            checked=checked,
            revocation_read_at=revocation_read_at,
            revocation_key=revocation_key,
            armed=armed,
        )
        if len(self._views) >= MAX_CACHED_VIEWS and code not in self._views:
            self._views.clear()
        self._views[code] = view
        return view

    def _check(self, session: Session, row: CodeRow) -> Checked:
        """Every check of the report's records and its sealed PDF."""
        conn = session.connection()
        dialect = conn.dialect.name
        final_id = row.pdf_record_id or row.report_record_id or row.issue_record_id
        roots = [final_id]
        if row.revocation_record_id:
            roots.append(row.revocation_record_id)
        records, parents = load_ancestry(session, roots)

        leaf_cache: dict[int, list[str]] = {}

        def batch_leaves(seq: int) -> list[str]:
            if seq not in leaf_cache:
                leaf_cache[seq] = [
                    h for (h,) in conn.exec_driver_sql(_batch_leaves_sql(dialect), (seq,))
                ]
            return leaf_cache[seq]

        checks: dict[str, RecordCheck] = {}
        bodies: dict[str, Mapping[str, Any]] = {}
        files: list[FileSeen] = []
        for rec in records.values():
            parent_leaves = tuple(
                records[p].leaf_hash if p in records else "" for p in parents.get(rec.id, ())
            )
            checks[rec.id], bodies[rec.id], seen = self.checker.check(
                rec, parent_leaves, batch_leaves
            )
            files.extend(seen)

        # Pending only while the evidence can still be anchored: the chain's batchCount
        # beyond the last batch the database knows means anchored batches were dropped, and
        # a record waiting now may be one of theirs put back in the queue (the worker could
        # never anchor it: the next sequence number is taken).
        all_final = all(
            c.state in ("verified", "failed") and not c.lost for c in checks.values()
        )
        if any(c.state == "pending" for c in checks.values()):
            self._fail_pending_if_batches_dropped(conn, checks)

        final = records.get(final_id)
        sealed_sha = None
        sealed_size = -1
        if final is not None and row.pdf_record_id:
            for role, sha, size in _files_of(_safe_obj(final.canonical)):
                if role == "signed_pdf":
                    sealed_sha, sealed_size = sha, size
        signature = None
        if sealed_sha:
            signature, seen_pdf = self._signature(conn, row.code, sealed_sha, sealed_size)
            files.append(seen_pdf)
        return Checked(
            row=row,
            records=records,
            parents=parents,
            checks=checks,
            bodies=bodies,
            signature=signature,
            sealed_sha=sealed_sha,
            files=tuple(dict.fromkeys(files)),
            # a judgement resting on a pending record is redone on every view
            final=all_final,
            checked_at=time.monotonic(),
        )

    def _fail_pending_if_batches_dropped(
        self, conn: Connection, checks: dict[str, RecordCheck]
    ) -> None:
        """Turn the pending checks into failed ones when the chain holds batches the
        database does not (read only for a view that has something pending)."""
        if self.chain is None:
            return
        try:
            on_chain = self.chain.batch_count()
        except ChainError:
            return  # cannot tell: the records stay pending
        known = conn.exec_driver_sql(KNOWN_BATCHES_SQL).scalar() or 0
        if on_chain <= int(known):
            return
        en = (
            f"the chain has anchored {on_chain} batches, the database knows {known}: anchored "
            "batches were deleted, so this record is not pending"
        )
        zh = (
            f"链上已有 {on_chain} 个上链批次，数据库仅存 {known} 个"
            "（上链批次被删除），该记录并非待上链"
        )
        for rid, check in list(checks.items()):
            if check.state == "pending":
                checks[rid] = RecordCheck(rid, check.type, "failed", en, zh, lost=True)

    def _build(self, checked: Checked, revocation_chain: RevocationInfo | None) -> ReportView:
        row, records, parents = checked.row, checked.records, checked.parents
        checks, bodies = checked.checks, checked.bodies
        signature, sealed_sha = checked.signature, checked.sealed_sha
        code = row.code
        report_roles = {
            row.issue_record_id: "issue",
            row.report_record_id: "metadata",
            row.pdf_record_id: "pdf",
        }
        # media sit just before the first step that uses them
        child_rank: dict[str, float] = {}
        for child_id, parent_ids in parents.items():
            child = records.get(child_id)
            if child is None:
                continue
            for pid in parent_ids:
                parent = records.get(pid)
                if parent is not None and parent.type == "media":
                    media_rank = STEP_ORDER.get(child.type, 50) - 0.5
                    child_rank[pid] = min(child_rank.get(pid, media_rank), media_rank)
        steps = []
        for rec in records.values():
            rank: float = STEP_ORDER.get(rec.type, 50)
            if rec.type == "report":
                rank += {"issue": 0.0, "metadata": 0.1, "pdf": 0.2}.get(
                    report_roles.get(rec.id, ""), 0.3
                )
            rank = child_rank.get(rec.id, rank)
            check = checks[rec.id]
            zh, en = STEP_LABELS.get(rec.type, (rec.type, rec.type))
            if rec.type == "report" and rec.id in report_roles:
                zh, en = REPORT_ROLE_LABELS[report_roles[rec.id]]
            steps.append(
                (
                    rank,
                    _iso(rec.created_at) or "",
                    {
                        "record_id": rec.id,
                        "type": rec.type,
                        "step": {"zh": zh, "en": en},
                        "created_at": _iso(rec.created_at),
                        "leaf_hash": rec.leaf_hash,
                        "check": check.state,
                        "problem": (
                            {"en": check.problem, "zh": check.problem_zh}
                            if check.problem
                            else None
                        ),
                        "batch_seq": rec.batch_seq,
                        "details": public_fields(rec.type, bodies.get(rec.id, {})),
                        "image": (
                            _key_image(code, rec, bodies.get(rec.id, {}))
                            if check.state != "failed"
                            else None
                        ),
                    },
                )
            )
        steps.sort(key=lambda s: (s[0], s[1]))
        timeline = [s[2] for s in steps]

        failed = [s for s in timeline if s["check"] == "failed"]
        waiting = [s for s in timeline if s["check"] in ("pending", "unavailable")]
        expected = [
            rid for rid in (row.issue_record_id, row.report_record_id, row.pdf_record_id)
            if rid
        ]
        missing = [rid for rid in expected if rid not in records]
        sig_failed = signature is not None and signature.checked and not signature.ok

        problem: dict[str, Any] | None = None
        status: Status
        if failed:
            status = "tampered"
            # a record whose anchoring evidence is gone is where the deletion happened; the
            # rest of its batch then fails for the missing leaf
            lost = {rid for rid, c in checks.items() if c.lost}
            first = next((s for s in failed if s["record_id"] in lost), failed[0])
            problem = {
                "record_id": first["record_id"],
                "type": first["type"],
                "step": first["step"],
                "detail": first["problem"],
            }
        elif missing:
            status = "tampered"
            problem = {
                "record_id": missing[0],
                "type": "report",
                "step": {"zh": STEP_LABELS["report"][0], "en": STEP_LABELS["report"][1]},
                "detail": {"en": "a record of the report is missing", "zh": "报告记录缺失"},
            }
        elif sig_failed:
            status = "tampered"
            assert signature is not None
            problem = {
                "record_id": row.pdf_record_id,
                "type": "report",
                "step": {"zh": REPORT_ROLE_LABELS["pdf"][0], "en": REPORT_ROLE_LABELS["pdf"][1]},
                "detail": {"en": signature.detail or "signature invalid", "zh": "报告电子签章无效"},
            }
        elif row.superseded_by or (
            revocation_chain is not None and row.status == "superseded"
        ):
            status = "superseded"
        elif revocation_chain is not None or row.revocation_record_id or row.status == "revoked":
            status = "revoked"
        elif waiting or not row.pdf_record_id:
            status = "pending_anchor"
        else:
            status = "genuine"

        summary = self._summary(row, records, bodies)
        anchor = None
        final = records.get(row.pdf_record_id or "") if row.pdf_record_id else None
        if final is not None and checks[final.id].state == "verified":
            anchor = {
                "chain_id": final.batch_chain_id,
                "registry": final.batch_registry,
                "batch_seq": final.batch_seq,
                "root": final.batch_root,
                "block_number": final.batch_block_number,
                "block_timestamp": final.batch_block_timestamp,
                "time": _iso(final.batch_block_timestamp),
                "tx_hash": final.batch_tx_hash,
            }
        revocation = None
        if status in ("revoked", "superseded") or revocation_chain is not None:
            rev_body = bodies.get(row.revocation_record_id or "", {})
            revocation = {
                "on_chain": revocation_chain is not None,
                "revoked_at": _iso(revocation_chain.timestamp) if revocation_chain else None,
                "reason": mask_text(str(rev_body.get("reason", ""))) or None,
                "record_id": row.revocation_record_id,
            }
        superseded = None
        if row.superseded_by:
            superseded = {
                "code": row.superseded_by,
                "url": f"{self.base_url}/v/{row.superseded_by}",
            }
        data = {
            "code": code,
            "code_display": display_code(code),
            "verify_url": f"{self.base_url}/v/{code}",
            "status": status,
            "status_text": {"zh": STATUS_LABELS[status][0], "en": STATUS_LABELS[status][1]},
            "report": summary,
            "signature": signature.as_json() if signature else None,
            "sealed_pdf": (
                {"sha256": sealed_sha, "url": f"/api/v1/public/reports/{code}/pdf"}
                if sealed_sha
                else None
            ),
            "anchor": anchor,
            "revocation": revocation,
            "superseded_by": superseded,
            "problem": problem,
            "chain": timeline,
        }
        return ReportView(code=code, status=status, data=data)

    def _summary(
        self,
        row: CodeRow,
        records: dict[str, RecordRow],
        bodies: dict[str, Mapping[str, Any]],
    ) -> dict[str, Any]:
        meta: Mapping[str, Any] = bodies.get(row.report_record_id or "", {})
        project_body: Mapping[str, Any] = bodies.get(row.project_record_id or "", {})
        if not project_body:
            for rec in records.values():
                if rec.type == "project":
                    project_body = bodies.get(rec.id, {})
                    break
        project = project_body.get("name")
        approver = meta.get("approver")
        if isinstance(approver, dict):
            approver = approver.get("name")
        return {
            "institution": {"uscc": row.institution, "name": row.institution_name},
            "report_no": row.report_no,
            "project": mask_text(str(project)) if project else None,
            "conclusion": meta.get("conclusion"),
            "issued_on": meta.get("issued_on"),
            "approver": mask_name(str(approver)) if approver else None,
            "code_issued_at": _iso(row.issued_at),
            "sealed_at": _iso(row.sealed_at),
        }


#: Image types a key image (关键影像, R2) is shown from on the public page.
KEY_IMAGE_TYPES = frozenset({"image/jpeg", "image/png", "image/webp"})


def _key_image(code: str, rec: RecordRow, body: Mapping[str, Any]) -> dict[str, str] | None:
    """A media record's photo, as the page shows it: its SHA-256 and where its public
    (downscaled, metadata-free) rendering is served; None for other records and files."""
    if rec.type != "media" or body.get("kind") != "image":
        return None
    for f in _safe_obj(rec.canonical).get("files") or ():
        if (
            isinstance(f, dict)
            and f.get("media_type") in KEY_IMAGE_TYPES
            and isinstance(f.get("sha256"), str)
        ):
            sha = f["sha256"]
            return {"sha256": sha, "url": f"/api/v1/public/reports/{code}/images/{sha}"}
    return None


def _safe_obj(canonical: bytes) -> Mapping[str, Any]:
    try:
        obj = loads_strict(canonical)
    except CanonicalizationError:
        return {}
    return obj if isinstance(obj, dict) else {}


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# --- wiring: the views of one process (ServiceState.views) ------------------------------


class SignatureChecker:
    """Checks sealed PDFs with verifier.pdf against the platform's pinned root."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._roots: list[Any] | None = None
        self._lock = threading.Lock()

    def roots(self) -> list[Any]:
        if self._roots is None:
            with self._lock:
                if self._roots is None:
                    from service.domain.trust import trust_roots_der

                    self._roots = list(trust_roots_der(self.settings))
        return self._roots

    def issued_by_us(self, pdf: bytes) -> bool:
        """Whether the last signature's certificate was issued by our root, even when the
        signature itself no longer verifies (a modified copy rather than a foreign PDF)."""
        from cryptography import x509
        from cryptography.exceptions import InvalidSignature
        from pyhanko.pdf_utils.reader import PdfFileReader

        try:
            signatures = PdfFileReader(io.BytesIO(pdf), strict=False).embedded_signatures
            cert = signatures[-1].signer_cert if signatures else None
            if cert is None:
                return False
            leaf = x509.load_der_x509_certificate(cert.dump())
            roots = [x509.load_der_x509_certificate(der) for der in self.roots()]
        except Exception:  # anything unparseable is simply not ours
            return False
        for root in roots:
            try:
                leaf.verify_directly_issued_by(root)
                return True
            except (ValueError, TypeError, InvalidSignature):
                continue
        return False

    @property
    def require_timestamp(self) -> bool:
        return self.settings.signing.level != "B-B"

    def verify(self, pdf: bytes, *, check_qr: bool = True) -> PdfVerification:
        """Our signature checks on any PDF (raises PdfUnreadable for a non-PDF)."""
        return verify_sealed_pdf(
            pdf, self.roots(), require_timestamp=self.require_timestamp, check_qr=check_qr
        )

    def context(self) -> str:
        """What a signature verdict depends on besides the file and the code: the pinned
        roots and whether a time-stamp is required (SignatureVerdicts)."""
        roots = hashlib.sha256(b"".join(sorted(self.roots()))).hexdigest()
        return f"roots={roots};timestamp={int(self.require_timestamp)}"

    def __call__(self, pdf: bytes, code: str, sha256: str) -> Signature:
        """The sealed copy of `code`: signature, chain, time-stamp, untouched, SHA-256.

        The QR codes are not re-rendered here: the file's SHA-256 is the anchored one,
        and the QR was checked when the file was made.
        """
        result = verify_sealed_pdf(
            pdf,
            self.roots(),
            expected_code=code,
            expected_sha256=sha256,
            require_timestamp=self.require_timestamp,
            check_qr=False,
        )
        return signature_of(result)


def signature_of(result: PdfVerification) -> Signature:
    """The public summary of a verifier.pdf result."""
    signed_at = None
    if result.timestamp is not None:
        signed_at = rfc3339(result.timestamp)
    return Signature(
        checked=True,
        ok=result.bottom_line,
        signer=_common_name(result.signer_subject),
        signed_at=signed_at,
        timestamped=bool(result.timestamp_ok),
        detail=None
        if result.bottom_line
        else "; ".join(f"{f.code}: {f.message}" for f in result.findings),
    )


def _common_name(subject: str | None) -> str | None:
    """`Common Name: X, Organization: Y` (asn1crypto's human form) -> X."""
    if not subject:
        return None
    for part in subject.split(", "):
        key, _, value = part.partition(": ")
        if key == "Common Name" and value:
            return value
    return subject


def build_report_views(
    settings: Settings,
    engine: Engine,
    sessions: sessionmaker[Session],
    blobs: BlobStore,
    chain_info: ChainInfo | None,
) -> ReportViews:
    """The public views of one process, checking signatures against the platform roots."""
    chain = None
    if chain_info is not None:
        chain = ChainReader(chain_info.rpc_url, chain_info.registry, chain_info.chain_id)
    checker = SignatureChecker(settings)
    master_key = settings.security.master_key.get_secret_value().encode()
    views = ReportViews(
        blobs,
        chain,
        checker,
        settings.public.base_url,
        stamp=StampReader(engine),
        verdicts=SignatureVerdicts(engine, master_key, checker.context),
    )

    def rebuild(code: str) -> None:
        """Rebuild a cached view ahead of its expiry (ReportViews.refresher)."""
        with views.building(code), sessions() as session:
            try:
                views.view(session, code, refresh=True)
            except UnknownCode:
                pass
            finally:
                session.rollback()

    views.refresher = rebuild
    return views


def report_view(
    views: ReportViews, sessions: sessionmaker[Session], code: str
) -> ReportView | None:
    """The checked view of a report, or None for a code never issued."""
    canonical = views.canonical(code)
    if canonical is None:
        return None
    cached = views.cached_view(canonical)
    if cached is not None:
        return cached
    with views.building(canonical):
        cached = views.cached_view(canonical)  # built meanwhile by the request we waited for
        if cached is not None:
            return cached
        with sessions() as session:
            try:
                return views.view(session, canonical)
            except UnknownCode:
                return None
            finally:
                session.rollback()


def prime_verdict(
    views: ReportViews, executor: ThreadPoolExecutor, code: str, sha256: str, data: bytes
) -> None:
    """Validate a freshly signed PDF off the request path and store its verdict, so the
    first public view of the report need not parse the PDF (SignatureVerdicts' rule).
    Any failure only means the first view validates it."""

    def work() -> None:
        try:
            views.prime_signature(code, sha256, data)
        except Exception:
            log.warning("priming the signature verdict of %s failed", code, exc_info=True)

    executor.submit(work)
