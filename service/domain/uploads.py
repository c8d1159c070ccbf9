"""Resumable uploads (INTERFACE §5.2; R16 续传).

`POST /api/v1/uploads` declares the length and media type; each `PATCH` carries one
chunk at `Upload-Offset`; `HEAD` answers the current offset; `complete` checks the
SHA-256 of the whole file and moves it into the content-addressed blob store. The
finished upload is then the file of one `media` (or `contract`) record.

Each PATCH is atomic: its bytes are streamed to a chunk file beside the upload and
appended only once the whole chunk arrived and its request signature checked out. A
connection dropped mid-chunk therefore leaves the offset where it was, and the client
resumes from `HEAD`. The offset in the database is the truth; bytes of the partial
file beyond it (left by a crash between the append and the commit) are cut off before
the next append.

An open upload that receives nothing for `uploads.expire_after_h` hours expires
(`sweep_expired`, run by every API process): its partial bytes are deleted and every
further call on it answers 410 `upload_expired`. Completed uploads never expire.
"""

from __future__ import annotations

import logging
import os
import re
import secrets
import shutil
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

from sqlalchemy import select, update
from sqlalchemy.orm import Session, sessionmaker

from service.clock import SYSTEM_CLOCK, Clock, utc_now
from service.domain.evidence import new_record_id
from service.errors import Conflict, Forbidden, Gone, Invalid, JianzhengError, NotFound
from service.storage.blobs import CHUNK, BlobStore, fsync_dir, sha256_file
from service.storage.models import Upload

#: Largest file one upload may declare (16 GiB).
MAX_UPLOAD_LENGTH = 16 * 1024**3
#: Largest single PATCH body; the body-limit middleware enforces the same number.
MAX_CHUNK_BYTES = 64 * 1024 * 1024
MEDIA_TYPE_RE = re.compile(
    r"^[a-z0-9][a-z0-9!#$&^_.+-]{0,62}/[a-z0-9][a-z0-9!#$&^_.+-]{0,62}$"
)
SHA256_RE = re.compile(r"^[0-9a-f]{64}$")
CHUNK_CONTENT_TYPES = frozenset({"application/offset+octet-stream", "application/octet-stream"})

STATUS_OPEN = "open"
STATUS_COMPLETE = "complete"
STATUS_USED = "used"
STATUS_EXPIRED = "expired"

log = logging.getLogger(__name__)


def upload_dir(data_dir: Path) -> Path:
    path = data_dir / "uploads"
    path.mkdir(parents=True, exist_ok=True)
    return path


def part_path(data_dir: Path, upload_id: str) -> Path:
    return upload_dir(data_dir) / f"{upload_id}.part"


def new_chunk_path(data_dir: Path, upload_id: str) -> Path:
    return upload_dir(data_dir) / f"{upload_id}.{secrets.token_hex(8)}.chunk"


def check_media_type(value: str) -> str:
    media_type = value.strip().lower()
    if not MEDIA_TYPE_RE.match(media_type):
        raise Invalid("media_type_invalid", f"not a media type: {value[:100]!r}")
    return media_type


def create_upload(
    session: Session,
    data_dir: Path,
    *,
    institution: str,
    length: int,
    media_type: str,
    clock: Clock = SYSTEM_CLOCK,
) -> Upload:
    if not 0 < length <= MAX_UPLOAD_LENGTH:
        raise Invalid(
            "upload_length_invalid", f"length must be 1..{MAX_UPLOAD_LENGTH} bytes"
        )
    now = utc_now(clock)
    upload = Upload(
        id=new_record_id(),
        institution=institution,
        length=length,
        media_type=check_media_type(media_type),
        offset=0,
        status=STATUS_OPEN,
        created_at=now,
        updated_at=now,
    )
    session.add(upload)
    part_path(data_dir, upload.id).touch()
    return upload


def get_upload(session: Session, upload_id: str, institution: str) -> Upload:
    """The upload, if it belongs to `institution`: 404 unknown, 403 another institution's."""
    upload = session.get(Upload, upload_id) if len(upload_id) <= 26 else None
    if upload is None:
        raise NotFound("upload_not_found", "no such upload")
    if upload.institution != institution:
        raise Forbidden("forbidden", "this upload belongs to another institution")
    return upload


def offset_mismatch(upload: Upload, sent: int) -> JianzhengError:
    return Conflict(
        "upload_offset_mismatch",
        f"Upload-Offset {sent} does not match the current offset {upload.offset}",
        offset=upload.offset,
    )


def expires_at(upload: Upload, expire_after: timedelta) -> datetime | None:
    """When an open upload expires unless another chunk arrives; None once it is closed."""
    return upload.updated_at + expire_after if upload.status == STATUS_OPEN else None


def _expired(upload_id: str) -> JianzhengError:
    return Gone(
        "upload_expired",
        f"upload {upload_id} received nothing for too long and was discarded; "
        "start a new upload",
    )


