"""Evidence records: build the record, canonicalize, hash, and enqueue it for anchoring.

`append_record` writes the record, its parent links, its file references and its
outbox row in the caller's transaction, so a committed record is always anchored
eventually (nothing acknowledged is lost).
"""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import bindparam, insert, select
from sqlalchemy.orm import Session, make_transient_to_detached

from service.clock import rfc3339, utc_now
from service.errors import Invalid
from service.storage import loghash
from service.storage.blobs import BlobStore
from service.storage.models import Outbox, Record, RecordFile, RecordParent
from verifier.canonical import canonicalize
from verifier.errors import CanonicalizationError
from verifier.merkle import DEFAULT_ALG, HashAlg, leaf_hash

RECORD_TYPES = frozenset(
    {
        "project",
        "contract",
        "commission",
        "sample",
        "seal",
        "witness",
        "receipt",
        "test_record",
        "report",
        "revocation",
        "media",
        "numbering_void",
        # version 1.1 (INTERFACE §7.4)
        "test_plan",
        "registry",
        "ledger_action",
    }
)
RECORD_VERSION = 1
MAX_PARENTS = 256

_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"


def new_record_id() -> str:
    """A ULID: 48-bit millisecond time + 80 random bits, Crockford base32 (26 chars)."""
    value = (int(time.time() * 1000) << 80) | int.from_bytes(os.urandom(10), "big")
    return "".join(_CROCKFORD[(value >> shift) & 31] for shift in range(125, -1, -5))


@dataclass(frozen=True)
class FileRef:
    role: str
    sha256: str
    size: int
    media_type: str
    #: The file's SM3 (hex), named beside its SHA-256 in a record of an SM3 log (§7.7).
    sm3: str | None = None

    def as_json(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        if out["sm3"] is None:
            del out["sm3"]
        return out


def file_ref(
    role: str, sha256: str, size: int, media_type: str, alg: HashAlg, blobs: BlobStore
) -> FileRef:
    """A record's file entry: in an SM3 log (§7.7) it also names the stored file's SM3."""
    sm3 = blobs.sm3(sha256) if alg == "sm3" else None
    return FileRef(role, sha256, size, media_type, sm3)


def build_record(
    *,
    record_id: str,
    type: str,
    institution: str,
    created_at: datetime,
    parents: Sequence[str],
    files: Sequence[FileRef],
    body: Mapping[str, Any],
) -> dict[str, Any]:
    """The evidence record object of INTERFACE.md §1."""
    return {
        "type": type,
        "v": RECORD_VERSION,
        "id": record_id,
        "institution": institution,
        "created_at": rfc3339(created_at),
        "parents": list(parents),
        "files": [f.as_json() for f in files],
        "body": dict(body),
    }


@dataclass(frozen=True)
class EncodedRecord:
    """A record's id, its canonical bytes (RFC 8785) and its leaf hash (hex)."""

    id: str
    created_at: datetime
    canonical: bytes
    leaf_hash: str


def encode_record(
    *,
    type: str,
    institution: str,
    body: Mapping[str, Any],
    parent_leaf_hashes: Sequence[str] = (),
    files: Sequence[FileRef] = (),
    record_id: str | None = None,
    created_at: datetime | None = None,
    alg: HashAlg = DEFAULT_ALG,
) -> EncodedRecord:
    """Build (`build_record`), canonicalize and hash a record (with the log hash `alg`),
    without writing it."""
    if type not in RECORD_TYPES:
        raise ValueError(f"unknown record type {type!r}")
    if len(parent_leaf_hashes) > MAX_PARENTS:
        raise Invalid("too_many_parents", f"at most {MAX_PARENTS} parents")
    record_id = record_id or new_record_id()
    created_at = created_at or utc_now()
    obj = build_record(
        record_id=record_id,
        type=type,
        institution=institution,
        created_at=created_at,
        parents=parent_leaf_hashes,
        files=files,
        body=body,
    )
    try:
        canonical = canonicalize(obj)
    except (ValueError, CanonicalizationError) as exc:
        raise Invalid("not_canonicalizable", str(exc)) from exc
    return EncodedRecord(record_id, created_at, canonical, leaf_hash(canonical, alg).hex())


def append_record(
    session: Session,
    *,
    type: str,
    institution: str,
    body: Mapping[str, Any],
    parents: Sequence[Record] = (),
    files: Sequence[FileRef] = (),
    code: str | None = None,
    record_id: str | None = None,
    created_at: datetime | None = None,
) -> Record:
    """Write an evidence record and its outbox entry into the session (caller commits)."""
    encoded = encode_record(
        type=type,
        institution=institution,
        body=body,
        parent_leaf_hashes=[p.leaf_hash for p in parents],
        files=files,
        record_id=record_id,
        created_at=created_at,
        alg=loghash.of(session),
    )
    record_id, created_at = encoded.id, encoded.created_at
    canonical, leaf = encoded.canonical, encoded.leaf_hash
    record = Record(
        id=record_id,
        type=type,
        institution=institution,
        created_at=created_at,
        canonical=canonical,
        leaf_hash=leaf,
        code=code,
    )
    if session.new or session.dirty or session.deleted:
        session.flush()  # what the caller added first is written first, as before
    params: dict[str, Any] = {
        "id": record_id,
        "type": type,
        "institution": institution,
        "created_at": created_at,
        "canonical": canonical,
        "leaf_hash": leaf,
        "code": code,
        "enqueued_at": time.time(),
    }
    conn = session.connection()
    # Core statements, not the unit of work: the record, its outbox row, its parent links
    # and its file references, without an ORM flush (issue 17: a record POST's CPU).
    conn.execute(_INSERT_RECORD, params)
    conn.execute(_INSERT_OUTBOX, params)
    if parents:
        conn.execute(
            _INSERT_PARENT,
            [
                {"child_id": record_id, "parent_id": parent.id, "position": position}
                for position, parent in enumerate(parents)
            ],
        )
    if files:
        conn.execute(
            _INSERT_FILE,
            [
                {
                    "record_id": record_id,
                    "role": f.role,
                    "sha256": f.sha256,
                    "size": f.size,
                    "media_type": f.media_type,
                }
                for f in files
            ],
        )
    # The record as the session would hold it after a flush: persistent, in the identity
    # map (later reads and changes in this session see the same object).
    make_transient_to_detached(record)
    session.add(record)
    return record


_INSERT_RECORD = insert(Record).values(
    {c: bindparam(c) for c in ("id", "type", "institution", "created_at", "canonical",
                               "leaf_hash", "code")}
)
_INSERT_OUTBOX = insert(Outbox).values(
    record_id=bindparam("id"), leaf_hash=bindparam("leaf_hash"),
    enqueued_at=bindparam("enqueued_at"),
)
_INSERT_PARENT = insert(RecordParent)
_INSERT_FILE = insert(RecordFile)


def load_records(session: Session, ids: Sequence[str]) -> dict[str, Record]:
    if not ids:
        return {}
    rows = session.scalars(select(Record).where(Record.id.in_(list(ids)))).all()
    return {r.id: r for r in rows}
