"""Upload-deadline rules from the source documents, as pure functions.

- R11 (002 §三(三)): a contract is uploaded within 5 working days of signing.
- R13 (std 4.3.4 items 4, 5) with R10/R4: automatically acquired test data is uploaded
  in real time, manual data within 24 h; data that arrives later is "not uploaded in time".

A broken rule does not refuse the record (the lab must still be able to file it);
it becomes a flag inside the record's body and a row auditors can query.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from service.clock import rfc3339
from service.settings import RulesSettings

RULE_CONTRACT_LATE = "contract_late"
RULE_TEST_DATA_LATE = "test_data_late"
RULE_MEDIA_EDITED = "media_edited"
RULE_MEDIA_TIME_MISMATCH = "media_time_mismatch"
RULE_MEDIA_LATE = "media_late"
RULE_TEST_PLAN_LATE = "test_plan_late"
RULE_ONSITE_WITHOUT_PLAN = "onsite_without_plan"

#: Names in an image's EXIF `Software` tag that mean it went through an editor (R9: key
#: images without post-processing). Camera firmware names none of these.
EDITING_SOFTWARE = (
    "photoshop", "lightroom", "gimp", "snapseed", "picsart", "facetune", "pixelmator",
    "affinity", "paint.net", "canva", "meitu", "美图", "醒图", "美颜", "photoscape",
)

#: Longest span the calendar walks (a contract signed decades ago is simply late).
MAX_CALENDAR_SPAN_DAYS = 3660


@dataclass(frozen=True)
class WorkingCalendar:
    """Working days: not a weekend day and not a holiday, or an explicit make-up day (调休)."""

    weekend_days: frozenset[int] = frozenset({5, 6})
    holidays: frozenset[date] = frozenset()
    extra_workdays: frozenset[date] = frozenset()

    @classmethod
    def from_settings(cls, rules: RulesSettings) -> WorkingCalendar:
        return cls(
            weekend_days=frozenset(rules.weekend_days),
            holidays=frozenset(rules.holidays),
            extra_workdays=frozenset(rules.extra_workdays),
        )

    def is_working_day(self, day: date) -> bool:
        if day in self.extra_workdays:
            return True
        return day.weekday() not in self.weekend_days and day not in self.holidays

    def working_days_after(self, start: date, end: date) -> int:
        """Working days in (start, end]: 0 when `end` is on or before `start`."""
        if end <= start:
            return 0
        span = min((end - start).days, MAX_CALENDAR_SPAN_DAYS)
        return sum(
            1 for n in range(1, span + 1) if self.is_working_day(start + timedelta(days=n))
        )

    def add_working_days(self, start: date, n: int) -> date:
        """The n-th working day after `start` (the last day something is still on time)."""
        day = start
        remaining = n
        for _ in range(MAX_CALENDAR_SPAN_DAYS):
            if remaining <= 0:
                return day
            day += timedelta(days=1)
            if self.is_working_day(day):
                remaining -= 1
        return day


    def working_days_before(self, end: date, n: int) -> date:
        """The latest day with `n` working days in (day, end]: what n days' notice means."""
        day = end
        remaining = n
        for _ in range(MAX_CALENDAR_SPAN_DAYS):
            if remaining <= 0:
                return day
            if self.is_working_day(day):
                remaining -= 1
            day -= timedelta(days=1)
        return day


@dataclass(frozen=True)
class Flag:
    rule: str
    detail: dict[str, Any]

    def as_json(self) -> dict[str, Any]:
        return {"rule": self.rule, **self.detail}


def local_date(ts: datetime, tz: str) -> date:
    return ts.astimezone(ZoneInfo(tz)).date()


def contract_flags(
    signed_on: date, received_at: datetime, rules: RulesSettings, calendar: WorkingCalendar
) -> list[Flag]:
    """R11: more than N working days between signing and upload (local calendar)."""
    received_on = local_date(received_at, rules.timezone)
    elapsed = calendar.working_days_after(signed_on, received_on)
    if elapsed <= rules.contract_upload_working_days:
        return []
    due = calendar.add_working_days(signed_on, rules.contract_upload_working_days)
    return [
        Flag(
            RULE_CONTRACT_LATE,
            {
                "signed_on": signed_on.isoformat(),
                "received_on": received_on.isoformat(),
                "due_by": due.isoformat(),
                "working_days": elapsed,
                "limit_working_days": rules.contract_upload_working_days,
            },
        )
    ]