def check_open(upload: Upload) -> None:
    """Chunks go only to an open upload: 410 once expired, 409 once completed or used."""
    if upload.status == STATUS_EXPIRED:
        raise _expired(upload.id)
    if upload.status != STATUS_OPEN:
        raise Conflict("upload_closed", f"upload is {upload.status}")


def check_can_append(upload: Upload, offset: int, declared: int | None) -> None:
    """Refuse a chunk before reading it, when the headers already tell it cannot fit."""
    check_open(upload)
    if offset != upload.offset:
        raise offset_mismatch(upload, offset)
    if declared is not None and upload.offset + declared > upload.length:
        raise Invalid(
            "upload_length_exceeded",
            f"chunk of {declared} bytes at {upload.offset} passes the declared length "
            f"{upload.length}",
        )


@dataclass(frozen=True)
class ReceivedChunk:
    path: Path
    size: int
    sha256: str


def commit_chunk(
    session: Session,
    data_dir: Path,
    upload_id: str,
    offset: int,
    chunk: ReceivedChunk,
    *,
    clock: Clock = SYSTEM_CLOCK,
) -> int:
    """Append a fully received chunk at `offset`; returns the new offset (caller commits).

    The offset moves by compare-and-set, so of two PATCHes racing for one offset exactly
    one wins; the loser gets 409 `upload_offset_mismatch`.
    """
    upload = session.get(Upload, upload_id)
    if upload is None:  # pragma: no cover - checked before streaming
        raise NotFound("upload_not_found", "no such upload")
    if offset + chunk.size > upload.length:
        raise Invalid(
            "upload_length_exceeded", "the chunk passes the declared length"
        )
    result = session.execute(
        update(Upload)
        .where(Upload.id == upload_id, Upload.offset == offset, Upload.status == STATUS_OPEN)
        .values(offset=offset + chunk.size, updated_at=utc_now(clock))
        .execution_options(synchronize_session=False)
    )
    if result.rowcount != 1:  # type: ignore[attr-defined]
        session.rollback()
        current = session.get(Upload, upload_id)
        assert current is not None
        session.refresh(current)
        check_open(current)
        raise offset_mismatch(current, offset)
    # We hold the row (write lock) until the caller commits: append under it.
    part = part_path(data_dir, upload_id)
    created = not part.exists()
    with part.open("w+b" if created else "r+b") as out, chunk.path.open("rb") as src:
        out.truncate(offset)
        out.seek(offset)
        shutil.copyfileobj(src, out, CHUNK)
        out.flush()
        os.fsync(out.fileno())
    if created:
        fsync_dir(part.parent)  # the new part file's name is durable before we commit
    return offset + chunk.size


def complete_upload(
    session: Session,
    data_dir: Path,
    blobs: BlobStore,
    upload: Upload,
    sha256: str,
    *,
    clock: Clock = SYSTEM_CLOCK,
) -> Upload:
    """Check the whole file's SHA-256; on a match the bytes become a blob (caller commits).

    A mismatch is refused with 422 `upload_hash_mismatch` and changes nothing: the
    upload stays open, no blob and no record are written.
    """
    expected = sha256.strip().lower()
    if not SHA256_RE.match(expected):
        raise Invalid("sha256_invalid", "sha256 must be 64 hex characters")
    if upload.status == STATUS_COMPLETE or upload.status == STATUS_USED:
        if upload.sha256 == expected:
            return upload  # a retried completion
        raise Invalid("upload_hash_mismatch", "the upload has another SHA-256")
    check_open(upload)
    if upload.offset != upload.length:
        raise Conflict(
            "upload_incomplete",
            f"{upload.offset} of {upload.length} bytes received",
            offset=upload.offset,
        )
    part = part_path(data_dir, upload.id)
    if not part.exists() and _blob_matches(blobs, expected, upload.length):
        # A crash after the bytes became the blob and before this completion committed:
        # the blob holds exactly them, so the retried completion finishes the job.
        actual = expected
    else:
        actual = _hash_prefix(part, upload.length)
    if actual != expected:
        raise Invalid(
            "upload_hash_mismatch",
            f"the received bytes have SHA-256 {actual}, not {expected}",
            actual=actual,
        )
    result = session.execute(
        update(Upload)
        .where(Upload.id == upload.id, Upload.status == STATUS_OPEN)
        .values(status=STATUS_COMPLETE, sha256=actual, updated_at=utc_now(clock))
        .execution_options(synchronize_session=False)
    )
    if result.rowcount != 1:  # type: ignore[attr-defined]
        session.rollback()
        current = session.get(Upload, upload.id)
        assert current is not None
        session.refresh(current)
        check_open(current)  # expired meanwhile: 410
        raise Conflict("upload_closed", "the upload was completed concurrently")
    if part.exists():
        with part.open("r+b") as fh:
            fh.truncate(upload.length)
            fh.flush()
            os.fsync(fh.fileno())
        blobs.adopt(part, actual)
    session.refresh(upload)
    return upload


