"""The console's statistics read from the count tables (report_fact_days / _months, kept by
triggers on report_facts) give the same numbers as counting the facts themselves, for every
dimension and period with date ranges that cut months in any way, a lab and a test item
filter and region scopes (and a search's count is the number of rows it finds); and the
tables follow inserts, updates and deletes of facts (SQLite and PostgreSQL)."""

from __future__ import annotations

import random
from collections import defaultdict
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import delete, insert, select, update

from service.domain.accounts import AuditScope, region_prefix
from service.domain.console.stats import (
    PERIOD_BUCKETS,
    SearchQuery,
    StatsQuery,
    _bucket,
    _period_keys,
    search,
    stats,
)
from service.state import ServiceState, build_state
from service.storage.models import (
    Institution,
    ReportFactDay,
    ReportFactItem,
    ReportFactMonth,
    ReportFactRow,
)
from tests.fixtures.db import make_settings

TODAY = date(2026, 3, 10)
LABS = {"91440300MA00000001": "440305", "91440300MA00000002": "440304",
        "91110000MA00000003": "110105"}
ITEM_SETS = ("", "钢筋拉伸", "混凝土抗压强度", "混凝土抗压强度\n钢筋拉伸")


@pytest.fixture
def facts(db_url: str, tmp_path: Path) -> Iterator[tuple[ServiceState, list[dict[str, Any]]]]:
    state = build_state(make_settings(tmp_path, db_url), chain=None)
    rnd = random.Random(14)
    rows = []
    for i in range(400):
        inst = rnd.choice(sorted(LABS))
        day = TODAY - timedelta(days=rnd.randrange(0, 500))
        rows.append({
            "code": f"C{i:05d}", "institution": inst, "region": LABS[inst],
            "report_no": f"N-{i}", "year": day.year, "status": rnd.choice(
                ("issued", "reported", "reported", "revoked")),
            "issued_at": datetime(day.year, day.month, day.day, 4, tzinfo=UTC),
            "issued_on": day, "sealed": False, "revoked": False,
            "conclusion": rnd.choice(("pass", "pass", "fail", None)),
            "project_record_id": "P", "project_name": "工程", "test_items":
                rnd.choice(ITEM_SETS), "warning_count": 0})
    with state.sessions() as s:
        s.execute(insert(Institution), [
            {"uscc": u, "region": r, "name": f"检测机构{u[-1]}", "created_at": datetime.now(UTC)}
            for u, r in LABS.items()])
        s.execute(insert(ReportFactRow), rows[:300])  # one statement: one grouped upsert
        for row in rows[300:]:
            s.execute(insert(ReportFactRow), [row])
        s.execute(insert(ReportFactItem), [
            {"code": r["code"], "test_item": t, "institution": r["institution"],
             "region": r["region"], "issued_on": r["issued_on"], "conclusion": r["conclusion"]}
            for r in rows for t in r["test_items"].split("\n") if t])
        s.commit()
    yield state, rows
    state.engine.dispose()


def _naive(rows: list[dict[str, Any]], scope: AuditScope, q: StatsQuery) -> dict[str, Any]:
    """The statistic counted over the fact rows in Python."""
    prefix = region_prefix(scope.region) if scope.region else ""
    groups: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0])
    totals = [0, 0, 0]
    for r in rows:
        items = [t for t in r["test_items"].split("\n") if t]
        if not r["region"].startswith(prefix) \
                or (q.date_from and r["issued_on"] < q.date_from) \
                or (q.date_to and r["issued_on"] > q.date_to) \
                or (q.institution and r["institution"] != q.institution) \
                or (q.test_item and q.test_item not in items):
            continue
        keys = {"period": [_bucket(r["issued_on"], q.period)],
                "institution": [r["institution"]], "test_item": items or ["（未注明）"],
                "conclusion": [r["conclusion"] or "none"], "status": [r["status"]]}
        for target in [groups[k] for k in keys[q.dimension]] + [totals]:
            target[0] += 1
            target[1] += r["conclusion"] == "pass"
            target[2] += r["conclusion"] == "fail"
    if q.dimension == "period":
        end = q.date_to or TODAY
        shown = _period_keys(q.period, end, PERIOD_BUCKETS[q.period])
        if q.date_from:
            shown = [k for k in shown if k >= _bucket(q.date_from, q.period)]
        groups = {k: groups.get(k, [0, 0, 0]) for k in shown}
    return {"totals": tuple(totals), "rows": {k: tuple(v) for k, v in groups.items()}}


