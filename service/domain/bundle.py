"""Evidence bundles (`jianzheng-bundle/1`, INTERFACE.md §3) for auditors.

A bundle holds the proof of every record a report rests on and every file those records
name, so an auditor can check it with `jianzheng-verify` and a JSON-RPC endpoint alone.

What goes in:

- every record the `history` of the report's records names (§7.1: the platform wrote it,
  so a record that existed when the report was issued cannot be left out), with its
  ancestry;
- the report's evidence, as the one ancestry walk finds it (`service.domain.ancestry`, the
  same the public view checks): its latest report-stage record (sealed PDF, else metadata,
  else issuance) and its whole ancestry, followed through both the parent leaf hashes
  inside each record's canonical bytes and the `record_parents` rows (so a record whose
  row or hash column was edited is still found and shows up as a failed check, not as a
  silent gap), plus the seal and witness records hanging off the samples of that ancestry
  (the traceable chain of DESIGN.md shows them beside the receipt; they are not ancestors
  of the report) with their own ancestry (media);
- the revocation record's proof (or null), and `files/<sha256>` for every file named,
  streamed from the blob store exactly as stored (a swapped file goes in as it is, and the
  verifier names the record whose file no longer hashes right).

Additive manifest fields (the format allows additions; the verifier reads them for
diagnosis only, never as a reason to trust anything):

- `batches`: per batch referenced, the anchored root and size the service recorded, and
  the number of leaves / root the service's outbox range of the batch holds *now*; the verifier
  compares these with the chain's `anchorOf` and `batchCount` to say exactly that a leaf of
  an anchored batch was deleted;
- `unproven`: records the service holds but cannot prove although they are not pending
  (their batch is gone from the database, or its stored leaves no longer rebuild a tree).

A bundle is only built once every record in it is anchored and a revocation, if any, is
written to the chain: before that the endpoint answers 202 with the pending records (see
`BundlePending`), mirroring `GET /api/v1/records/{id}/proof`.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import IO, Any

from sqlalchemy import bindparam, select
from sqlalchemy.orm import Session

from service.anchoring.chaininfo import ChainInfo
from service.domain.ancestry import Node, walk
from service.domain.codes import canonical_code
from service.domain.history import history_record_ids
from service.domain.proofs import build_proofs, proof_hash_field
from service.errors import Conflict, Invalid, JianzhengError, NotFound
from service.storage import loghash
from service.storage.blobs import BlobStore
from service.storage.leaves import (
    batch_leaf_hashes,
    batch_of_leaf,
    leaf_batch_seq,
    leaf_index,
    leaf_queued,
)
from service.storage.models import (
    Batch,
    ChainRevocation,
    Outbox,
    Record,
    ReportCode,
)
from verifier.merkle import DEFAULT_ALG, HashAlg, merkle_root

BUNDLE_FORMAT = "jianzheng-bundle/1"
#: Most records one bundle may hold (the verifier accepts up to 10,000 proofs).
MAX_BUNDLE_RECORDS = 5_000
#: Most files one bundle may carry.
MAX_BUNDLE_FILES = 5_000
#: Seconds a client is asked to wait before asking again for a pending bundle.
PENDING_RETRY_AFTER_S = 2
#: Bundles are assembled in memory up to this size, then spill to a temporary file.
SPOOL_MAX_MEMORY = 8 * 1024 * 1024
STREAM_CHUNK = 256 * 1024


@dataclass(frozen=True)
class PendingPart:
    record_id: str
    type: str
    reason: str

    def as_json(self) -> dict[str, str]:
        return {"record_id": self.record_id, "type": self.type, "reason": self.reason}


class BundlePending(Exception):
    """Some part of the bundle is not anchored (or the revocation not on chain) yet."""

    def __init__(self, code: str, parts: list[PendingPart]) -> None:
        super().__init__(f"{len(parts)} part(s) of report {code} are pending")
        self.code = code
        self.parts = parts

    def as_json(self) -> dict[str, Any]:
        return {
            "status": "pending",
            "code": self.code,
            "detail": "parts of this report are not anchored on the chain yet; ask again later",
            "pending": [p.as_json() for p in self.parts],
            "retry_after_s": PENDING_RETRY_AFTER_S,
        }


@dataclass
class BundlePlan:
    """Everything a bundle holds, before it is written."""

    code: str
    report_record_id: str
    proofs: list[dict[str, Any]]
    revocation: dict[str, Any] | None
    #: sha256 -> (role, record id) of every file named, in first-seen order.
    files: dict[str, tuple[str, str]] = field(default_factory=dict)
    unproven: list[dict[str, Any]] = field(default_factory=list)
    batches: list[dict[str, Any]] = field(default_factory=list)
    #: The log hash of every proof (§7.7; the manifest says it unless SHA-256).
    hash: HashAlg = DEFAULT_ALG

    def manifest(self) -> dict[str, Any]:
        return {
            "format": BUNDLE_FORMAT,
            **proof_hash_field(self.hash),
            "code": self.code,
            "report_record_id": self.report_record_id,
            "proofs": self.proofs,
            "revocation": self.revocation,
            "batches": self.batches,
            "unproven": self.unproven,
        }


# --- ancestry ---------------------------------------------------------------------------------


def collect_records(session: Session, roots: list[str]) -> dict[str, Node]:
    """The report's evidence (`ancestry.walk` with attachments: the records reachable from
    `roots` through parent links and parent leaf hashes, plus the seal and witness records
    of every sample of that ancestry, with their ancestry). Insertion order is walk order
    (roots first). Raises Invalid `bundle_too_large` beyond MAX_BUNDLE_RECORDS."""
    found = walk(session, roots, attachments=True, limit=MAX_BUNDLE_RECORDS)
    if not found.complete:
        raise Invalid(
            "bundle_too_large",
            f"the report's evidence holds more than {MAX_BUNDLE_RECORDS} records",
        )
    return found.records


# --- proofs -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _LeafFacts:
    """Where a record stands in the anchoring pipeline, as the database says now."""

    queued: bool
    batch_seq: int | None
    leaf_index: int | None
    leaf_hash: str | None
    batch_status: str | None


_LEAF_FACTS = (
    select(
        Record.id,
        leaf_queued(),
        leaf_batch_seq(),
        leaf_index(),
        Outbox.leaf_hash,
        Batch.status,
    )
    .select_from(Record)
    .outerjoin(Outbox, Outbox.record_id == Record.id)
    .outerjoin(Batch, batch_of_leaf())
    .where(Record.id.in_(bindparam("ids", expanding=True)))
)
_FACTS_CHUNK = 500


def _leaf_facts(session: Session, ids: list[str]) -> dict[str, _LeafFacts]:
    """The anchoring facts of the records that could not be proven, in one query per 500."""
    facts: dict[str, _LeafFacts] = {}
    for i in range(0, len(ids), _FACTS_CHUNK):
        for row in session.execute(_LEAF_FACTS, {"ids": ids[i : i + _FACTS_CHUNK]}):
            facts.setdefault(
                row[0], _LeafFacts(bool(row[1]), row[2], row[3], row[4], row[5])
            )
    return facts


_NO_FACTS = _LeafFacts(False, None, None, None, None)


def _why_not_proven(facts: _LeafFacts) -> tuple[bool, str]:
    """(pending?, reason) for a record build_proofs could not prove (not anchored)."""
    if facts.queued:
        return True, "accepted, waiting for the next batch"
    if facts.batch_seq is None:
        return False, "the record is neither queued nor in any batch in the service's database"
    if facts.batch_status is None:
        return False, (
            f"the record's batch {facts.batch_seq} is missing from the service's database"
        )
    return True, f"batch {facts.batch_seq} is {facts.batch_status}, not anchored yet"


def _batch_summary(session: Session, seq: int) -> dict[str, Any] | None:
    """What the database holds for batch `seq` now: recorded root/size vs stored leaves."""
    batch = session.get(Batch, seq)
    if batch is None:
        return None
    leaves = session.scalars(batch_leaf_hashes(seq)).all()
    try:
        alg = loghash.of(session)
        stored_root = merkle_root([bytes.fromhex(h) for h in leaves], alg).hex() if leaves else None
    except ValueError:
        stored_root = None
    return {
        "seq": batch.seq,
        "root": batch.root,
        "leaf_count": batch.size,
        "stored_leaf_count": len(leaves),
        "stored_root": stored_root,
        "tx_hash": batch.tx_hash,
    }


def _latest_report_record(row: ReportCode) -> str:
    return row.pdf_record_id or row.report_record_id or row.issue_record_id


def plan_bundle(session: Session, code_text: str, chain: ChainInfo | None) -> BundlePlan:
    """Collect the proofs and files of report `code_text`.

    Raises JianzhengError 404 `unknown_code`, BundlePending while anything is not anchored
    yet, JianzhengError 409 `evidence_unavailable` when no record can be proven at all.
    The proofs are built in one batch (`proofs.build_proofs`), the facts of the records
    that cannot be proven read in one query.
    """
    code = canonical_code(code_text)
    row = session.get(ReportCode, code)
    if row is None:
        raise NotFound("unknown_code", f"no report code {code} was issued")
    report_id = _latest_report_record(row)
    # §7.1: every record the report's history names, with its ancestry, goes in too
    records = collect_records(session, [report_id, *history_record_ids(session, code)])
    if report_id not in records:
        raise Conflict(
            "evidence_unavailable", f"the report record {report_id} is missing"
        )
    rev = session.get(Record, row.revocation_record_id) if row.revocation_record_id else None
    ids = [*records, *([rev.id] if rev is not None else [])]
    failures: dict[str, Exception] = {}
    built = build_proofs(session, ids, chain, failures=failures)
    facts = _leaf_facts(session, [rid for rid in dict.fromkeys(ids) if built.get(rid) is None])

    pending: list[PendingPart] = []
    proofs: list[dict[str, Any]] = []
    unproven: list[dict[str, Any]] = []
    seqs: dict[int, None] = {}

    def unproven_entry(rid: str, rtype: str, leaf_hash: str, reason: str) -> dict[str, Any]:
        fact = facts.get(rid, _NO_FACTS)
        return {
            "record_id": rid,
            "type": rtype,
            "leaf_hash": fact.leaf_hash if fact.batch_seq is not None else leaf_hash,
            "batch_seq": fact.batch_seq,
            "reason": reason,
        }

    def prove(rid: str, rtype: str, leaf_hash: str) -> dict[str, Any] | None:
        failure = failures.get(rid)
        if failure is not None:
            reason = (
                failure.detail
                if isinstance(failure, JianzhengError)  # stored stale bytes, record gone
                else f"no audit path can be built: {failure}"  # batch leaves build no tree
            )
            unproven.append(unproven_entry(rid, rtype, leaf_hash, reason))
            return None
        proof = built[rid]
        if proof is None:
            is_pending, reason = _why_not_proven(facts.get(rid, _NO_FACTS))
            if is_pending:
                pending.append(PendingPart(rid, rtype, reason))
            else:
                unproven.append(unproven_entry(rid, rtype, leaf_hash, reason))
            return None
        seqs[int(proof["batch"]["seq"])] = None
        return proof

    for rec in records.values():
        proof = prove(rec.id, rec.type, rec.leaf_hash)
        if proof is not None:
            proofs.append(proof)

    revocation: dict[str, Any] | None = None
    if row.revocation_record_id:
        if rev is None:
            unproven.append({"record_id": row.revocation_record_id, "type": "revocation",
                             "leaf_hash": None, "batch_seq": None,
                             "reason": "the revocation record is missing from the database"})
        else:
            revocation = prove(rev.id, rev.type, rev.leaf_hash)
            on_chain = session.scalar(
                select(ChainRevocation.status).where(ChainRevocation.reason == rev.leaf_hash)
            )
            already = any(p.record_id == rev.id for p in pending)
            if on_chain is not None and on_chain != "done" and not already:
                pending.append(PendingPart(rev.id, rev.type,
                                           f"the revocation is {on_chain}, not on chain yet"))
    if pending:
        raise BundlePending(code, pending)
    if not proofs:
        raise Conflict(
            "evidence_unavailable",
            "no record of this report can be proven from the service's database",
            unproven=unproven,
        )
    plan = BundlePlan(code=code, report_record_id=report_id, proofs=proofs,
                      revocation=revocation, unproven=unproven, hash=loghash.of(session))
    for item in unproven:
        if item.get("batch_seq") is not None:
            seqs[int(item["batch_seq"])] = None
    plan.batches = [s for s in (_batch_summary(session, seq) for seq in sorted(seqs)) if s]
    for proof in [*proofs, *([revocation] if revocation else [])]:
        rid = str(proof["record"].get("id"))
        for entry in proof["record"].get("files") or []:
            sha = entry.get("sha256") if isinstance(entry, dict) else None
            if isinstance(sha, str) and sha not in plan.files:
                plan.files[sha] = (str(entry.get("role", "file")), rid)
    if len(plan.files) > MAX_BUNDLE_FILES:
        raise Invalid(
            "bundle_too_large", f"the report's evidence names more than {MAX_BUNDLE_FILES} files"
        )
    return plan


# --- writing --------------------------------------------------------------------------------


def write_bundle(plan: BundlePlan, blobs: BlobStore, out: IO[bytes]) -> list[str]:
    """Write the ZIP to `out`; returns the sha256 of files missing from the blob store
    (left out: the verifier names the record that lacks them)."""
    missing: list[str] = []
    manifest = json.dumps(plan.manifest(), ensure_ascii=False, separators=(",", ":"))
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("manifest.json", manifest.encode("utf-8"))
        for sha in plan.files:
            path = blobs.path(sha)
            try:
                src = path.open("rb")
            except OSError:
                missing.append(sha)
                continue
            info = zipfile.ZipInfo(f"files/{sha}", date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_STORED
            with src, zf.open(info, "w", force_zip64=True) as dst:
                shutil.copyfileobj(src, dst, STREAM_CHUNK)
    return missing


def bundle_stream(plan: BundlePlan, blobs: BlobStore) -> tuple[Iterator[bytes], int]:
    """The bundle as an iterator of chunks (and its length): assembled in a spooled
    temporary file so memory stays bounded whatever the files' sizes."""
    tmp = tempfile.SpooledTemporaryFile(max_size=SPOOL_MAX_MEMORY)
    try:
        write_bundle(plan, blobs, tmp)
        length = tmp.tell()
        tmp.seek(0)
    except BaseException:
        tmp.close()
        raise

    def chunks() -> Iterator[bytes]:
        try:
            while chunk := tmp.read(STREAM_CHUNK):
                yield chunk
        finally:
            tmp.close()

    return chunks(), length
