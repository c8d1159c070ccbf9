"""Console speed (issue 14): the overview's data and a search page for a generated region.

One run on PostgreSQL (a database of its own on 127.0.0.1:5432, dropped afterwards): REPORTS
report codes (default 1,000,000) across INSTITUTIONS labs (200) of one city over 3 years,
each with its metadata record (conclusion, issue date), a test record it cites (test item)
and the lab's project, inserted with `generate_series` (the records' canonical bytes hold
the bodies the console reads; nothing is anchored). Then, with the code the console runs:

- overview: `service.domain.console.stats.overview` for an agency of the city;
- search: `search(report_facts(...), SearchQuery(...))`, a page of 20 with a filter;

50 mixed requests (alternating), p95 of each, next to the bare SQL time of the facts query
the two are built on (the same SELECT, rows fetched, no Python work) in the same run.

Targets of the issue: overview <= 300 ms, search <= 200 ms at 1,000,000 reports. The facts
are read per request today (docs/console.md), so the figures grow with the region.

    .venv/bin/python bench/console.py [--reports N] [--institutions N]

`JZ_BENCH_PROFILE=1` prints a cProfile of one overview to standard error.

The last line is exactly `console: overview_ms=N search_ms=N reports=N`.
"""

from __future__ import annotations

import argparse
import os
import secrets
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

PG_ADMIN_URL = os.environ.get("JZ_TEST_PG_ADMIN_URL",
                              "postgresql://postgres@127.0.0.1:5432/postgres")
REQUESTS = 50
TARGET_OVERVIEW_MS = 300.0
TARGET_SEARCH_MS = 200.0
REGION = "440300"
ITEMS = ("混凝土抗压强度", "钢筋拉伸", "砂浆抗压强度", "防水卷材拉力", "土工击实")

_GENERATE = """
INSERT INTO institutions (uscc, region, name, created_at)
SELECT '914403' || lpad(i::text, 2, '0') || 'MA' || lpad(i::text, 8, '0'),
       '4403' || lpad((1 + i % 9)::text, 2, '0'), '检测机构 ' || i, now()
FROM generate_series(1, :inst) AS i;

INSERT INTO records (id, type, institution, created_at, canonical, leaf_hash, code)
SELECT 'P' || lpad(i::text, 25, '0'), 'project',
       '914403' || lpad(i::text, 2, '0') || 'MA' || lpad(i::text, 8, '0'), now(),
       convert_to(json_build_object('type', 'project', 'body',
                  json_build_object('name', '工程项目 ' || i))::text, 'UTF8'),
       md5('P' || i) || md5('P' || i || 'x'), NULL
FROM generate_series(1, :inst) AS i;

INSERT INTO records (id, type, institution, created_at, canonical, leaf_hash, code)
SELECT 'T' || lpad(i::text, 25, '0'), 'test_record',
       '914403' || lpad((1 + i % :inst)::text, 2, '0') || 'MA'
           || lpad((1 + i % :inst)::text, 8, '0'),
       now(),
       convert_to(json_build_object('type', 'test_record', 'body', json_build_object(
           'test_item', (CAST(:items AS text[]))[1 + i % 5]))::text, 'UTF8'),
       md5('T' || i) || md5('T' || i || 'x'), NULL
FROM generate_series(1, :n) AS i;

INSERT INTO records (id, type, institution, created_at, canonical, leaf_hash, code)
SELECT 'R' || lpad(i::text, 25, '0'), 'report',
       '914403' || lpad((1 + i % :inst)::text, 2, '0') || 'MA'
           || lpad((1 + i % :inst)::text, 8, '0'),
       now(),
       convert_to(json_build_object('type', 'report', 'body', json_build_object(
           'event', 'metadata', 'conclusion', CASE WHEN i % 17 = 0 THEN 'fail' ELSE 'pass' END,
           'issued_on', (current_date - (i % 1095))::text))::text, 'UTF8'),
       md5('R' || i) || md5('R' || i || 'x'), 'C' || lpad(i::text, 18, '0')
FROM generate_series(1, :n) AS i;

INSERT INTO record_parents (child_id, parent_id, position)
SELECT 'R' || lpad(i::text, 25, '0'), 'T' || lpad(i::text, 25, '0'), 1
FROM generate_series(1, :n) AS i;

INSERT INTO report_codes (code, institution, year, report_no, project_record_id, issued_at,
                          issue_record_id, report_record_id, status)
SELECT 'C' || lpad(i::text, 18, '0'),
       '914403' || lpad((1 + i % :inst)::text, 2, '0') || 'MA'
           || lpad((1 + i % :inst)::text, 8, '0'),
       extract(year FROM current_date - (i % 1095))::int, 'BG-' || lpad(i::text, 8, '0'),
       'P' || lpad((1 + i % :inst)::text, 25, '0'), now() - ((i % 1095) || ' days')::interval,
       'R' || lpad(i::text, 25, '0'), 'R' || lpad(i::text, 25, '0'), 'reported'
FROM generate_series(1, :n) AS i;
ANALYZE;
"""


