"""Stored answers of `Idempotency-Key` requests (INTERFACE §5.2): claim, look up, fill.

A key is claimed by inserting its row in the request's own transaction *before* the work,
so a concurrent request with the same key waits on the primary key (PostgreSQL) or the
write lock (SQLite); the answer is written into the claimed row and committed atomically
with the work. Keys are scoped to the caller's owner (institution or auditor).
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from service.storage.models import IdempotencyKey


@dataclass(frozen=True)
class StoredAnswer:
    request_hash: str
    status_code: int
    media_type: str
    body: bytes


def stored_answer(session: Session, scope: str, key: str) -> StoredAnswer | None:
    row = session.get(IdempotencyKey, (scope, key))
    if row is None:
        return None
    return StoredAnswer(row.request_hash, row.status_code, row.media_type, row.response_body)


class Claim:
    """A claimed key in the session's transaction; `fill` stores the answer (caller commits)."""

    def __init__(self, row: IdempotencyKey) -> None:
        self._row = row

    def fill(self, status_code: int, body: bytes) -> None:
        self._row.status_code = status_code
        self._row.response_body = body


def claim(
    session: Session, scope: str, key: str, request_hash: str, media_type: str, now: int
) -> Claim | None:
    """Claim the key for this request; None (transaction rolled back) if another holds it."""
    row = IdempotencyKey(
        scope=scope,
        key=key,
        request_hash=request_hash,
        status_code=0,
        media_type=media_type,
        response_body=b"",
        created_at=now,
    )
    session.add(row)
    try:
        session.flush()
    except IntegrityError:
        session.rollback()
        return None
    return Claim(row)