def _blob_matches(blobs: BlobStore, sha256: str, length: int) -> bool:
    path = blobs.path(sha256)
    try:
        return path.stat().st_size == length and sha256_file(path) == sha256
    except FileNotFoundError:
        return False


def _hash_prefix(path: Path, length: int) -> str:
    import hashlib

    h = hashlib.sha256()
    remaining = length
    try:
        with path.open("rb") as fh:
            while remaining > 0:
                data = fh.read(min(CHUNK, remaining))
                if not data:
                    break
                h.update(data)
                remaining -= len(data)
    except FileNotFoundError as exc:
        raise Conflict("upload_lost", "the upload's bytes are gone") from exc
    if remaining:
        raise Conflict("upload_lost", "the upload's bytes are shorter than its offset")
    return h.hexdigest()


def take_upload(session: Session, blobs: BlobStore, upload_id: str, institution: str) -> Upload:
    """Mark a completed upload as used by the record being written (caller commits)."""
    upload = get_upload(session, upload_id, institution)
    if upload.status == STATUS_EXPIRED:
        raise _expired(upload.id)
    if upload.status == STATUS_OPEN:
        raise Conflict("upload_not_complete", "complete the upload first")
    if upload.status == STATUS_USED:
        raise Conflict("upload_already_used", "this upload is already a record's file")
    assert upload.sha256 is not None
    if not blobs.exists(upload.sha256):
        raise Conflict("upload_lost", "the upload's bytes are gone")
    result = session.execute(
        update(Upload)
        .where(Upload.id == upload.id, Upload.status == STATUS_COMPLETE)
        .values(status=STATUS_USED, updated_at=utc_now())
        .execution_options(synchronize_session=False)
    )
    if result.rowcount != 1:  # type: ignore[attr-defined]
        raise Conflict("upload_already_used", "this upload is already a record's file")
    return upload


def discard_chunk(chunk_path: Path) -> None:
    chunk_path.unlink(missing_ok=True)


@dataclass(frozen=True)
class SweepResult:
    expired: list[str]
    files_removed: int


def sweep_expired(
    sessions: sessionmaker[Session],
    data_dir: Path,
    expire_after: timedelta,
    *,
    now: datetime | None = None,
    clock: Clock = SYSTEM_CLOCK,
) -> SweepResult:
    """Expire open uploads idle for `expire_after` and delete bytes nothing can use.

    The status moves by compare-and-set on (open, updated_at older than the cutoff), so a
    chunk being committed at the same moment either lands first (and refreshes
    `updated_at`, keeping the upload) or finds the upload expired (410); bytes are deleted
    only after the expiry is committed. Then leftovers older than the cutoff go too:
    chunk files of requests a crash cut off, and partial files of uploads that are not
    open (expired by an earlier pass that crashed before deleting, or never committed).
    Every API process may run this at the same time; each upload expires exactly once.
    "Now" is `now` if given, else read from `clock`.
    """
    now = now or utc_now(clock)
    cutoff = now - expire_after
    with sessions() as session:
        expired = list(
            session.scalars(
                update(Upload)
                .where(Upload.status == STATUS_OPEN, Upload.updated_at < cutoff)
                .values(status=STATUS_EXPIRED, updated_at=now)
                .returning(Upload.id)
                .execution_options(synchronize_session=False)
            )
        )
        session.commit()
    removed = 0
    for upload_id in expired:
        path = part_path(data_dir, upload_id)
        if path.exists():
            path.unlink(missing_ok=True)
            removed += 1
    removed += _remove_leftovers(sessions, data_dir, cutoff.timestamp())
    if expired:
        log.info("expired %d idle uploads: %s", len(expired), ", ".join(expired[:20]))
    return SweepResult(expired=expired, files_removed=removed)


def _remove_leftovers(sessions: sessionmaker[Session], data_dir: Path, cutoff_s: float) -> int:
    stale_parts: dict[str, Path] = {}
    removed = 0
    for entry in os.scandir(upload_dir(data_dir)):
        try:
            if entry.stat().st_mtime >= cutoff_s:
                continue
        except FileNotFoundError:
            continue
        name = entry.name
        if name.endswith(".chunk"):
            Path(entry.path).unlink(missing_ok=True)
            removed += 1
        elif name.endswith(".part"):
            stale_parts[name.removesuffix(".part")] = Path(entry.path)
    ids = list(stale_parts)
    for start in range(0, len(ids), 500):
        batch = ids[start : start + 500]
        with sessions() as session:
            still_open = set(
                session.scalars(
                    select(Upload.id).where(Upload.id.in_(batch), Upload.status == STATUS_OPEN)
                )
            )
        for upload_id in batch:
            if upload_id not in still_open:
                stale_parts[upload_id].unlink(missing_ok=True)
                removed += 1
    return removed

