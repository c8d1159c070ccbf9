"""What the console counts and searches: one fact row per report code of a region, the
statistics behind the overview's charts (also `GET /api/v1/audit/stats`), the overview's
other panels (nonconforming ledger, overdue samples, numbering, warnings, anchoring) and
report search.

Everything is counted, grouped, filtered and sorted by the database on the facts tables
(`report_facts`, `report_fact_items`: service.storage.report_facts keeps them in the same
transaction as the records), with indexes on region and issue date, institution and test
item; the overview's numbering panel is three queries for all labs (docs/console.md).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any

from sqlalchemy import and_, exists, func, literal, or_, select
from sqlalchemy.orm import Session

from service.anchoring.status import anchoring_status
from service.clock import CHINA_TZ, as_utc, china_year, rfc3339, utc_now
from service.domain.accounts import AuditScope, region_prefix
from service.domain.codes import canonical_or_none
from service.domain.console.ledger import actions_of, is_closed
from service.domain.nonconforming import list_ledger
from service.domain.overdue import find_overdue
from service.domain.reports.numbering import numbering_audits
from service.errors import Invalid
from service.settings import Settings
from service.storage.models import Institution, Record, ReportWarning
from service.storage.models import ReportFactDay as D  # noqa: N814
from service.storage.models import ReportFactItem as I  # noqa: N814
from service.storage.models import ReportFactMonth as M  # noqa: N814
from service.storage.models import ReportFactRow as F  # noqa: N814
from service.storage.report_facts import body_of

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


def _region_range(column: Any, scope: AuditScope) -> Any:
    """The scope's region as a range on `column` (a prefix of digits; an index serves it
    in any collation)."""
    prefix = region_prefix(scope.region or "")
    upper = prefix[:-1] + chr(ord(prefix[-1]) + 1)
    return and_(column >= prefix, column < upper)


def _fact_of(row: Any) -> ReportFact:
    return ReportFact(row.code, row.institution, row.name or row.institution, row.region,
                      row.report_no, row.year, row.status, as_utc(row.issued_at),
                      row.issued_on, bool(row.sealed), row.conclusion,
                      row.project_record_id, row.project_name,
                      [t for t in row.test_items.split("\n") if t])


def _facts_select(scope: AuditScope) -> Any:
    query = (select(F.code, F.institution, Institution.name, F.region, F.report_no, F.year,
                    F.status, F.issued_at, F.issued_on, F.sealed, F.conclusion,
                    F.project_record_id, F.project_name, F.test_items)
             .join(Institution, Institution.uscc == F.institution))
    if scope.region is not None:
        query = query.where(_region_range(F.region, scope))
    return query


def report_facts(session: Session, scope: AuditScope, *, code: str | None = None,
                 institution: str | None = None, year: int | None = None
                 ) -> list[ReportFact]:
    """The report facts the scope may see of the one `code`, or of one institution and
    numbering year (or all of them), from the facts table."""
    query = _facts_select(scope)
    if code is not None:
        query = query.where(F.code == code)
    if institution is not None:
        query = query.where(F.institution == institution)
    if year is not None:
        query = query.where(F.year == year)
    return [_fact_of(r) for r in session.execute(query)]


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


Counts = dict[Any, tuple[int, int, int]]
#: The count tables' columns a statistic groups by.
_GROUP_COLUMNS = ("day", "institution", "test_items", "conclusion", "status")


def _next_month(day: date) -> date:
    return date(day.year + day.month // 12, day.month % 12 + 1, 1)


def _parts(lo: date | None, hi: date | None) -> list[tuple[Any, list[Any]]]:
    """Which count table rows hold the facts issued from `lo` to `hi` (None: open): whole
    months from report_fact_months, the days of a partial month from report_fact_days."""
    if lo is None and hi is None:
        return [(M, [])]
    m_lo = None if lo is None else (lo if lo.day == 1 else _next_month(lo))
    # Whole months end before m_hi (exclusive).
    m_hi = None if hi is None else (
        _next_month(hi) if _next_month(hi) - timedelta(days=1) == hi else hi.replace(day=1))
    if m_lo is not None and m_hi is not None and m_lo >= m_hi:
        return [(D, [D.day >= lo, D.day <= hi])]
    months: list[Any] = []
    days: list[Any] = []
    if m_lo is not None:
        months.append(M.day >= m_lo)
        if lo is not None and lo < m_lo:
            days.append(and_(D.day >= lo, D.day < m_lo))
    if m_hi is not None:
        months.append(M.day < m_hi)
        if hi is not None and m_hi <= hi:
            days.append(and_(D.day >= m_hi, D.day <= hi))
    parts: list[tuple[Any, list[Any]]] = [(M, months)]
    if days:
        parts.append((D, [or_(*days)]))
    return parts


def _rollup(session: Session, scope: AuditScope, q: StatsQuery, columns: Sequence[str],
            lo: date | None = None, hi: date | None = None, *, days_only: bool = False,
            more: Callable[[Any], list[Any]] | None = None
            ) -> dict[tuple[Any, ...], int]:
    """(the `columns`' values..., conclusion) -> how many facts, of the scope and the
    filters (and issued from `lo` to `hi`), added up from the count tables (PostgreSQL
    keeps them with the facts: service.storage.rollups)."""
    if q.date_from is not None:
        lo = q.date_from if lo is None else max(lo, q.date_from)
    if q.date_to is not None:
        hi = q.date_to if hi is None else min(hi, q.date_to)
    if lo is not None and hi is not None and lo > hi:
        return {}
    if days_only:
        bounds = ([D.day >= lo] if lo else []) + ([D.day <= hi] if hi else [])
        parts: list[tuple[Any, list[Any]]] = [(D, bounds)]
    else:
        parts = _parts(lo, hi)
    out: dict[tuple[Any, ...], int] = defaultdict(int)
    for table, conds in parts:
        cols = [getattr(table, c) for c in columns] + [table.conclusion]
        where = [*conds, table.n > 0]
        if scope.region is not None:
            where.append(_region_range(table.region, scope))
        if q.institution:
            where.append(table.institution == q.institution)
        if q.test_item:
            where.append((literal("\n") + table.test_items + literal("\n")).like(
                _like("\n" + q.test_item + "\n"), escape="\\"))
        if more is not None:
            where.extend(more(table))
        query = select(*cols, func.sum(table.n)).where(*where).group_by(*cols)
        for *key, n in session.execute(query):
            out[tuple(key)] += int(n)
    return out


def _fold(rows: dict[tuple[Any, ...], int], key: Any) -> Counts:
    """key(row values without the conclusion) -> (total, pass, fail); key may return a
    list of keys (test items: a fact counts under each of its items)."""
    counts: dict[Any, list[int]] = defaultdict(lambda: [0, 0, 0])
    for (*values, conclusion), n in rows.items():
        keys = key(*values)
        for k in keys if isinstance(keys, list) else [keys]:
            c = counts[k]
            c[0] += n
            c[1] += n if conclusion == "pass" else 0
            c[2] += n if conclusion == "fail" else 0
    return {k: (n, p, f) for k, (n, p, f) in counts.items()}


def _items_of(test_items: str) -> list[str]:
    return [t for t in test_items.split("\n") if t] or ["（未注明）"]


def _measures(counts: Iterable[tuple[int, int, int]]) -> dict[str, Any]:
    total = passed = failed = 0
    for n, p, f in counts:
        total, passed, failed = total + n, passed + p, failed + f
    decided = passed + failed
    return {"total": total, "pass": passed, "fail": failed,
            "pass_rate": round(passed / decided, 4) if decided else None}


def _institution_names(session: Session, keys: Iterable[str]) -> dict[str, str]:
    wanted = list(keys)
    out: dict[str, str] = {}
    for i in range(0, len(wanted), _CHUNK):
        for uscc, name in session.execute(select(Institution.uscc, Institution.name)
                                          .where(Institution.uscc.in_(wanted[i : i + _CHUNK]))):
            out[uscc] = name
    return out


def _bucket_start(key: str, period: str) -> date:
    if period == "month":
        return date(int(key[:4]), int(key[5:7]), 1)
    if period == "week":
        return date.fromisocalendar(int(key[:4]), int(key[6:]), 1)
    return date.fromisoformat(key)


def _period_end(q: StatsQuery, today: date | None) -> date:
    return q.date_to or today or utc_now().astimezone(CHINA_TZ).date()


def _period_span(q: StatsQuery, today: date | None) -> tuple[date, date]:
    """The first and last day of the buckets a statistic by period shows (the last
    PERIOD_BUCKETS ending at `to` or today)."""
    end = _period_end(q, today)
    keys = _period_keys(q.period, end, PERIOD_BUCKETS[q.period])
    lo = _bucket_start(keys[0], q.period)
    if q.period == "month":
        hi = _next_month(end) - timedelta(days=1)
    elif q.period == "week":
        hi = end + timedelta(days=6 - end.weekday())
    else:
        hi = end
    return lo, hi


def _period_counts(session: Session, scope: AuditScope, q: StatsQuery, today: date | None,
                   days: dict[tuple[Any, ...], int] | None = None) -> Counts:
    """Bucket -> counts of the buckets the statistic shows, from the days (months: the
    month table) of those buckets only; `days`: counts by day already read for a span
    that covers them (the overview reads the days of its day and week charts at once)."""
    lo, hi = _period_span(q, today)
    if days is None:
        rows = _rollup(session, scope, q, ["day"], lo, hi, days_only=q.period != "month")
    else:
        rows = {k: n for k, n in days.items() if lo <= k[0] <= hi}
    return _fold(rows, lambda day: _bucket(day, q.period))


def _dimension_counts(session: Session, scope: AuditScope, q: StatsQuery,
                      rows: dict[tuple[Any, ...], int] | None = None
                      ) -> tuple[dict[str, list[tuple[int, int, int]]], dict[str, str]]:
    """The groups of a statistic other than by period (key -> counts that add up) and
    their labels; `rows`: the scope's counts by institution and test items, if read."""
    groups: dict[str, list[tuple[int, int, int]]] = defaultdict(list)
    labels: dict[str, str] = {}
    if q.dimension in ("institution", "test_item") and rows is None:
        rows = _rollup(session, scope, q, ["institution", "test_items"])
    if q.dimension == "institution":
        assert rows is not None
        for k, c in _fold(rows, lambda inst, _items: inst).items():
            groups[k].append(c)
        labels = _institution_names(session, groups)
    elif q.dimension == "test_item":
        assert rows is not None
        for k, c in _fold(rows, lambda _inst, items: _items_of(items)).items():
            groups[k].append(c)
    else:
        column = q.dimension  # conclusion or status
        for k, c in _fold(_rollup(session, scope, q, [column]), lambda v: v).items():
            groups[k or "none"].append(c)
    return groups, labels


def _stats_of(q: StatsQuery, groups: dict[str, list[tuple[int, int, int]]],
              labels: dict[str, str], totals: dict[str, Any], today: date | None
              ) -> dict[str, Any]:
    measured = {k: _measures(v) for k, v in groups.items()}
    empty = _measures([])
    if q.dimension == "period":
        keys = _period_keys(q.period, _period_end(q, today), PERIOD_BUCKETS[q.period])
        if q.date_from is not None:
            keys = [k for k in keys if k >= _bucket(q.date_from, q.period)]
        order = keys
    else:
        order = sorted(measured, key=lambda k: (-(measured[k][q.measure] or 0), k))
    rows = [{"key": k, "label": labels.get(k, k), **measured.get(k, empty)} for k in order]
    return {
        "dimension": q.dimension, "period": q.period if q.dimension == "period" else None,
        "measure": q.measure,
        "from": q.date_from.isoformat() if q.date_from else None,
        "to": q.date_to.isoformat() if q.date_to else None,
        "institution": q.institution, "test_item": q.test_item,
        "totals": totals, "rows": rows,
    }


def _totals(session: Session, scope: AuditScope, q: StatsQuery) -> dict[str, Any]:
    return _measures(_fold(_rollup(session, scope, q, []), lambda: None).values())


def stats(session: Session, scope: AuditScope, q: StatsQuery, today: date | None = None
          ) -> dict[str, Any]:
    """One statistic of the scope: rows of {key, label, total, pass, fail, pass_rate},
    added up in SQL from the count tables."""
    q = q.check()
    if q.dimension == "period":
        groups = {k: [c] for k, c in _period_counts(session, scope, q, today).items()}
        return _stats_of(q, groups, {}, _totals(session, scope, q), today)
    groups, labels = _dimension_counts(session, scope, q)
    if q.dimension == "test_item":
        totals = _totals(session, scope, q)
    else:
        totals = _measures(c for v in groups.values() for c in v)
    return _stats_of(q, groups, labels, totals, today)


# --------------------------------------------------------------------------- overview


def overview(session: Session, settings: Settings, scope: AuditScope,
             now: datetime | None = None, filters: StatsQuery | None = None
             ) -> dict[str, Any]:
    """Everything the overview page shows, for the scope's region; `filters` (dates, lab,
    test item) narrow the counts and charts, not the ledger and health panels."""
    now = now or utc_now()
    today = now.astimezone(CHINA_TZ).date()
    f = (filters or StatsQuery()).check()
    # One read of the counts by lab and test items gives the totals and both charts.
    rows = _rollup(session, scope, f, ["institution", "test_items"])
    totals = _measures(_fold(rows, lambda _i, _t: None).values())

    def period_query(period: str) -> StatsQuery:
        return StatsQuery("period", period, "total", f.date_from, f.date_to, f.institution,
                          f.test_item)

    # The day and week charts' days in one read (the 12 weeks cover the 30 days).
    spans = [_period_span(period_query(p), today) for p in ("day", "week")]
    days = _rollup(session, scope, f, ["day"], min(lo for lo, _ in spans),
                   max(hi for _, hi in spans), days_only=True)

    def by_period(period: str) -> dict[str, Any]:
        q = period_query(period)
        counts = _period_counts(session, scope, q, today,
                                days if period in ("day", "week") else None)
        groups = {k: [c] for k, c in counts.items()}
        return _stats_of(q, groups, {}, totals, today)

    def chart(dimension: str) -> dict[str, Any]:
        q = StatsQuery(dimension, "day", "total", f.date_from, f.date_to, f.institution,
                       f.test_item)
        groups, labels = _dimension_counts(session, scope, q, rows)
        return _stats_of(q, groups, labels, totals, today)

    charts = {"day": by_period("day"), "week": by_period("week"),
              "month": by_period("month"), "institution": chart("institution"),
              "test_item": chart("test_item")}
    inst_query = select(Institution.uscc, Institution.name).where(
        exists().where(F.institution == Institution.uscc))
    if scope.region is not None:
        inst_query = inst_query.where(_region_range(Institution.region, scope))
    named = sorted(((u, n) for u, n in session.execute(inst_query)), key=lambda t: t[1])
    if f.date_from or f.date_to or f.institution or f.test_item:
        all_sets = _rollup(session, scope, StatsQuery(), ["test_items"])
        items = sorted({t for (sets, _), n in all_sets.items() for t in sets.split("\n") if t})
    else:
        items = sorted(r["key"] for r in charts["test_item"]["rows"] if r["key"] != "（未注明）")
    choices = {"institutions": named, "test_items": items}
    institutions = scope.institution_select()
    ledger = list_ledger(session, institution=None, limit=200, institutions=institutions)
    steps = actions_of(session, [e["id"] for e in ledger])
    for e in ledger:
        e["steps"] = steps.get(e["id"], [])
        e["closed"] = is_closed(e["steps"])
    closed = sum(1 for e in ledger if e["closed"])
    overdue = find_overdue(session, settings.rules, institution=None, now=now, limit=100,
                           institutions=institutions)
    year = china_year(now)
    names = dict(named)
    numbering = [
        {"institution": inst, "institution_name": names.get(inst, inst), "year": year,
         **audit["counts"],
         "missing_numbers": [m.get("report_no") for m in audit["missing"]][:20],
         "voids": audit["voided"][:20]}
        for inst, audit in sorted(numbering_audits(session, institutions=institutions,
                                                   year=year, now=now).items())
    ]
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
        "totals": totals,
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


def _like(text: str) -> str:
    """`text` as a LIKE pattern that matches it anywhere, its wildcards taken literally."""
    return "%" + text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


def _search_where(q: SearchQuery) -> list[Any]:
    conds: list[Any] = []
    if q.code.strip():
        code = canonical_or_none(q.code) or q.code.strip().upper()  # invalid: matches none
        conds.append(F.code == code)
    if q.report_no.strip():
        conds.append(func.lower(F.report_no).like(_like(q.report_no.strip().lower()),
                                                  escape="\\"))
    if q.project.strip():
        conds.append(F.project_name.like(_like(q.project.strip()), escape="\\"))
    if q.institution.strip():
        conds.append(or_(F.institution == q.institution.strip().upper(),
                         Institution.name.like(_like(q.institution.strip()), escape="\\")))
    if q.test_item.strip():
        conds.append(exists().where(I.code == F.code,
                                    I.test_item.like(_like(q.test_item.strip()), escape="\\")))
    if q.conclusion:
        conds.append(F.conclusion == q.conclusion)
    if q.status:
        conds.append(F.status == q.status)
    if q.date_from:
        conds.append(F.issued_on >= q.date_from)
    if q.date_to:
        conds.append(F.issued_on <= q.date_to)
    return conds


def _search_count(session: Session, scope: AuditScope, q: SearchQuery) -> int | None:
    """How many facts match, added up from the count tables when every filter is one of
    their columns (lab, test item, conclusion, status, dates); None: count the facts."""
    item = q.test_item.strip()
    if q.code.strip() or q.report_no.strip() or q.project.strip() or "\n" in item:
        return None
    lab = q.institution.strip()

    def more(table: Any) -> list[Any]:
        conds: list[Any] = []
        if lab:
            conds.append(or_(table.institution == lab.upper(), table.institution.in_(
                select(Institution.uscc).where(Institution.name.like(_like(lab),
                                                                     escape="\\")))))
        if item:  # an item containing the text: the newline-joined set contains it
            conds.append(table.test_items.like(_like(item), escape="\\"))
        if q.conclusion:
            conds.append(table.conclusion == q.conclusion)
        if q.status:
            conds.append(table.status == q.status)
        return conds

    rows = _rollup(session, scope, StatsQuery(date_from=q.date_from, date_to=q.date_to),
                   [], more=more)
    return sum(rows.values())


_SORT_COLUMNS = {"issued_on": F.issued_on, "report_no": F.report_no,
                 "institution": Institution.name, "conclusion": func.coalesce(F.conclusion, ""),
                 "status": F.status, "code": F.code}


def search(session: Session, scope: AuditScope, q: SearchQuery, *, every: bool = False
           ) -> dict[str, Any]:
    """A page of the scope's reports matching the filters, sorted, with the count; `every`:
    also `all`, every matching fact (the exports)."""
    q = q.check()
    query = _facts_select(scope).where(*_search_where(q))
    total = _search_count(session, scope, q)
    if total is None:
        total = session.scalar(select(func.count()).select_from(query.subquery())) or 0
    column = _SORT_COLUMNS[q.sort]
    order = [column.desc(), F.code.desc()] if q.desc else [column.asc(), F.code.asc()]
    ordered = query.order_by(*order)
    start = (q.page - 1) * q.per_page
    page = [_fact_of(r) for r in session.execute(ordered.offset(start).limit(q.per_page))]
    out: dict[str, Any] = {"total": total, "page": q.page, "per_page": q.per_page,
                           "pages": max(1, -(-total // q.per_page)),
                           "rows": [f.row() for f in page]}
    if every:
        out["all"] = [_fact_of(r) for r in session.execute(ordered)]
    return out


def raw_bodies(session: Session, record_ids: Sequence[str]) -> dict[str, dict[str, Any]]:
    """The recorded bodies, unmasked, of the given records (the console's drill-down)."""
    out: dict[str, dict[str, Any]] = {}
    wanted = list(record_ids)
    for i in range(0, len(wanted), _CHUNK):
        for rid, canonical in session.execute(
                select(Record.id, Record.canonical).where(Record.id.in_(wanted[i : i + _CHUNK]))):
            out[rid] = body_of(canonical)
    return out


def flat_fields(body: dict[str, Any]) -> list[tuple[str, Any]]:
    """A record body as (field, value) pairs for a table (the page writes nested values for
    people: console.pages `_show`); the platform's history and file lists left out."""
    return [(k, v) for k, v in body.items() if k not in ("history", "files", "event")]
