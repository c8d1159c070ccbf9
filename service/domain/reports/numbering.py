"""Report numbering: voids and the numbering audit (R4).

A void is a `numbering_void` record (parent = the latest report record if the number had
a code) next to its `numbering_voids` row; a voided number stays taken.

A report number's *sequence number* is the last run of ASCII digits in it; the text
before and after it names the *series* (e.g. `BG-2026-000123` is number 123 of series
`BG-2026-…`). The numbering audit finds, per series, every number from `start` (default
1) to the highest one seen that was neither issued nor voided.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Select, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from service.clock import as_utc, china_year, rfc3339, utc_now
from service.domain.evidence import append_record
from service.domain.reports.issuance import check_report_no, institution_region
from service.domain.reports.lifecycle import (
    OPEN_STATUSES,
    STATUS_VOIDED,
    check_reason,
    latest_report_record_id,
    refuse_closed,
)
from service.errors import Conflict, Invalid
from service.storage.models import (
    NumberingGap,
    NumberingSeries,
    NumberingVoid,
    NumberingYear,
    Record,
    ReportCode,
)
from service.storage.report_facts import refresh_facts
from service.storage.rollups import take_number

MIN_YEAR = 2000
#: A code issued this long ago without a signed PDF counts as unfinished (R4: 24 h).
DEFAULT_UNFINISHED_AFTER_S = 24 * 3600
#: At most this many missing numbers are listed per series (the count is always exact).
MAX_MISSING_LISTED = 10_000

_SEQ_RE = re.compile(r"^(.*?)([0-9]+)([^0-9]*)$", re.DOTALL)


# --------------------------------------------------------------------------- voids


def _voided(session: Session, institution: str, year: int, report_no: str) -> bool:
    return (
        session.scalar(
            select(NumberingVoid.id).where(
                NumberingVoid.institution == institution,
                NumberingVoid.year == year,
                NumberingVoid.report_no == report_no,
            )
        )
        is not None
    )


def void_number(
    session: Session,
    *,
    institution: str,
    report_no: str,
    reason: str,
    year: int | None = None,
    now: datetime | None = None,
) -> dict[str, Any]:
    """Void a report number (issued or not) with a reason: a `numbering_void` record."""
    report_no = check_report_no(report_no)
    reason = check_reason(reason)
    now = now or utc_now()
    current = china_year(now)
    year = current if year is None else year
    if not MIN_YEAR <= year <= current:
        raise Invalid("invalid_year", f"year must be between {MIN_YEAR} and {current}")
    institution_region(session, institution)  # 403 for an unregistered institution
    if _voided(session, institution, year, report_no):
        raise Conflict("already_voided", f"report number {report_no!r} is voided")
    row = session.scalars(
        select(ReportCode)
        .where(
            ReportCode.institution == institution,
            ReportCode.year == year,
            ReportCode.report_no == report_no,
        )
        .with_for_update()
    ).first()
    parents: list[Record] = []
    if row is not None:
        refuse_closed(row, "void its number")
        if row.sealed_at is not None:
            raise Conflict(
                "report_sealed", f"report {row.code} is signed; revoke it instead"
            )
        previous = session.get(Record, latest_report_record_id(row))
        assert previous is not None
        parents.append(previous)
    record = append_record(
        session,
        type="numbering_void",
        institution=institution,
        body={
            "year": year,
            "report_no": report_no,
            "reason": reason,
            "code": row.code if row else None,
        },
        parents=parents,
        code=row.code if row else None,
        created_at=now,
    )
    session.add(
        NumberingVoid(
            institution=institution,
            year=year,
            report_no=report_no,
            code=row.code if row else None,
            reason=reason,
            record_id=record.id,
            voided_at=now,
        )
    )
    if row is not None:
        row.status = STATUS_VOIDED
    try:
        session.flush()
    except IntegrityError:
        session.rollback()
        raise Conflict(
            "already_voided", f"report number {report_no!r} is voided"
        ) from None
    take_number(session, institution, year, report_no, code=False)
    if row is not None:
        refresh_facts(session, [row.code])
    return {
        "record_id": record.id,
        "leaf_hash": record.leaf_hash,
        "year": year,
        "report_no": report_no,
        "code": row.code if row else None,
    }


# --------------------------------------------------------------------------- numbering audit


@dataclass(frozen=True)
class SeqNo:
    prefix: str
    number: int
    digits: str
    suffix: str


def sequence_of(report_no: str) -> SeqNo | None:
    """Split a report number at its last run of digits; None if it has no digits."""
    m = _SEQ_RE.match(report_no)
    if m is None:
        return None
    return SeqNo(m.group(1), int(m.group(2)), m.group(2), m.group(3))


def _series_name(prefix: str, suffix: str) -> str:
    return f"{prefix}{{n}}{suffix}"


def numbering_audit(
    session: Session,
    *,
    institution: str,
    year: int,
    unfinished_after_s: int = DEFAULT_UNFINISHED_AFTER_S,
    start: int = 1,
    now: datetime | None = None,
) -> dict[str, Any]:
    """Issued, voided, unfinished and missing report numbers of one institution and year."""
    now = now or utc_now()
    codes = session.scalars(
        select(ReportCode)
        .where(ReportCode.institution == institution, ReportCode.year == year)
        .order_by(ReportCode.issued_at, ReportCode.code)
    ).all()
    voids = session.scalars(
        select(NumberingVoid)
        .where(NumberingVoid.institution == institution, NumberingVoid.year == year)
        .order_by(NumberingVoid.voided_at, NumberingVoid.id)
    ).all()
    cutoff = now - timedelta(seconds=unfinished_after_s)
    issued = [
        {
            "report_no": c.report_no,
            "code": c.code,
            "status": c.status,
            "issued_at": rfc3339(c.issued_at),
            "sealed_at": rfc3339(c.sealed_at) if c.sealed_at else None,
        }
        for c in codes
    ]
    voided = [
        {
            "report_no": v.report_no,
            "code": v.code,
            "reason": v.reason,
            "voided_at": rfc3339(v.voided_at),
            "record_id": v.record_id,
        }
        for v in voids
    ]
    unfinished = [
        {
            "report_no": c.report_no,
            "code": c.code,
            "status": c.status,
            "issued_at": rfc3339(c.issued_at),
            "age_s": int((now - as_utc(c.issued_at)).total_seconds()),
        }
        for c in codes
        if c.status in OPEN_STATUSES and c.sealed_at is None and as_utc(c.issued_at) <= cutoff
    ]
    series, missing, unsequenced = _gaps(
        [c.report_no for c in codes] + [v.report_no for v in voids], start
    )
    return {
        "institution": institution,
        "year": year,
        "generated_at": rfc3339(now),
        "unfinished_after_s": unfinished_after_s,
        "start": start,
        "issued": issued,
        "voided": voided,
        "unfinished": unfinished,
        "missing": missing,
        "series": series,
        "unsequenced": unsequenced,
        "counts": {
            "issued": len(issued),
            "voided": len(voided),
            "unfinished": len(unfinished),
            "missing": sum(s["missing_count"] for s in series),
        },
    }


def _gaps(
    report_nos: Iterable[str], start: int
) -> tuple[list[dict[str, Any]], list[dict[str, Any]], list[str]]:
    groups: dict[tuple[str, str], dict[int, str]] = defaultdict(dict)
    widths: dict[tuple[str, str], int] = {}
    unsequenced: list[str] = []
    for report_no in report_nos:
        seq = sequence_of(report_no)
        if seq is None:
            unsequenced.append(report_no)
            continue
        key = (seq.prefix, seq.suffix)
        groups[key][seq.number] = report_no
        widths[key] = min(widths.get(key, len(seq.digits)), len(seq.digits))
    series: list[dict[str, Any]] = []
    missing: list[dict[str, Any]] = []
    for key in sorted(groups):
        prefix, suffix = key
        numbers = groups[key]
        last = max(numbers)
        width = widths[key]
        present = sum(1 for n in numbers if start <= n <= last)
        gap_count = max(0, last - start + 1 - present)
        # Walk only as far as needed: at most MAX_MISSING_LISTED gaps + the numbers present.
        listed = 0
        n = start
        while n <= last and listed < MAX_MISSING_LISTED:
            if n not in numbers:
                listed += 1
                missing.append(
                    {
                        "series": _series_name(prefix, suffix),
                        "number": n,
                        "report_no": f"{prefix}{n:0{width}d}{suffix}",
                    }
                )
            n += 1
        series.append(
            {
                "series": _series_name(prefix, suffix),
                "first": min(numbers),
                "last": last,
                "count": len(numbers),
                "missing_count": gap_count,
                "missing_truncated": gap_count > MAX_MISSING_LISTED,
            }
        )
    return series, missing, sorted(unsequenced)


def numbering_audits(
    session: Session,
    *,
    institutions: Sequence[str] | Select[Any] | None,
    year: int,
    unfinished_after_s: int = DEFAULT_UNFINISHED_AFTER_S,
    listed: int = 20,
    now: datetime | None = None,
) -> dict[str, dict[str, Any]]:
    """The numbering of every institution (of `institutions`, a list or a subquery; None:
    all) with report codes in `year`: institution -> {counts, missing (the first
    `listed`), voided} as `numbering_audit` gives them from 1 (the console's overview).
    Read from the numbering summaries (service.storage.rollups): the missing count is the
    gaps' sizes added up, so nothing here grows with the number of reports."""
    now = now or utc_now()
    cutoff = now - timedelta(seconds=unfinished_after_s)
    wanted = list(institutions) if isinstance(institutions, Sequence) else institutions

    def where(model: Any) -> list[Any]:
        conds: list[Any] = [model.year == year]
        if wanted is not None:
            conds.append(model.institution.in_(wanted))
        return conds

    issued = {inst: int(n) for inst, n in session.execute(
        select(NumberingYear.institution, NumberingYear.issued)
        .where(*where(NumberingYear), NumberingYear.issued > 0))}
    if not issued:
        return {}
    missing_count = {inst: int(n) for inst, n in session.execute(
        select(NumberingGap.institution, func.sum(NumberingGap.hi - NumberingGap.lo + 1))
        .where(*where(NumberingGap)).group_by(NumberingGap.institution))}
    widths = {(inst, p, sfx): w for inst, p, sfx, w in session.execute(
        select(NumberingSeries.institution, NumberingSeries.prefix, NumberingSeries.suffix,
               NumberingSeries.width).where(*where(NumberingSeries)))}
    ranked = (select(NumberingGap.institution, NumberingGap.prefix, NumberingGap.suffix,
                     NumberingGap.lo, NumberingGap.hi,
                     func.row_number().over(
                         partition_by=(NumberingGap.institution, NumberingGap.prefix,
                                       NumberingGap.suffix),
                         order_by=NumberingGap.lo).label("rank"))
              .where(*where(NumberingGap)).subquery())
    first_gaps: dict[str, list[tuple[str, str, int, int]]] = defaultdict(list)
    for inst, prefix, suffix, lo, hi in session.execute(
            select(ranked.c.institution, ranked.c.prefix, ranked.c.suffix, ranked.c.lo,
                   ranked.c.hi).where(ranked.c.rank <= listed)):
        first_gaps[inst].append((prefix, suffix, int(lo), int(hi)))
    unfinished: dict[str, int] = dict(
        session.execute(
            select(ReportCode.institution, func.count())
            .where(
                *where(ReportCode),
                ReportCode.sealed_at.is_(None),
                ReportCode.status.in_(OPEN_STATUSES),
                ReportCode.issued_at <= cutoff,
            )
            .group_by(ReportCode.institution)
        ).all()
    )
    voided: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for v in session.scalars(
        select(NumberingVoid).where(*where(NumberingVoid))
        .order_by(NumberingVoid.voided_at, NumberingVoid.id)
    ):
        voided[v.institution].append(
            {"report_no": v.report_no, "code": v.code, "reason": v.reason,
             "voided_at": rfc3339(v.voided_at), "record_id": v.record_id}
        )
    out: dict[str, dict[str, Any]] = {}
    for inst, n in issued.items():
        missing: list[dict[str, Any]] = []
        for prefix, suffix, lo, hi in sorted(first_gaps.get(inst, [])):
            width = widths[(inst, prefix, suffix)]
            for number in range(lo, min(hi, lo + listed) + 1):
                if len(missing) >= listed:
                    break
                missing.append({"series": _series_name(prefix, suffix), "number": number,
                                "report_no": f"{prefix}{number:0{width}d}{suffix}"})
        out[inst] = {
            "counts": {
                "issued": n,
                "voided": len(voided[inst]),
                "unfinished": int(unfinished.get(inst, 0)),
                "missing": missing_count.get(inst, 0),
            },
            "missing": missing,
            "voided": voided[inst],
        }
    return out