def notice_flags(
    rule: str,
    starts_at: datetime,
    received_at: datetime,
    lead_working_days: int,
    rules: RulesSettings,
    calendar: WorkingCalendar,
) -> list[Flag]:
    """Something due `lead_working_days` working days before `starts_at` (a test plan
    before on-site testing, R11; a witness's replacement before the change, R24): late
    when fewer working days lie between its arrival and the start (local calendar)."""
    received_on = local_date(received_at, rules.timezone)
    start_on = local_date(starts_at, rules.timezone)
    notice = calendar.working_days_after(received_on, start_on)
    if notice >= lead_working_days:
        return []
    return [
        Flag(
            rule,
            {
                "starts_on": start_on.isoformat(),
                "received_on": received_on.isoformat(),
                "due_by": calendar.working_days_before(start_on, lead_working_days).isoformat(),
                "notice_working_days": notice,
                "limit_working_days": lead_working_days,
            },
        )
    ]


def test_data_flags(
    acquisition: str, finished_at: datetime, received_at: datetime, rules: RulesSettings
) -> list[Flag]:
    """R13: test data that arrived later than its acquisition mode allows."""
    limit = (
        rules.auto_data_max_delay_s if acquisition == "auto" else rules.manual_data_max_delay_s
    )
    delay = (received_at - finished_at).total_seconds()
    if delay <= limit:
        return []
    return [
        Flag(
            RULE_TEST_DATA_LATE,
            {
                "acquisition": acquisition,
                "finished_at": rfc3339(finished_at),
                "received_at": rfc3339(received_at),
                "delay_s": int(delay),
                "limit_s": limit,
            },
        )
    ]


@dataclass(frozen=True)
class ImageFacts:
    """What an image file says about itself (its EXIF), for the R9 checks."""

    software: str | None = None
    taken_at: datetime | None = None  # DateTimeOriginal, with its offset or in rules.timezone


def media_flags(
    facts: ImageFacts | None,
    declared_at: datetime | None,
    received_at: datetime,
    rules: RulesSettings,
) -> list[Flag]:
    """R9 (key images: no post-processing, accurate times) and R4 (upload within 24 h):
    an editor named in EXIF; an EXIF capture time far from the declared one; a capture
    (declared, else EXIF) longer ago than manual data may take to arrive."""
    flags: list[Flag] = []
    if facts is not None and facts.software:
        lowered = facts.software.lower()
        if any(name in lowered for name in EDITING_SOFTWARE):
            flags.append(Flag(RULE_MEDIA_EDITED, {"software": facts.software[:100]}))
    exif_at = facts.taken_at if facts is not None else None
    if declared_at is not None and exif_at is not None:
        gap = abs((declared_at - exif_at).total_seconds())
        if gap > rules.media_time_tolerance_s:
            flags.append(
                Flag(
                    RULE_MEDIA_TIME_MISMATCH,
                    {
                        "declared_at": rfc3339(declared_at),
                        "exif_taken_at": rfc3339(exif_at),
                        "gap_s": int(gap),
                        "limit_s": rules.media_time_tolerance_s,
                    },
                )
            )
    captured = declared_at or exif_at
    if captured is not None:
        delay = (received_at - captured).total_seconds()
        if delay > rules.manual_data_max_delay_s:
            flags.append(
                Flag(
                    RULE_MEDIA_LATE,
                    {
                        "captured_at": rfc3339(captured),
                        "received_at": rfc3339(received_at),
                        "delay_s": int(delay),
                        "limit_s": rules.manual_data_max_delay_s,
                    },
                )
            )
    return flags




def flags_json(flags: Iterable[Flag]) -> list[dict[str, Any]]:
    return [f.as_json() for f in flags]
