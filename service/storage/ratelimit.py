"""Token buckets for the public endpoints' rate limit (per process, keyed by client)."""

from __future__ import annotations

import threading
import time

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
