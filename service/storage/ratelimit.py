"""Token buckets for the public endpoints' rate limit, keyed by client: per process
(`RateLimiter`) or shared by every process through the database (`SharedRateLimiter`)."""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, event, text
from sqlalchemy.exc import SQLAlchemyError

log = logging.getLogger(__name__)

#: Most client addresses tracked before idle ones are dropped.
MAX_BUCKETS = 100_000


class RateLimiter:
    """Token buckets keyed by client address: `rate` tokens per second, `burst` at most."""

    def __init__(self, per_minute: float, burst: float | None = None) -> None:
        self.rate = per_minute / 60.0
        self.burst = burst if burst is not None else max(1.0, per_minute / 4.0)
        self._buckets: dict[str, tuple[float, float]] = {}
        self._lock = threading.Lock()

    @property
    def enabled(self) -> bool:
        return self.rate > 0

    def take(self, client: str, cost: float = 1.0) -> float:
        """Take `cost` tokens; 0.0 when granted, else the seconds until it would be."""
        if not self.enabled:
            return 0.0
        now = time.monotonic()
        cost = min(cost, self.burst)
        with self._lock:
            tokens, last = self._buckets.get(client, (self.burst, now))
            tokens = min(self.burst, tokens + (now - last) * self.rate)
            if tokens >= cost:
                self._buckets[client] = (tokens - cost, now)
                return 0.0
            self._buckets[client] = (tokens, now)
            if len(self._buckets) > MAX_BUCKETS:
                self._evict(now)
            return (cost - tokens) / self.rate

    def _evict(self, now: float) -> None:
        full_after = self.burst / self.rate
        for key, (_tokens, last) in list(self._buckets.items()):
            if now - last >= full_after:
                del self._buckets[key]
        while len(self._buckets) > MAX_BUCKETS:
            self._buckets.pop(next(iter(self._buckets)))


class SharedRateLimiter:
    """The same token buckets in the database (`rate_buckets`), so that every API process
    charges one bucket per client: N processes do not multiply the limit.

    One statement per take (an UPSERT that refills, charges and says whether it granted,
    RETURNING the result), in its own short transaction: on PostgreSQL on the service's
    engine in autocommit (the table is UNLOGGED), on SQLite on a connection of its own
    with `synchronous=OFF` (a bucket is not evidence: it need not survive a power cut).
    Buckets idle long enough to be full again are deleted once a minute. When the
    database cannot be reached the process falls back on its own buckets (`RateLimiter`)
    rather than refusing everyone.
    """

    SWEEP_EVERY_S = 60.0

    def __init__(
        self, engine: Engine, per_minute: float, burst: float | None = None
    ) -> None:
        self.local = RateLimiter(per_minute, burst)
        self.rate = self.local.rate
        self.burst = self.local.burst
        self._next_sweep = 0.0
        postgres = engine.dialect.name == "postgresql"
        self.engine: Engine
        self._own_engine = not postgres
        if postgres:
            self.engine = engine.execution_options(isolation_level="AUTOCOMMIT")
        else:
            self.engine = _sqlite_engine(engine)
        least, greatest = ("least", "greatest") if postgres else ("min", "max")
        refilled = (
            f"{least}(:burst, rate_buckets.tokens"
            f" + {greatest}(:now - rate_buckets.updated, 0) * :rate)"
        )
        self._take = text(
            "INSERT INTO rate_buckets (client, tokens, updated, granted)"
            " VALUES (:client, :burst - :cost, :now, :yes)"
            " ON CONFLICT (client) DO UPDATE SET"
            f" tokens = CASE WHEN {refilled} >= :cost THEN {refilled} - :cost"
            f" ELSE {refilled} END,"
            f" granted = CASE WHEN {refilled} >= :cost THEN :yes ELSE :no END,"
            f" updated = {greatest}(:now, rate_buckets.updated)"
            " RETURNING tokens, granted"
        )
        self._sweep = text("DELETE FROM rate_buckets WHERE updated < :cutoff")

    @property
    def enabled(self) -> bool:
        return self.local.enabled

    def close(self) -> None:
        """Close the limiter's own connections (SQLite)."""
        if self._own_engine:
            self.engine.dispose()

    def take(self, client: str, cost: float = 1.0) -> float:
        """Take `cost` tokens; 0.0 when granted, else the seconds until it would be."""
        if not self.enabled:
            return 0.0
        cost = min(cost, self.burst)
        now = time.time()
        try:
            with self.engine.connect() as conn:
                tokens, granted = conn.execute(
                    self._take,
                    {"client": client, "cost": cost, "now": now, "burst": self.burst,
                     "rate": self.rate, "yes": True, "no": False},
                ).one()
                if now >= self._next_sweep:
                    self._next_sweep = now + self.SWEEP_EVERY_S
                    conn.execute(self._sweep, {"cutoff": now - self.burst / self.rate})
                conn.commit()
        except SQLAlchemyError as exc:
            log.warning("rate limit store unavailable, using this process's buckets: %s",
                        type(exc).__name__)
            return self.local.take(client, cost)
        if granted:
            return 0.0
        return max(0.001, (cost - float(tokens)) / self.rate)


def _sqlite_engine(engine: Engine) -> Engine:
    """Connections of the limiter's own to the service's SQLite file: WAL, no fsync."""
    limiter = create_engine(
        engine.url, connect_args={"check_same_thread": False, "timeout": 5}
    )

    @event.listens_for(limiter, "connect")
    def _pragmas(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA synchronous=OFF")
        cur.execute("PRAGMA busy_timeout=5000")
        cur.close()

    @event.listens_for(limiter, "begin")
    def _begin(conn: Connection) -> None:
        conn.exec_driver_sql("BEGIN IMMEDIATE")

    return limiter
