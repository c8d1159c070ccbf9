"""Removing blobs that no committed record names (issue 11, durability).

A file is stored before the record that names it commits (a signed PDF, a multipart
file, a completed upload), so a crash in between leaves a blob nothing refers to. After
`grace` (longer than any request, so a record being written is never raced) a sweep
deletes every blob that no `record_files` row names and no completed, not yet used
upload holds, and every temporary file of a write that never finished.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from service.domain.uploads import STATUS_COMPLETE
from service.storage.blobs import BlobStore
from service.storage.models import RecordFile, Upload

log = logging.getLogger(__name__)

#: Blobs looked up per query.
BATCH = 500


@dataclass(frozen=True)
class OrphanSweep:
    blobs_checked: int
    blobs_removed: list[str]
    temporaries_removed: int


def _named(session: Session, shas: list[str]) -> set[str]:
    named = set(session.scalars(select(RecordFile.sha256).where(RecordFile.sha256.in_(shas))))
    named.update(
        s
        for s in session.scalars(
            select(Upload.sha256).where(Upload.sha256.in_(shas), Upload.status == STATUS_COMPLETE)
        )
        if s is not None
    )
    return named


def _batches(items: Iterable[tuple[str, Path]]) -> Iterable[list[tuple[str, Path]]]:
    batch: list[tuple[str, Path]] = []
    for item in items:
        batch.append(item)
        if len(batch) == BATCH:
            yield batch
            batch = []
    if batch:
        yield batch


def sweep_orphans(sessions: sessionmaker[Session], blobs: BlobStore, grace_s: float) -> OrphanSweep:
    checked = 0
    removed: list[str] = []
    for batch in _batches(blobs.older_than(grace_s)):
        checked += len(batch)
        with sessions() as session:
            named = _named(session, [sha for sha, _ in batch])
        for sha, path in batch:
            if sha not in named:
                path.unlink(missing_ok=True)
                removed.append(sha)
    temporaries = 0
    for path in blobs.stale_temporaries(grace_s):
        path.unlink(missing_ok=True)
        temporaries += 1
    if removed or temporaries:
        log.warning(
            "removed %d blob(s) no record names and %d unfinished temporary file(s)",
            len(removed),
            temporaries,
        )
    return OrphanSweep(checked, removed, temporaries)