def _ours(state: ServiceState, scope: AuditScope, q: StatsQuery) -> dict[str, Any]:
    with state.sessions() as s:
        out = stats(s, scope, q, today=TODAY)
    t = out["totals"]
    return {"totals": (t["total"], t["pass"], t["fail"]),
            "rows": {r["key"]: (r["total"], r["pass"], r["fail"]) for r in out["rows"]}}


RANGES = [
    (None, None), (date(2025, 7, 1), None), (date(2025, 7, 15), None),
    (None, date(2025, 11, 30)), (None, date(2025, 11, 29)),
    (date(2025, 2, 3), date(2025, 2, 27)), (date(2025, 1, 31), date(2025, 3, 1)),
    (date(2025, 4, 1), date(2026, 1, 31)), (date(2024, 12, 30), date(2026, 2, 2)),
    (date(2026, 3, 9), date(2026, 3, 9)), (date(2026, 2, 1), date(2026, 1, 1)),
]


def test_statistics_from_the_count_tables_equal_counting_the_facts(
        facts: tuple[ServiceState, list[dict[str, Any]]]) -> None:
    state, rows = facts
    checked = 0
    for scope in (AuditScope(None), AuditScope("440300"), AuditScope("440305"),
                  AuditScope("110000")):
        for lo, hi in RANGES:
            for dimension, period in (("period", "day"), ("period", "week"),
                                      ("period", "month"), ("institution", "day"),
                                      ("test_item", "day"), ("conclusion", "day"),
                                      ("status", "day")):
                for inst, item in ((None, None), ("91440300MA00000001", None),
                                   (None, "钢筋拉伸"), (None, "钢筋")):
                    q = StatsQuery(dimension, period, "total", lo, hi, inst, item)
                    if lo and hi and lo > hi:
                        continue
                    assert _ours(state, scope, q) == _naive(rows, scope, q), (scope, q)
                    checked += 1
    assert checked > 1000


def _tables(state: ServiceState) -> dict[str, dict[tuple[Any, ...], int]]:
    with state.sessions() as s:
        return {m.__tablename__: {
            (r.region, r.day, r.institution, r.status, r.conclusion, r.test_items): r.n
            for r in s.scalars(select(m)) if r.n} for m in (ReportFactDay, ReportFactMonth)}


def _grouped(rows: list[dict[str, Any]]) -> dict[str, dict[tuple[Any, ...], int]]:
    out: dict[str, dict[tuple[Any, ...], int]] = {"report_fact_days": defaultdict(int),
                                                  "report_fact_months": defaultdict(int)}
    for r in rows:
        for table, day in (("report_fact_days", r["issued_on"]),
                           ("report_fact_months", r["issued_on"].replace(day=1))):
            out[table][(r["region"], day, r["institution"], r["status"],
                        r["conclusion"] or "", r["test_items"])] += 1
    return {k: dict(v) for k, v in out.items()}


def test_the_count_tables_follow_updates_and_deletes(
        facts: tuple[ServiceState, list[dict[str, Any]]]) -> None:
    state, rows = facts
    assert _tables(state) == _grouped(rows)
    with state.sessions() as s:
        s.execute(update(ReportFactRow).where(ReportFactRow.conclusion.is_(None))
                  .values(conclusion="fail", issued_on=TODAY))
        s.execute(delete(ReportFactRow).where(ReportFactRow.status == "revoked"))
        s.commit()
    for r in rows:
        if r["conclusion"] is None:
            r["conclusion"], r["issued_on"] = "fail", TODAY
    rows = [r for r in rows if r["status"] != "revoked"]
    assert _tables(state) == _grouped(rows)
    q = StatsQuery("conclusion")
    assert _ours(state, AuditScope(None), q) == _naive(rows, AuditScope(None), q)


def test_a_search_count_from_the_count_tables_is_the_number_of_rows_found(
        facts: tuple[ServiceState, list[dict[str, Any]]]) -> None:
    state, _ = facts
    queries = [SearchQuery(), SearchQuery(test_item="钢筋"), SearchQuery(conclusion="fail"),
               SearchQuery(status="revoked", test_item="混凝土抗压强度"),
               SearchQuery(institution="检测机构2"), SearchQuery(institution="91110000ma00000003"),
               SearchQuery(date_from=date(2025, 3, 15), date_to=date(2025, 9, 2),
                           conclusion="pass", test_item="拉伸"),
               SearchQuery(date_to=date(2025, 12, 31)), SearchQuery(test_item="100%"),
               SearchQuery(report_no="N-1")]
    with state.sessions() as s:
        for scope in (AuditScope(None), AuditScope("440300"), AuditScope("110105")):
            for q in queries:
                out = search(s, scope, q, every=True)
                assert out["total"] == len(out["all"]), (scope, q)
        assert search(s, AuditScope(None), SearchQuery())["total"] == 400
