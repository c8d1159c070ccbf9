"""What the console counts and searches: one fact row per report code of a region, the
statistics behind the overview's charts (also `GET /api/v1/audit/stats`), the overview's
other panels (nonconforming ledger, overdue samples, numbering, warnings, anchoring) and
report search.

Facts are read per request from `report_codes`, `institutions`, the report's latest
metadata record (conclusion, date) and the test records it cites (test items). That is
right at the size of a city's day-to-day use; a summary table for millions of reports is
not built yet (docs/console.md).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any

import orjson
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from service.anchoring.status import anchoring_status
from service.clock import CHINA_TZ, as_utc, china_year, rfc3339, utc_now
from service.domain.accounts import AuditScope, region_prefix
from service.domain.codes import canonical_or_none
from service.domain.console.ledger import actions_of, is_closed
from service.domain.nonconforming import list_ledger
from service.domain.overdue import find_overdue
from service.domain.reports.numbering import numbering_audit
from service.errors import Invalid
from service.settings import Settings
from service.storage.models import (
    Institution,
    Record,
    RecordParent,
    ReportCode,
    ReportWarning,
)

DIMENSIONS = ("period", "institution", "test_item", "conclusion", "status")
PERIODS = ("day", "week", "month")
MEASURES = ("total", "pass", "fail", "pass_rate")
SORT_KEYS = ("issued_on", "report_no", "institution", "conclusion", "status", "code")
STATUSES = ("issued", "reported", "revoked", "voided")
CONCLUSIONS = ("pass", "fail")
#: How many buckets the overview shows of each period.
PERIOD_BUCKETS = {"day": 30, "week": 12, "month": 12}
_CHUNK = 500


@dataclass
class ReportFact:
    code: str
    institution: str
    institution_name: str
    region: str
    report_no: str
    year: int
    status: str
    issued_at: datetime
    issued_on: date
    sealed: bool
    conclusion: str | None = None
    project_record_id: str = ""
    project_name: str = ""
    test_items: list[str] = field(default_factory=list)

    def row(self) -> dict[str, Any]:
        return {
            "code": self.code, "report_no": self.report_no, "institution": self.institution,
            "institution_name": self.institution_name, "region": self.region,
            "project": self.project_name, "test_items": self.test_items,
            "conclusion": self.conclusion, "status": self.status,
            "issued_on": self.issued_on.isoformat(), "issued_at": rfc3339(self.issued_at),
            "sealed": self.sealed,
        }


def _body(canonical: bytes | None) -> dict[str, Any]:
    if not canonical:
        return {}
    try:
        obj = orjson.loads(canonical)
    except orjson.JSONDecodeError:
        return {}
    body = obj.get("body") if isinstance(obj, dict) else None
    return body if isinstance(body, dict) else {}


def _chunks(items: Sequence[str]) -> Iterable[Sequence[str]]:
    for i in range(0, len(items), _CHUNK):
        yield items[i : i + _CHUNK]


def _scope_filter(query: Any, scope: AuditScope) -> Any:
    if scope.region is None:
        return query
    return query.where(Institution.region.startswith(region_prefix(scope.region)))


def report_facts(session: Session, scope: AuditScope, *, code: str | None = None,
                 institution: str | None = None, year: int | None = None
                 ) -> list[ReportFact]:
    """Every report code the scope may see (or the one `code`, or those of one institution
    and numbering year), with its facts."""
    query = _scope_filter(
        select(ReportCode.code, ReportCode.institution, Institution.name, Institution.region,
               ReportCode.report_no, ReportCode.year, ReportCode.status, ReportCode.issued_at,
               ReportCode.sealed_at, ReportCode.report_record_id,
               ReportCode.project_record_id, Record.canonical)
        .join(Institution, Institution.uscc == ReportCode.institution)
        .outerjoin(Record, Record.id == ReportCode.report_record_id),
        scope,
    )
    if code is not None:
        query = query.where(ReportCode.code == code)
    if institution is not None:
        query = query.where(ReportCode.institution == institution)
    if year is not None:
        query = query.where(ReportCode.year == year)
    facts: list[ReportFact] = []
    by_report_record: dict[str, ReportFact] = {}
    projects: dict[str, list[ReportFact]] = defaultdict(list)
    for (code_, inst, name, region, report_no, year_, status, issued_at, sealed_at,
         report_rid, project_rid, canonical) in session.execute(query):
        body = _body(canonical)
        issued_on = as_utc(issued_at).astimezone(CHINA_TZ).date()
        try:
            issued_on = date.fromisoformat(str(body["issued_on"]))
        except (KeyError, ValueError):
            pass
        conclusion = body.get("conclusion")
        fact = ReportFact(code_, inst, name, region, report_no, year_, status,
                          as_utc(issued_at),
                          issued_on, sealed_at is not None,
                          conclusion if conclusion in CONCLUSIONS else None, project_rid)
        facts.append(fact)
        if report_rid:
            by_report_record[report_rid] = fact
        projects[project_rid].append(fact)
    rids = list(by_report_record)
    for part in _chunks(rids):
        rows = session.execute(
            select(RecordParent.child_id, Record.canonical)
            .join(Record, Record.id == RecordParent.parent_id)
            .where(RecordParent.child_id.in_(part), Record.type == "test_record")
        )
        for child_id, canonical in rows:
            item = _body(canonical).get("test_item")
            fact = by_report_record[child_id]
            if isinstance(item, str) and item not in fact.test_items:
                fact.test_items.append(item)
    pids = list(projects)
    for part in _chunks(pids):
        for rid, canonical in session.execute(
                select(Record.id, Record.canonical).where(Record.id.in_(part))):
            name = _body(canonical).get("name")
            for fact in projects[rid]:
                fact.project_name = name if isinstance(name, str) else ""
    for fact in facts:
        fact.test_items.sort()
    return facts


# --------------------------------------------------------------------------- statistics


@dataclass(frozen=True)
class StatsQuery:
    dimension: str = "period"
    period: str = "day"
    measure: str = "total"
    date_from: date | None = None
    date_to: date | None = None
    institution: str | None = None
    test_item: str | None = None

    def check(self) -> StatsQuery:
        for name, value, allowed in (("dimension", self.dimension, DIMENSIONS),
                                     ("period", self.period, PERIODS),
                                     ("measure", self.measure, MEASURES)):
            if value not in allowed:
                raise Invalid("invalid_filter",
                              f"{name} must be one of {', '.join(allowed)}, not {value!r}")
        if self.date_from and self.date_to and self.date_from > self.date_to:
            raise Invalid("invalid_filter", "from lies after to")
        return self


def _bucket(day: date, period: str) -> str:
    if period == "month":
        return f"{day.year:04d}-{day.month:02d}"
    if period == "week":
        iso = day.isocalendar()
        return f"{iso[0]:04d}-W{iso[1]:02d}"
    return day.isoformat()


def _period_keys(period: str, end: date, count: int) -> list[str]:
    keys: list[str] = []
    day = end
    while len(keys) < count:
        key = _bucket(day, period)
        if not keys or keys[-1] != key:
            keys.append(key)
        day -= timedelta(days=1)
    return keys[::-1]


def _filtered(facts: Iterable[ReportFact], q: StatsQuery) -> list[ReportFact]:
    out = []
    for f in facts:
        if q.date_from and f.issued_on < q.date_from:
            continue
        if q.date_to and f.issued_on > q.date_to:
            continue
        if q.institution and f.institution != q.institution:
            continue
        if q.test_item and q.test_item not in f.test_items:
            continue
        out.append(f)
    return out


def _measures(group: Sequence[ReportFact]) -> dict[str, Any]:
    passed = sum(1 for f in group if f.conclusion == "pass")
    failed = sum(1 for f in group if f.conclusion == "fail")
    decided = passed + failed
    return {"total": len(group), "pass": passed, "fail": failed,
            "pass_rate": round(passed / decided, 4) if decided else None}


def stats(facts: Sequence[ReportFact], q: StatsQuery, today: date | None = None
          ) -> dict[str, Any]:
    """One statistic: rows of {key, label, total, pass, fail, pass_rate}."""
    q = q.check()
    chosen = _filtered(facts, q)
    groups: dict[str, list[ReportFact]] = defaultdict(list)
    labels: dict[str, str] = {}
    for f in chosen:
        if q.dimension == "period":
            keys = [_bucket(f.issued_on, q.period)]
        elif q.dimension == "institution":
            keys = [f.institution]
            labels[f.institution] = f.institution_name
        elif q.dimension == "test_item":
            keys = f.test_items or ["（未注明）"]
        elif q.dimension == "conclusion":
            keys = [f.conclusion or "none"]
        else:
            keys = [f.status]
        for key in keys:
            groups[key].append(f)
    if q.dimension == "period":
        end = q.date_to or today or utc_now().astimezone(CHINA_TZ).date()
        keys = _period_keys(q.period, end, PERIOD_BUCKETS[q.period])
        if q.date_from is not None:
            keys = [k for k in keys if k >= _bucket(q.date_from, q.period)]
        order = keys
    else:
        order = sorted(groups, key=lambda k: (-(_measures(groups[k])[q.measure] or 0), k))
    rows = [{"key": k, "label": labels.get(k, k), **_measures(groups.get(k, []))}
            for k in order]
    return {
        "dimension": q.dimension, "period": q.period if q.dimension == "period" else None,
        "measure": q.measure,
        "from": q.date_from.isoformat() if q.date_from else None,
        "to": q.date_to.isoformat() if q.date_to else None,
        "institution": q.institution, "test_item": q.test_item,
        "totals": _measures(chosen), "rows": rows,
    }


# --------------------------------------------------------------------------- overview


def overview(session: Session, settings: Settings, scope: AuditScope,
             now: datetime | None = None, filters: StatsQuery | None = None
             ) -> dict[str, Any]:
    """Everything the overview page shows, for the scope's region; `filters` (dates, lab,
    test item) narrow the counts and charts, not the ledger and health panels."""
    now = now or utc_now()
    today = now.astimezone(CHINA_TZ).date()
    f = (filters or StatsQuery()).check()
    all_facts = report_facts(session, scope)
    facts = _filtered(all_facts, f)

    def chart(dimension: str, period: str = "day") -> dict[str, Any]:
        return stats(all_facts, StatsQuery(dimension, period, "total", f.date_from, f.date_to,
                                           f.institution, f.test_item), today)

    charts = {"day": chart("period", "day"), "week": chart("period", "week"),
              "month": chart("period", "month"), "institution": chart("institution"),
              "test_item": chart("test_item")}
    choices = {
        "institutions": sorted({(x.institution, x.institution_name) for x in all_facts},
                               key=lambda t: t[1]),
        "test_items": sorted({i for x in all_facts for i in x.test_items}),
    }
    institutions = scope.institutions(session)
    ledger = list_ledger(session, institution=None, limit=200, institutions=institutions)
    steps = actions_of(session, [e["id"] for e in ledger])
    for e in ledger:
        e["steps"] = steps.get(e["id"], [])
        e["closed"] = is_closed(e["steps"])
    closed = sum(1 for e in ledger if e["closed"])
    overdue = find_overdue(session, settings.rules, institution=None, now=now, limit=100,
                           institutions=institutions)
    year = china_year(now)
    numbering = []
    names = {x.institution: x.institution_name for x in all_facts}
    for inst in sorted({x.institution for x in all_facts if x.year == year}):
        audit = numbering_audit(session, institution=inst, year=year, now=now)
        numbering.append({"institution": inst, "institution_name": names.get(inst, inst),
                          "year": year, **audit["counts"],
                          "missing_numbers": [m.get("report_no") for m in audit["missing"]][:20],
                          "voids": audit["voided"][:20]})
    wq = select(ReportWarning.code, func.count(ReportWarning.id)).group_by(ReportWarning.code)
    if institutions is not None:
        wq = wq.where(ReportWarning.institution.in_(institutions))
    warning_counts = sorted(((c, int(n)) for c, n in session.execute(wq)),
                            key=lambda x: (-x[1], x[0]))
    return {
        "generated_at": rfc3339(now),
        "region": scope.region,
        "filters": {"from": f.date_from.isoformat() if f.date_from else "",
                    "to": f.date_to.isoformat() if f.date_to else "",
                    "institution": f.institution or "", "test_item": f.test_item or ""},
        "choices": choices,
        "totals": _measures(facts),
        "charts": charts,
        "nonconforming": {"items": ledger, "count": len(ledger), "closed": closed,
                          "open": len(ledger) - closed},
        "overdue": {"items": overdue, "count": len(overdue)},
        "numbering": numbering,
        "warnings": [{"code": c, "count": n} for c, n in warning_counts],
        "anchoring": anchoring_status(session),
    }


# --------------------------------------------------------------------------- search


@dataclass(frozen=True)
class SearchQuery:
    code: str = ""
    report_no: str = ""
    project: str = ""
    institution: str = ""
    test_item: str = ""
    conclusion: str = ""
    status: str = ""
    date_from: date | None = None
    date_to: date | None = None
    sort: str = "issued_on"
    desc: bool = True
    page: int = 1
    per_page: int = 20

    def check(self) -> SearchQuery:
        if self.sort not in SORT_KEYS:
            raise Invalid("invalid_filter", f"sort must be one of {', '.join(SORT_KEYS)}")
        if self.conclusion and self.conclusion not in CONCLUSIONS:
            raise Invalid("invalid_filter", "conclusion must be pass or fail")
        if self.status and self.status not in STATUSES:
            raise Invalid("invalid_filter", f"status must be one of {', '.join(STATUSES)}")
        if not 1 <= self.per_page <= 200 or self.page < 1:
            raise Invalid("invalid_filter", "page from 1, per_page from 1 to 200")
        return self


def search(facts: Sequence[ReportFact], q: SearchQuery) -> dict[str, Any]:
    q = q.check()
    code = canonical_or_none(q.code) if q.code.strip() else None
    if q.code.strip() and code is None:
        code = q.code.strip().upper()  # not a valid code: matches nothing exactly
    out = []
    for f in facts:
        if code and f.code != code:
            continue
        if q.report_no and q.report_no.strip().lower() not in f.report_no.lower():
            continue
        if q.project and q.project.strip() not in f.project_name:
            continue
        if q.institution and (q.institution.strip().upper() != f.institution
                              and q.institution.strip() not in f.institution_name):
            continue
        if q.test_item and not any(q.test_item.strip() in t for t in f.test_items):
            continue
        if q.conclusion and f.conclusion != q.conclusion:
            continue
        if q.status and f.status != q.status:
            continue
        if q.date_from and f.issued_on < q.date_from:
            continue
        if q.date_to and f.issued_on > q.date_to:
            continue
        out.append(f)

    def key(f: ReportFact) -> Any:
        value = {"issued_on": f.issued_on.isoformat(), "report_no": f.report_no,
                 "institution": f.institution_name, "conclusion": f.conclusion or "",
                 "status": f.status, "code": f.code}[q.sort]
        return (value, f.code)

    out.sort(key=key, reverse=q.desc)
    start = (q.page - 1) * q.per_page
    return {"total": len(out), "page": q.page, "per_page": q.per_page,
            "pages": max(1, -(-len(out) // q.per_page)),
            "rows": [f.row() for f in out[start : start + q.per_page]],
            "all": out}


def raw_bodies(session: Session, record_ids: Sequence[str]) -> dict[str, dict[str, Any]]:
    """The recorded bodies, unmasked, of the given records (the console's drill-down)."""
    out: dict[str, dict[str, Any]] = {}
    for part in _chunks(list(record_ids)):
        for rid, canonical in session.execute(
                select(Record.id, Record.canonical).where(Record.id.in_(part))):
            out[rid] = _body(canonical)
    return out


def flat_fields(body: dict[str, Any]) -> list[tuple[str, Any]]:
    """A record body as (field, value) pairs for a table (the page writes nested values for
    people: console.pages `_show`); the platform's history and file lists left out."""
    return [(k, v) for k, v in body.items() if k not in ("history", "files", "event")]