def _p95(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[max(0, int(round(0.95 * len(ordered))) - 1)]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reports", type=int, default=1_000_000)
    ap.add_argument("--institutions", type=int, default=200)
    args = ap.parse_args()

    import psycopg
    from sqlalchemy import text

    from service.domain.accounts import AuditScope
    from service.domain.console.stats import SearchQuery, overview, report_facts, search
    from service.settings import Settings
    from service.state import build_state

    name = "jz_bench_console_" + secrets.token_hex(4)
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    url = PG_ADMIN_URL.rsplit("/", 1)[0] + "/" + name
    tmp = Path(tempfile.mkdtemp(prefix="jz-bench-console-"))
    state = None
    try:
        state = build_state(Settings.model_validate(
            {"data_dir": tmp / "var", "database": {"url": url}}), chain=None)
        started = time.perf_counter()
        with state.engine.begin() as conn:
            for statement in _GENERATE.split(";\n"):
                if statement.strip():
                    conn.execute(text(statement), {"inst": args.institutions,
                                                   "n": args.reports, "items": list(ITEMS)})
        print(f"generated {args.reports} reports of {args.institutions} labs in "
              f"{time.perf_counter() - started:.1f} s", file=sys.stderr)
        scope = AuditScope(REGION)
        query = SearchQuery(test_item="钢筋拉伸", conclusion="fail", sort="issued_on")
        overview_ms: list[float] = []
        search_ms: list[float] = []
        sql_ms: list[float] = []
        facts_sql = text(
            "SELECT rc.code, rc.institution, i.name, i.region, rc.report_no, rc.year, "
            "rc.status, rc.issued_at, rc.sealed_at, rc.report_record_id, "
            "rc.project_record_id, r.canonical FROM report_codes rc "
            "JOIN institutions i ON i.uscc = rc.institution "
            "LEFT JOIN records r ON r.id = rc.report_record_id WHERE i.region LIKE '4403%'")
        for n in range(REQUESTS):
            with state.sessions() as s:
                t0 = time.perf_counter()
                if n % 2 == 0:
                    overview(s, state.settings, scope)
                    overview_ms.append((time.perf_counter() - t0) * 1000)
                else:
                    search(report_facts(s, scope), query)
                    search_ms.append((time.perf_counter() - t0) * 1000)
            if n < 6:
                with state.engine.connect() as conn:
                    t0 = time.perf_counter()
                    conn.execute(facts_sql).fetchall()
                    sql_ms.append((time.perf_counter() - t0) * 1000)
        if os.environ.get("JZ_BENCH_PROFILE"):
            import cProfile
            import pstats

            with state.sessions() as s, cProfile.Profile() as prof:
                overview(s, state.settings, scope)
            pstats.Stats(prof, stream=sys.stderr).sort_stats("cumulative").print_stats(25)
        o95, s95 = _p95(overview_ms), _p95(search_ms)
        print(f"{'what':<28}{'p95 ms':>10}{'median ms':>12}{'target ms':>11}")
        print(f"{'overview (data)':<28}{o95:>10.1f}{statistics.median(overview_ms):>12.1f}"
              f"{TARGET_OVERVIEW_MS:>11.0f}")
        print(f"{'search page':<28}{s95:>10.1f}{statistics.median(search_ms):>12.1f}"
              f"{TARGET_SEARCH_MS:>11.0f}")
        print(f"{'bare SQL of the facts':<28}{_p95(sql_ms):>10.1f}"
              f"{statistics.median(sql_ms):>12.1f}{'':>11}")
        print(f"console: overview_ms={round(o95)} search_ms={round(s95)} reports={args.reports}")
        return 0
    finally:
        if state is not None:
            state.engine.dispose()
        with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


if __name__ == "__main__":
    sys.exit(main())
