"""Time, once: the platform clock, the one RFC 3339 formatter and China's time zone.

Evidence records carry whole-second UTC times (`created_at`, INTERFACE §1); pages and
calendars read them in China Standard Time. Code that needs "now" takes a `Clock` (the
running service's is `SYSTEM_CLOCK`; tests inject one they can move forward instead of
sleeping).
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta, timezone
from typing import Protocol

#: China Standard Time (UTC+8, no daylight saving): report years, page times.
CHINA_TZ = timezone(timedelta(hours=8), "CST")


class Clock(Protocol):
    """Where the service reads the time."""

    def time(self) -> float:
        """Unix seconds."""
        ...


class SystemClock:
    def time(self) -> float:
        return time.time()


SYSTEM_CLOCK: Clock = SystemClock()


def utc_now(clock: Clock = SYSTEM_CLOCK) -> datetime:
    """Now, aware UTC, whole seconds (the resolution of `created_at`)."""
    return datetime.fromtimestamp(int(clock.time()), UTC)


def as_utc(ts: datetime) -> datetime:
    """A stored time as aware UTC (SQLite hands back naive datetimes, always UTC here)."""
    return ts if ts.tzinfo is not None else ts.replace(tzinfo=UTC)


def rfc3339(ts: datetime | float) -> str:
    """`YYYY-MM-DDTHH:MM:SSZ` of an aware (or stored naive UTC) time or Unix seconds."""
    if isinstance(ts, int | float):
        ts = datetime.fromtimestamp(ts, UTC)
    return as_utc(ts).astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def china_year(now: datetime | None = None) -> int:
    """The calendar year in China (report numbers and codes run per year)."""
    return (now or datetime.now(UTC)).astimezone(CHINA_TZ).year
