"""One anchoring leader at a time.

On PostgreSQL the leader holds a session advisory lock on a dedicated connection; on
SQLite an exclusive `flock` on a lock file beside the database file. The worker asks
`acquire()` until it wins, checks `still_held()` now and then, and `release()`s on exit.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
from pathlib import Path
from typing import Protocol

from sqlalchemy import Connection, Engine, text
from sqlalchemy.exc import SQLAlchemyError

from service.settings import Settings
from service.storage.db import is_sqlite

#: Arbitrary 63-bit key of the PostgreSQL advisory lock that elects the leader.
PG_LOCK_KEY = int.from_bytes(hashlib.sha256(b"jianzheng/anchor-worker").digest()[:8], "big") >> 1


class LeaderLock(Protocol):
    def acquire(self) -> bool: ...

    def still_held(self) -> bool: ...

    def release(self) -> None: ...


class PgAdvisoryLock:
    """`pg_try_advisory_lock` on a dedicated connection; the lock lives as long as it does."""

    def __init__(self, engine: Engine, key: int = PG_LOCK_KEY) -> None:
        self.engine = engine
        self.key = key
        self._conn: Connection | None = None

    def acquire(self) -> bool:
        if self._conn is None:
            self._conn = self.engine.connect().execution_options(isolation_level="AUTOCOMMIT")
        try:
            got = bool(
                self._conn.execute(
                    text("SELECT pg_try_advisory_lock(:k)"), {"k": self.key}
                ).scalar()
            )
        except SQLAlchemyError:
            self._drop()
            raise
        return got

    def still_held(self) -> bool:
        if self._conn is None:
            return False
        try:
            held = self._conn.execute(
                text(
                    "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' "
                    "AND pid = pg_backend_pid() AND granted "
                    "AND ((classid::bigint << 32) | objid::bigint) = :k"
                ),
                {"k": self.key},
            ).scalar()
        except SQLAlchemyError:
            self._drop()
            return False
        return bool(held)

    def _drop(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(Exception):
                self._conn.invalidate()
                self._conn.close()
            self._conn = None

    def release(self) -> None:
        if self._conn is None:
            return
        with contextlib.suppress(SQLAlchemyError):
            self._conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": self.key})
        with contextlib.suppress(SQLAlchemyError):
            self._conn.close()
        self._conn = None


class FileLock:
    """An exclusive `flock` on a lock file (SQLite: every worker on the same database file)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd: int | None = None

    def acquire(self) -> bool:
        if self._fd is not None:
            return True
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        self._fd = fd
        return True

    def still_held(self) -> bool:
        return self._fd is not None

    def release(self) -> None:
        if self._fd is not None:
            with contextlib.suppress(OSError):
                fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None


def make_leader_lock(settings: Settings, engine: Engine) -> LeaderLock:
    """The leader lock for the configured database: a lock file beside a SQLite file (or in
    the data directory for in-memory SQLite), else a PostgreSQL advisory lock."""
    url = settings.database_url
    if is_sqlite(url):
        db_path = url.removeprefix("sqlite:///")
        if db_path and not db_path.startswith(":memory:") and url.startswith("sqlite:///"):
            return FileLock(Path(db_path + ".anchor-lock"))
        return FileLock(settings.data_dir / "anchor-worker.lock")
    return PgAdvisoryLock(engine)
