"""Console speed (issue 14): the overview's data and a search page for a generated region.

One run on PostgreSQL (a database of its own on 127.0.0.1:5432, dropped afterwards): REPORTS
report codes (default 1,000,000) across INSTITUTIONS labs (200) of one city over 3 years
(each lab numbering its reports in order of issue),
each with its metadata record (conclusion, issue date), a test record it cites (test item)
and the lab's project, inserted with `generate_series` (the records' canonical bytes hold
the bodies the console reads; nothing is anchored). Then, with the code the console runs:

- overview: `service.domain.console.stats.overview` for an agency of the city;
- search: `search(report_facts(...), SearchQuery(...))`, a page of 20 with a filter;

50 mixed requests (alternating), p95 of each, next to the bare SQL time of the facts query
the two are built on (the same SELECT, rows fetched, no Python work) in the same run.

Targets of the issue: overview <= 300 ms, search <= 200 ms at 1,000,000 reports. The
overview adds up the count tables (report_fact_days / _months, numbering summaries; docs/
console.md), not the facts.

    .venv/bin/python bench/console.py [--reports N] [--institutions N] [--keep NAME]

`--keep NAME` generates into database NAME once and reuses it (upgraded to the current
migrations) on the next runs; it is not dropped.

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
from collections import defaultdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

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
           'issued_on', (current_date - AGO)::text))::text, 'UTF8'),
       md5('R' || i) || md5('R' || i || 'x'), 'C' || lpad(i::text, 18, '0')
FROM generate_series(1, :n) AS i;

INSERT INTO record_parents (child_id, parent_id, position)
SELECT 'R' || lpad(i::text, 25, '0'), 'T' || lpad(i::text, 25, '0'), 1
FROM generate_series(1, :n) AS i;

INSERT INTO report_codes (code, institution, year, report_no, project_record_id, issued_at,
                          issue_record_id, report_record_id, status, sealed_at)
SELECT 'C' || lpad(i::text, 18, '0'),
       '914403' || lpad((1 + i % :inst)::text, 2, '0') || 'MA'
           || lpad((1 + i % :inst)::text, 8, '0'),
       extract(year FROM current_date - AGO)::int, 'BG-' || lpad((i / :inst + 1)::text, 8, '0'),
       'P' || lpad((1 + i % :inst)::text, 25, '0'), now() - (AGO || ' days')::interval,
       'R' || lpad(i::text, 25, '0'), 'R' || lpad(i::text, 25, '0'), 'reported',
       CASE WHEN AGO > 1 THEN now() - (AGO || ' days')::interval + interval '1 hour' END
FROM generate_series(1, :n) AS i;

INSERT INTO report_facts (code, institution, region, report_no, year, status, issued_at,
                          issued_on, sealed, revoked, conclusion, project_record_id,
                          project_name, test_items, warning_count)
SELECT 'C' || lpad(i::text, 18, '0'),
       '914403' || lpad((1 + i % :inst)::text, 2, '0') || 'MA'
           || lpad((1 + i % :inst)::text, 8, '0'),
       '4403' || lpad((1 + (1 + i % :inst) % 9)::text, 2, '0'),
       'BG-' || lpad((i / :inst + 1)::text, 8, '0'),
       extract(year FROM current_date - AGO)::int, 'reported',
       now() - (AGO || ' days')::interval, current_date - AGO,
       AGO > 1, false,
       CASE WHEN i % 17 = 0 THEN 'fail' ELSE 'pass' END,
       'P' || lpad((1 + i % :inst)::text, 25, '0'), '工程项目 ' || (1 + i % :inst),
       (CAST(:items AS text[]))[1 + i % 5], 0
FROM generate_series(1, :n) AS i;

INSERT INTO report_fact_items (code, test_item, institution, region, issued_on, conclusion)
SELECT code, test_items, institution, region, issued_on, conclusion FROM report_facts;
""".replace("AGO", "(1094 - (i / :inst) * 1095 / (:n / :inst + 1))")  # days ago: in order


#: Reference: the overview's biggest statement before the count tables (migration 0021),
#: counts by day over the whole region's facts, as bare SQL.
_REGION = "region >= '4403' AND region < '4404'"
REFERENCE_SQL = ("SELECT issued_on, count(*), sum(CASE WHEN conclusion = 'pass' THEN 1 ELSE 0"
                 " END) FROM report_facts WHERE " + _REGION + " GROUP BY issued_on")


