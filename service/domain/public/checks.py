"""The per-record checks of a public view (steps 1-4 of the package docstring), cached.

A record that was checked is cached under everything its check read (canonical bytes,
leaf columns, batch row, parent leaves, the blob files' size/mtime/ctime/inode), so a
changed row or a swapped file is rechecked while an unchanged record costs a tuple
comparison.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from service.domain.public.chain import ChainError, ChainReader
from service.domain.public.queries import CodeRow, RecordRow
from service.domain.public.verdicts import Signature
from service.storage.blobs import BlobStore, sha256_file
from verifier.canonical import canonicalize, loads_strict
from verifier.errors import CanonicalizationError
from verifier.merkle import DEFAULT_ALG, HashAlg, audit_path, leaf_hash
from verifier.models import AnchorRef, BatchInfo, Proof
from verifier.proof import PROOF_FORMAT, Pins, evaluate_proof

CheckState = Literal["verified", "pending", "failed", "unavailable"]

#: Most blob paths and file verdicts remembered.
MAX_CACHED_FILES = 100_000
#: Most record checks remembered.
MAX_CACHED_RECORDS = 200_000


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
    #: (sample leaf, record leaf) the report's history names but the database lacks.
    history_missing: tuple[tuple[str, str], ...] = ()

    def files_unchanged(self) -> bool:
        for path, stat in self.files:
            if (stat_path(path) if path else None) != stat:
                return False
        return True


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


def files_of(obj: Mapping[str, Any]) -> tuple[tuple[str, str, int], ...]:
    """(role, sha256, size) of every file a record object names (size -1 when absent)."""
    out = []
    for f in obj.get("files") or ():
        if isinstance(f, dict) and isinstance(f.get("sha256"), str):
            size = f.get("size")
            out.append(
                (str(f.get("role", "")), f["sha256"], int(size) if isinstance(size, int) else -1)
            )
    return tuple(out)


def safe_obj(canonical: bytes) -> Mapping[str, Any]:
    """The stored record object, or {} when its bytes do not parse."""
    try:
        obj = loads_strict(canonical)
    except CanonicalizationError:
        return {}
    return obj if isinstance(obj, dict) else {}


#: What a person reads when the verifier's anchor check names a failed step.
_ANCHOR_PROBLEMS_ZH = {
    "record_hash": "存证记录与上链哈希不符（记录被修改）",
    "inclusion": "记录不在其上链批次中（批次被修改）",
    "anchor": "批次根哈希与链上存证不符",
    "anchor_event": "上链交易与批次不符",
    "chain_id": "区块链网络不符",
    "registry": "存证合约不符",
}


class Checker:
    """Checks records and caches the ones that passed (or failed) under everything the
    check read."""

    def __init__(
        self, blobs: BlobStore, chain: ChainReader | None, log_hash: HashAlg = DEFAULT_ALG
    ) -> None:
        self.blobs = blobs
        self.chain = chain
        #: The deployment's log hash (§7.7): leaves and audit paths are recomputed with it.
        self.log_hash: HashAlg = log_hash
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
            if len(self._paths) < MAX_CACHED_FILES:
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
        if len(self._files) > MAX_CACHED_FILES:
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
            if len(self._records) > MAX_CACHED_RECORDS:
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
        files = files_of(obj)
        leaf = leaf_hash(rec.canonical, self.log_hash).hex()
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
        # (above the watermark) or sits in a batch on its way to the chain; a record that is
        # in neither lost its anchoring evidence (batches are contiguous outbox ranges, so
        # no committed state has a leaf at or below the watermark outside every batch).
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
                    path=tuple(
                        audit_path(
                            [bytes.fromhex(h) for h in leaves], rec.leaf_index, self.log_hash
                        )
                    ),
                ),
                anchor=AnchorRef(
                    chain_id=int(rec.batch_chain_id or 0),
                    registry=(rec.batch_registry or "").lower(),
                    tx_hash=(rec.batch_tx_hash or "").lower(),
                    block_number=int(rec.batch_block_number or 0),
                    block_timestamp=int(rec.batch_block_timestamp or 0),
                ),
                hash=self.log_hash,
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
            zh = _ANCHOR_PROBLEMS_ZH.get(first.check, "与链上存证不符")
            return fail(f"{first.check}: {first.message}", zh), body, files
        return RecordCheck(rec.id, rec.type, "verified"), body, files
