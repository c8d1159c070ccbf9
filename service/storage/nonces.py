"""The nonce store of signed requests (INTERFACE §5.1) and the purge of expired rows.

A nonce is stored in one autocommit INSERT on the `auth_nonces` primary key, and only
while its key is active, so two API processes can never both accept it and a revoked key
stops at once whatever a process has cached. Expired nonces and stored idempotent answers
are purged at most once a minute per process (`PurgeSchedule`).
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field

from sqlalchemy import Connection, Engine, delete, text

from service.storage.models import IdempotencyKey, Nonce

log = logging.getLogger(__name__)

#: Seconds a nonce is kept beyond the window: a timestamp may be up to `window` in the
#: future, so a nonce must outlive 2 x window (plus slack) to catch every replay.
NONCE_RETENTION_SLACK_S = 60
#: How often (per process) expired nonces and idempotency keys are purged.
PURGE_INTERVAL_S = 60.0
#: Stored idempotent answers are kept this long.
IDEMPOTENCY_RETENTION_S = 24 * 3600

REMEMBER_NONCE = text(
    "INSERT INTO auth_nonces (key_id, nonce, seen_at)"
    " SELECT CAST(:k AS VARCHAR(40)), CAST(:n AS VARCHAR(64)), CAST(:t AS BIGINT)"
    " WHERE EXISTS (SELECT 1 FROM api_keys WHERE key_id = :k2 AND revoked_at IS NULL)"
    " ON CONFLICT DO NOTHING RETURNING nonce"
)
KEY_ACTIVE = text("SELECT 1 FROM api_keys WHERE key_id = :k AND revoked_at IS NULL")


@dataclass
class PurgeSchedule:
    """When this process last purged (one per ServiceState)."""

    last: float = 0.0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def due(self, now: float) -> bool:
        return now - self.last >= PURGE_INTERVAL_S


def store_nonce(conn: Connection, key_id: str, nonce: str, now: int) -> bool:
    """Store the nonce if the key is active and the nonce new; False otherwise."""
    row = conn.execute(REMEMBER_NONCE, {"k": key_id, "k2": key_id, "n": nonce, "t": now}).first()
    return row is not None


def key_active(conn: Connection, key_id: str) -> bool:
    return conn.execute(KEY_ACTIVE, {"k": key_id}).first() is not None


def autocommit(engine: Engine) -> Connection:
    """A connection in autocommit mode (use as a context manager)."""
    return engine.connect().execution_options(isolation_level="AUTOCOMMIT")


def purge_if_due(schedule: PurgeSchedule, conn: Connection, now: int, window: int) -> None:
    """Delete expired nonces and idempotency answers, at most once a minute per process."""
    if not schedule.due(now) or not schedule.lock.acquire(blocking=False):
        return
    try:
        schedule.last = float(now)
        conn.execute(
            delete(Nonce).where(Nonce.seen_at < now - 2 * window - NONCE_RETENTION_SLACK_S)
        )
        conn.execute(
            delete(IdempotencyKey).where(IdempotencyKey.created_at < now - IDEMPOTENCY_RETENTION_S)
        )
    except Exception:  # purging is housekeeping; never fail a request for it
        log.warning("purging expired nonces failed", exc_info=True)
    finally:
        schedule.lock.release()