def _p95(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[max(0, int(round(0.95 * len(ordered))) - 1)]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reports", type=int, default=1_000_000)
    ap.add_argument("--institutions", type=int, default=200)
    ap.add_argument("--before", type=int, default=0,
                    help="also time N requests the way the console read facts before the "
                         "facts table (alternating overview and search; slow at scale)")
    ap.add_argument("--keep", metavar="NAME", default="",
                    help="use database NAME and keep it: generated on the first run, reused "
                         "(upgraded to the current migrations) by the next ones")
    ap.add_argument("--explain", action="store_true",
                    help="print EXPLAIN (ANALYZE, BUFFERS) of every statement of one overview "
                         "and one search to standard error")
    args = ap.parse_args()

    import psycopg
    from sqlalchemy import event, text

    from service.clock import china_year
    from service.domain.accounts import AuditScope
    from service.domain.console.stats import SearchQuery, overview, search
    from service.domain.reports.numbering import numbering_audit
    from service.settings import Settings
    from service.state import build_state
    from service.storage.report_facts import compute_facts
    from service.storage.rollups import rebuild_numbering, rebuild_rollups

    def before_facts(s: Any) -> list[dict[str, Any]]:
        """The facts as the console read them before the facts table: every code of the
        region joined to its records and parsed in Python, on every request."""
        codes = list(s.scalars(text(
            "SELECT rc.code FROM report_codes rc JOIN institutions i ON i.uscc = rc.institution"
            " WHERE i.region LIKE '4403%'")))
        return compute_facts(s, codes)

    def before_overview(s: Any) -> None:
        facts = before_facts(s)
        groups: dict[Any, list[int]] = defaultdict(lambda: [0, 0])
        for f in facts:
            for key in (f["issued_on"], f["institution"], *f["test_item_list"]):
                groups[key][0] += 1
                groups[key][1] += f["conclusion"] == "pass"
        year = china_year(datetime.now(UTC))
        for inst in sorted({f["institution"] for f in facts if f["year"] == year}):
            numbering_audit(s, institution=inst, year=year)

    def before_search(s: Any) -> None:
        rows = [f for f in before_facts(s) if "钢筋拉伸" in f["test_item_list"]
                and f["conclusion"] == "fail"]
        rows.sort(key=lambda f: (f["issued_on"], f["code"]), reverse=True)
        assert rows[:20] is not None

    name = args.keep or "jz_bench_console_" + secrets.token_hex(4)
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        reuse = bool(args.keep) and conn.execute(
            "SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone() is not None
        if not reuse:
            conn.execute(f'CREATE DATABASE "{name}"')
    url = PG_ADMIN_URL.rsplit("/", 1)[0] + "/" + name
    tmp = Path(tempfile.mkdtemp(prefix="jz-bench-console-"))
    state = None
    try:
        state = build_state(Settings.model_validate(
            {"data_dir": tmp / "var", "database": {"url": url}}), chain=None)
        started = time.perf_counter()
        if reuse:
            with state.engine.connect() as conn:
                have = conn.execute(text("SELECT count(*) FROM report_facts")).scalar_one()
            print(f"reused database {name}: {have} reports", file=sys.stderr)
        else:
            with state.engine.begin() as conn:
                # A bulk load: the summaries' triggers off (superuser), rebuilt once below.
                conn.execute(text("SET LOCAL session_replication_role = replica"))
                for statement in _GENERATE.split(";\n"):
                    if statement.strip():
                        conn.execute(text(statement), {"inst": args.institutions,
                                                       "n": args.reports,
                                                       "items": list(ITEMS)})
            loaded = time.perf_counter()
            with state.sessions() as s:
                rebuild_rollups(s)
                rebuild_numbering(s)
                s.commit()
            summarised = time.perf_counter()
            with state.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as c:
                c.execute(text("VACUUM ANALYZE"))
            print(f"generated {args.reports} reports of {args.institutions} labs in "
                  f"{loaded - started:.1f} s; summaries rebuilt in {summarised - loaded:.1f} s;"
                  f" VACUUM ANALYZE {time.perf_counter() - summarised:.1f} s", file=sys.stderr)
        scope = AuditScope(REGION)
        query = SearchQuery(test_item="钢筋拉伸", conclusion="fail", sort="issued_on")
        overview_ms: list[float] = []
        search_ms: list[float] = []
        for n in range(REQUESTS):
            with state.sessions() as s:
                t0 = time.perf_counter()
                if n % 2 == 0:
                    overview(s, state.settings, scope)
                    overview_ms.append((time.perf_counter() - t0) * 1000)
                else:
                    search(s, scope, query)
                    search_ms.append((time.perf_counter() - t0) * 1000)
        # The same requests' statements, captured as sent, then replayed as bare SQL on a
        # raw psycopg cursor (rows fetched, no Python work): the database's share.
        captured: dict[str, list[tuple[str, Any]]] = {"overview": [], "search": []}
        for key in captured:
            def keep(_c: Any, _cur: Any, statement: str, params: Any, _ctx: Any, _m: bool,
                     key: str = key) -> None:
                captured[key].append((statement, params))
            event.listen(state.engine, "before_cursor_execute", keep)
            with state.sessions() as s:
                if key == "overview":
                    overview(s, state.settings, scope)
                else:
                    search(s, scope, query)
            event.remove(state.engine, "before_cursor_execute", keep)
        bare: dict[str, list[float]] = {"overview": [], "search": [], "reference": []}
        raw = state.engine.raw_connection()
        try:
            cur = raw.cursor()
            for _ in range(REQUESTS // 2):
                for key, statements in captured.items():
                    t0 = time.perf_counter()
                    for statement, params in statements:
                        cur.execute(statement, params)
                        if cur.description is not None:
                            cur.fetchall()
                    bare[key].append((time.perf_counter() - t0) * 1000)
                    raw.rollback()
            for _ in range(6):
                t0 = time.perf_counter()
                cur.execute(REFERENCE_SQL)
                cur.fetchall()
                bare["reference"].append((time.perf_counter() - t0) * 1000)
            if args.explain:
                for key, statements in captured.items():
                    for statement, params in statements:
                        cur.execute("EXPLAIN (ANALYZE, BUFFERS) " + statement, params)
                        plan = "\n".join(r[0] for r in cur.fetchall())
                        print(f"--- {key}:\n{statement}\n{plan}\n", file=sys.stderr)
            raw.rollback()
        finally:
            raw.close()
        before: dict[str, list[float]] = {"overview": [], "search": []}
        for n in range(args.before):
            with state.sessions() as s:
                t0 = time.perf_counter()
                (before_overview if n % 2 == 0 else before_search)(s)
                before["overview" if n % 2 == 0 else "search"].append(
                    (time.perf_counter() - t0) * 1000)
        if os.environ.get("JZ_BENCH_PROFILE"):
            import cProfile
            import pstats

            with state.sessions() as s, cProfile.Profile() as prof:
                overview(s, state.settings, scope)
            pstats.Stats(prof, stream=sys.stderr).sort_stats("cumulative").print_stats(25)
        o95, s95 = _p95(overview_ms), _p95(search_ms)
        print(f"{'what':<34}{'p95 ms':>10}{'median ms':>12}{'target ms':>11}")
        print(f"{'overview (data)':<34}{o95:>10.1f}{statistics.median(overview_ms):>12.1f}"
              f"{TARGET_OVERVIEW_MS:>11.0f}")
        print(f"{'search page':<34}{s95:>10.1f}{statistics.median(search_ms):>12.1f}"
              f"{TARGET_SEARCH_MS:>11.0f}")
        labels = {"overview": f"bare SQL: overview ({len(captured['overview'])} stmts)",
                  "search": f"bare SQL: search ({len(captured['search'])} stmts)",
                  "reference": "ref: facts GROUP BY day (old)"}
        for key, values in bare.items():
            print(f"{labels[key]:<34}{_p95(values):>10.1f}"
                  f"{statistics.median(values):>12.1f}{'':>11}")
        now_ms = {"overview": overview_ms, "search": search_ms}
        for key, values in before.items():
            if values:
                ratio = statistics.median(values) / statistics.median(now_ms[key])
                print(f"{'before (Python facts): ' + key:<34}{max(values):>10.1f}"
                      f"{statistics.median(values):>12.1f}{'':>11}  x{ratio:.1f} slower")
        print(f"console: overview_ms={round(o95)} search_ms={round(s95)} reports={args.reports}")
        return 0
    finally:
        if state is not None:
            state.engine.dispose()
        if not args.keep:
            with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


if __name__ == "__main__":
    sys.exit(main())
