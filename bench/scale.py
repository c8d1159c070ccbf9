"""Cost curves: how each operation's cost grows with the data, on PostgreSQL (issue 17).

    .venv/bin/python bench/scale.py [--sizes 100000,1000000,10000000] [--reps 15]

One fresh PostgreSQL database (dropped afterwards) and one Hardhat node. First one real
report is built through the service (tests/public_kit.py's chain, 4 more test records:
15 records, code issued, metadata recorded, PDF sealed) and anchored by the real worker.
Then, for each size in turn, the database is filled up to that many evidence records by
bulk SQL (INSERT ... SELECT generate_series, chunks of CHUNK_REPORTS reports, not through
the API), in realistic proportions:

- 10 records per report (commission, sample, seal, witness, receipt, 3 test records,
  code issuance, metadata; each the parent of the next), one report code per report
  (`reported`, sealed), one report warning per 20 reports;
- institutions grow with the data, each with REPORTS_PER_INSTITUTION_YEAR reports a year
  over YEARS years (a nation has more laboratories, not busier ones);
- every record anchored: its outbox row (seq FILLER_OUTBOX_SEQ0 + n) and batches of
  BATCH_LEAVES leaves, each the outbox range of its leaves.

After ANALYZE, each operation is timed in this process through the app (Starlette's
TestClient, so routing, signatures and SQL are all there; no HTTP server), `--reps`
times; the table and the growth factors use the fastest run (`--stat min`, the cost
without other processes' interference, steadier on a shared machine) or the median
(`--stat median`):

  issue_code      signed POST /api/v1/report-codes (a new report number)
  record_post     signed POST /api/v1/projects
  public_cold     the public JSON of the real report, every in-process cache cleared
  public_cached   the same, from the view cache (ReportViews.cached_json)
  proof           signed GET /api/v1/records/{id}/proof of the real report's test record
  bundle          signed GET /api/v1/audit/reports/{code}/bundle (15 records), as an auditor
  numbering       signed GET /api/v1/audit/numbering of one filler institution-year
                  (REPORTS_PER_INSTITUTION_YEAR codes at every size)
  warnings        signed GET /api/v1/audit/warnings?limit=50 (the console's overview list)

and the database's size on disk (pg_database_size). Prints a table (size x operation, ms)
and the growth factor per decade (time at 10n / time at n); `worst_growth` is the largest
of those over every operation and decade. An O(log n) or O(1) operation stays near 1.0
per decade; O(n) shows as ~10. Absolute figures depend on the machine; the growth factors
do much less. The last line is exactly `scale: records=N worst_growth=X op=NAME`.

A smoke run: `--sizes 20000,200000 --reps 5` (well under a minute of loading).
"""

from __future__ import annotations

import argparse
import itertools
import math
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

RECORDS_PER_REPORT = 10
REPORTS_PER_INSTITUTION_YEAR = 100
YEARS = 5
FIRST_YEAR = 2022
BATCH_LEAVES = 20_000
CHUNK_REPORTS = 50_000
WARNING_EVERY = 20
FILLER_BATCH_SEQ0 = 1_000_000
#: First outbox seq of the filler leaves (the real report's leaves are far below).
FILLER_OUTBOX_SEQ0 = 1_000_000_000
#: Report numbers and project names of the timed writes, unique over every size.
COUNTER = itertools.count(1)
TYPES = ("commission", "sample", "seal", "witness", "receipt", "test_record", "test_record",
         "test_record", "report_issue", "report_metadata")
#: ~ what a real record body carries (items, standard, device, raw data, people).
FILLER_NOTE = (
    "混凝土抗压强度 GB/T 50081-2019 压力试验机 YJ-2000-07 loads 812.4/798.1/825.0 kN, "
    "area 22500 mm2, strength 36.1 MPa; 标养 28 d; tester 王五; witness 鹏城监理有限公司"
)

RECORDS_SQL = """
INSERT INTO records (id, type, institution, created_at, canonical, leaf_hash, code)
SELECT rid, (%(types)s::text[])[k + 1], inst, ts,
       convert_to('{"body":{"n":' || r || ',"note":"' || %(note)s || '"},"created_at":"'
                  || to_char(ts, 'YYYY-MM-DD"T"HH24:MI:SS"Z"') || '","files":[],"id":"' || rid
                  || '","institution":"' || inst || '","parents":['
                  || CASE WHEN k = 0 THEN '' ELSE '"' || prev || '"' END
                  || '],"type":"' || (%(types)s::text[])[k + 1] || '","v":1}', 'UTF8'),
       encode(sha256(convert_to(rid, 'UTF8')), 'hex'),
       CASE WHEN k >= 8 THEN 'FC' || lpad(r::text, 18, '0') END
FROM (
  SELECT r, k,
         'F' || lpad((r * 10 + k)::text, 25, '0') AS rid,
         'F' || lpad((r * 10 + k - 1)::text, 25, '0') AS prev,
         (%(insts)s::text[])[1 + r / %(per_inst)s] AS inst,
         timestamptz '2022-01-01 00:00:00+00'
           + ((r %% %(per_inst)s) / %(per_year)s) * interval '365 days'
           + (r %% %(per_year)s) * interval '3 days' + k * interval '1 hour' AS ts
  FROM generate_series(%(a)s, %(b)s - 1) AS r, generate_series(0, 9) AS k
) s
"""
PARENTS_SQL = """
INSERT INTO record_parents (child_id, parent_id, position)
SELECT 'F' || lpad((r * 10 + k)::text, 25, '0'), 'F' || lpad((r * 10 + k - 1)::text, 25, '0'), 0
FROM generate_series(%(a)s, %(b)s - 1) AS r, generate_series(1, 9) AS k
"""
CODES_SQL = """
INSERT INTO report_codes (code, institution, year, report_no, project_record_id, issued_at,
                          issue_record_id, report_record_id, pdf_record_id, sealed_at, status)
SELECT 'FC' || lpad(r::text, 18, '0'), (%(insts)s::text[])[1 + r / %(per_inst)s],
       y, 'BG-' || y || '-' || lpad((1 + r %% %(per_year)s)::text, 6, '0'),
       'F' || lpad((r * 10)::text, 25, '0'), ts,
       'F' || lpad((r * 10 + 8)::text, 25, '0'), 'F' || lpad((r * 10 + 9)::text, 25, '0'),
       NULL, ts + interval '1 day', 'reported'
FROM (
  SELECT r, %(first_year)s + (r %% %(per_inst)s) / %(per_year)s AS y,
         timestamptz '2022-01-01 00:00:00+00'
           + ((r %% %(per_inst)s) / %(per_year)s) * interval '365 days'
           + (r %% %(per_year)s) * interval '3 days' AS ts
  FROM generate_series(%(a)s, %(b)s - 1) AS r
) s
"""
WARNINGS_SQL = """
INSERT INTO report_warnings (report_code, institution, region, code, record_id, detail,
                             report_record_id, created_at)
SELECT 'FC' || lpad(r::text, 18, '0'), (%(insts)s::text[])[1 + r / %(per_inst)s], '440300',
       'late_upload', 'F' || lpad((r * 10 + 5)::text, 25, '0'), '测试数据晚于检测结束上传',
       'F' || lpad((r * 10 + 9)::text, 25, '0'),
       timestamptz '2022-01-01 00:00:00+00' + (r %% 1000) * interval '1 day'
FROM generate_series(%(a)s, %(b)s - 1) AS r WHERE r %% %(every)s = 0
"""
BATCHES_SQL = """
INSERT INTO batches (seq, root, size, status, created_at, oldest_enqueued_at, chain_id,
                     registry_address, tx_hash, block_number, block_timestamp, gas_used,
                     anchored_at, first_seq, last_seq)
SELECT %(seq0)s + b, encode(sha256(convert_to('filler root ' || b, 'UTF8')), 'hex'),
       %(leaves)s, 'anchored', 0, 0, %(chain_id)s, %(registry)s,
       '0x' || encode(sha256(convert_to('filler tx ' || b, 'UTF8')), 'hex'), b, 0, 60000, 0,
       %(oseq0)s + b * %(leaves)s, %(oseq0)s + (b + 1) * %(leaves)s - 1
FROM generate_series(%(a)s, %(b)s - 1) AS b
"""
LEAVES_SQL = """
INSERT INTO outbox (seq, record_id, leaf_hash, enqueued_at)
SELECT %(oseq0)s + n, rid, encode(sha256(convert_to(rid, 'UTF8')), 'hex'), 0
FROM (SELECT n, 'F' || lpad(n::text, 25, '0') AS rid
      FROM generate_series(%(a)s, %(b)s - 1) AS n) s
"""
#: The outbox sequence past every filler leaf and batch range (new leaves go above them).
SEQUENCE_SQL = """
SELECT setval(pg_get_serial_sequence('outbox', 'seq'),
              GREATEST((SELECT max(seq) FROM outbox), (SELECT max(last_seq) FROM batches)))
"""


class Filler:
    """Adds filler reports [done, target) by bulk SQL; keeps the institutions' USCCs."""

    def __init__(self, url: str, chain_id: int, registry: str) -> None:
        self.url = url
        self.chain_id = chain_id
        self.registry = registry
        self.reports = 0
        self.insts: list[str] = []
        #: how far the filler leaves of later sizes are moved up the outbox, past the leaves
        #: the timed writes of the earlier sizes added above the filler
        self.shift = 0
        #: leaves per filler batch: divides every size, so each size ends on a whole batch
        self.batch_leaves = BATCH_LEAVES

    def _conn(self) -> Any:
        import psycopg

        return psycopg.connect(self.url.replace("postgresql+psycopg://", "postgresql://"))

    def grow(self, reports: int) -> float:
        from tests.labkit import make_uscc

        t0 = time.perf_counter()
        per_inst = REPORTS_PER_INSTITUTION_YEAR * YEARS
        need = -(-reports // per_inst)
        with self._conn() as conn:
            new = [make_uscc(900_000 + i) for i in range(len(self.insts), need)]
            with conn.cursor() as cur:
                cur.executemany(
                    "INSERT INTO institutions (uscc, region, name, created_at) "
                    "VALUES (%s, '440300', %s, now())",
                    [(u, f"Filler Lab {u[-6:]}") for u in new],
                )
            conn.commit()
            self.insts += new
            a = self.reports
            n_start = a * RECORDS_PER_REPORT
            top = conn.execute(
                "SELECT GREATEST((SELECT max(seq) FROM outbox), (SELECT max(last_seq) FROM "
                "batches))").fetchone()[0] or 0
            self.shift = max(self.shift, top + 1 - (FILLER_OUTBOX_SEQ0 + n_start))
            oseq0 = FILLER_OUTBOX_SEQ0 + self.shift
            leaves = self.batch_leaves
            while a < reports:
                b = min(reports, a + CHUNK_REPORTS)
                p = {"a": a, "b": b, "insts": self.insts, "per_inst": per_inst,
                     "per_year": REPORTS_PER_INSTITUTION_YEAR, "types": list(TYPES),
                     "note": FILLER_NOTE, "first_year": FIRST_YEAR, "every": WARNING_EVERY}
                conn.execute(RECORDS_SQL, p)
                conn.execute(PARENTS_SQL, p)
                conn.execute(CODES_SQL, p)
                conn.execute(WARNINGS_SQL, p)
                n0, n1 = a * RECORDS_PER_REPORT, b * RECORDS_PER_REPORT
                first_batch = -(-n0 // leaves)  # batches not yet created
                last_batch = -(-n1 // leaves)
                conn.execute(BATCHES_SQL, {
                    "a": first_batch, "b": last_batch, "seq0": FILLER_BATCH_SEQ0,
                    "leaves": leaves, "chain_id": self.chain_id, "registry": self.registry,
                    "oseq0": oseq0,
                })
                conn.execute(LEAVES_SQL, {"a": n0, "b": n1, "oseq0": oseq0})
                conn.execute(SEQUENCE_SQL)
                conn.commit()
                a = b
            self.reports = reports
        with self._conn() as conn:
            conn.autocommit = True
            conn.execute("ANALYZE")
        return time.perf_counter() - t0


def _time_ms(fn: Callable[[], object], reps: int, stat: str) -> float:
    fn()  # warm (first call after a fill pays for cold buffers once)
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1000)
    return min(times) if stat == "min" else statistics.median(times)


def build_real(state: Any, app: Any) -> dict[str, Any]:
    """A 15-record report through the service, anchored by the worker; its ids and clients."""
    from service.anchoring.worker import AnchorWorker, anchor_until_drained
    from tests.labkit import add_auditor, add_lab, client_for
    from tests.public_kit import _append, build_chain, make_pdf

    lab = add_lab(state, 1)
    assert lab.institution is not None
    client = client_for(app, lab)
    ids = build_chain(state, lab.institution, "S1")
    extra = [
        _append(state, lab.institution, "test_record", {
            "test_item": f"混凝土抗压强度 {i}", "standard": "GB/T 50081-2019",
            "device": {"id": "YJ-001", "name": "压力试验机"}, "acquisition": "auto",
            "started_at": "2026-11-22T07:00:00Z", "finished_at": "2026-11-22T07:10:00Z",
            "raw_data": {"peak_kN": 731.2 + i}, "tester": "赵六",
        }, [ids["sample"], ids["receipt"]])
        for i in range(4)
    ]
    r = client.issue_code("BG-2026-S0001", ids["project"])
    assert r.status_code == 201, r.text
    code = r.json()["code"]
    r = client.put(f"/api/v1/reports/{code}", json_body={
        "conclusion": "pass", "issued_on": "2026-11-22", "approver": "王五",
        "parents": [ids["sample"], ids["test_record"], *extra],
    })
    assert r.status_code in (200, 201), r.text
    r = client.put(f"/api/v1/reports/{code}/pdf", content=make_pdf(2, "检测报告 S1"),
                   content_type="application/pdf")
    assert r.status_code == 200, r.text
    assert state.chain is not None
    anchor_until_drained(AnchorWorker(state.settings, state.engine, state.chain))
    if state.verdict_primer.built:
        state.verdict_primer.get().shutdown(wait=True)
    auditor = add_auditor(state)
    return {"code": code, "lab": client, "auditor": client_for(app, auditor),
            "project": ids["project"], "test_record": ids["test_record"]}


def operations(state: Any, real: dict[str, Any], filler: Filler) -> dict[str, Callable[[], Any]]:
    from service.api.public import report_json
    from tests.recordkit import project_body

    views = state.views.get()
    code, lab, auditor = real["code"], real["lab"], real["auditor"]
    counter = COUNTER

    def ok(r: Any, *statuses: int) -> None:
        assert r.status_code in (statuses or (200,)), (r.status_code, r.text[:300])

    def issue() -> None:
        ok(lab.issue_code(f"BG-2026-X{next(counter):07d}", real["project"]), 201)

    def record() -> None:
        ok(lab.post("/api/v1/projects", json_body=project_body(name=f"项目 {next(counter)}")), 201)

    def cold() -> None:
        views.clear()
        body = report_json(state, code)
        assert body is not None and b'"genuine"' in (body if isinstance(body, bytes)
                                                      else body.encode())

    def cached() -> None:
        assert views.cached_json(code) is not None

    def proof() -> None:
        ok(lab.get(f"/api/v1/records/{real['test_record']}/proof"))

    def bundle() -> None:
        r = auditor.get(f"/api/v1/audit/reports/{code}/bundle")
        ok(r)
        assert r.content[:2] == b"PK"

    def numbering() -> None:
        r = auditor.get("/api/v1/audit/numbering",
                        query={"institution": filler.insts[0], "year": FIRST_YEAR + YEARS - 1})
        ok(r)
        assert r.json()["counts"]["issued"] == REPORTS_PER_INSTITUTION_YEAR

    def warnings() -> None:
        ok(auditor.get("/api/v1/audit/warnings", query={"limit": 50}))

    return {"issue_code": issue, "record_post": record, "public_cold": cold,
            "public_cached": cached, "proof": proof, "bundle": bundle,
            "numbering": numbering, "warnings": warnings}


def db_size(url: str) -> int:
    import psycopg

    with psycopg.connect(url.replace("postgresql+psycopg://", "postgresql://")) as conn:
        row = conn.execute("SELECT pg_database_size(current_database())").fetchone()
    return int(row[0]) if row else 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="100000,1000000,10000000",
                    help="evidence records at each measuring point, ascending")
    ap.add_argument("--reps", type=int, default=15, help="timed runs per operation and size")
    ap.add_argument("--stat", choices=("min", "median"), default="min")
    args = ap.parse_args()
    sizes = [int(x) for x in args.sizes.split(",")]
    assert sizes == sorted(sizes) and sizes[0] >= 1000

    from codes import fresh_database

    from service.anchoring.chaininfo import ChainInfo
    from service.anchoring.devchain import DEPLOYER, SERVICE_ACCOUNT, deploy_registry, start_hardhat
    from service.settings import Settings
    from service.state import build_state
    from tests.labkit import make_app

    t_start = time.perf_counter()
    results: dict[int, dict[str, float]] = {}
    sizes_bytes: dict[int, int] = {}
    loads: dict[int, float] = {}
    node = start_hardhat()
    try:
        assert node.chain_id is not None
        registry = deploy_registry(node.rpc_url, DEPLOYER.private_key, SERVICE_ACCOUNT.address)
        with fresh_database() as url, tempfile.TemporaryDirectory(prefix="jz-scale-") as tmp:
            os.environ.update({
                "JZ_DATA_DIR": str(Path(tmp) / "var"),
                "JZ_DATABASE__URL": url,
                "JZ_CHAIN__RPC_URL": node.rpc_url,
                "JZ_CHAIN__CHAIN_ID": str(node.chain_id),
                "JZ_CHAIN__REGISTRY": registry,
                "JZ_CHAIN__PRIVATE_KEY": SERVICE_ACCOUNT.private_key,
                "JZ_PUBLIC__RATE_LIMIT_PER_MINUTE": "0",
                "JZ_LOG_LEVEL": "WARNING",
            })
            chain = ChainInfo(node.rpc_url, node.chain_id, registry)
            state = build_state(Settings(), chain)
            app = make_app(state)
            real = build_real(state, app)
            filler = Filler(url, node.chain_id, registry)
            filler.batch_leaves = math.gcd(BATCH_LEAVES, *sizes)
            for size in sizes:
                loads[size] = filler.grow(size // RECORDS_PER_REPORT)
                ops = operations(state, real, filler)
                results[size] = {}
                for name, fn in ops.items():
                    slow = name in ("bundle", "public_cold")
                    reps = max(3, args.reps // 3) if slow else args.reps
                    results[size][name] = _time_ms(fn, reps, args.stat)
                sizes_bytes[size] = db_size(url)
                print(f"  {size:>12,} records: loaded in {loads[size]:.0f} s; "
                      + ", ".join(f"{k} {v:.2f}" for k, v in results[size].items()),
                      flush=True)
            state.close()
            state.engine.dispose()
    finally:
        node.stop()

    names = list(results[sizes[0]])
    width = max(len(n) for n in names + ["db size (MB)"])
    print(f"\ncost per operation (ms, {args.stat} of the runs); {RECORDS_PER_REPORT} records "
          f"per report, {REPORTS_PER_INSTITUTION_YEAR} reports per institution-year")
    head = f"{'operation':<{width}}" + "".join(f"{s:>14,}" for s in sizes)
    growth_cols = [f"x/decade {i + 1}" for i in range(len(sizes) - 1)]
    print(head + "".join(f"{g:>14}" for g in growth_cols))
    worst, worst_op = 0.0, ""
    for name in names:
        vals = [results[s][name] for s in sizes]
        growth = []
        for i in range(len(sizes) - 1):
            decades = max(1e-9, math.log10(sizes[i + 1] / sizes[i]))
            g = (vals[i + 1] / vals[i]) ** (1 / decades) if vals[i] > 0 else 0.0
            growth.append(g)
            if g > worst:
                worst, worst_op = g, name
        print(f"{name:<{width}}" + "".join(f"{v:>14.2f}" for v in vals)
              + "".join(f"{g:>14.2f}" for g in growth))
    mb = [sizes_bytes[s] / 1e6 for s in sizes]
    print(f"{'db size (MB)':<{width}}" + "".join(f"{v:>14.0f}" for v in mb)
          + "".join(f"{mb[i + 1] / mb[i]:>14.2f}" for i in range(len(sizes) - 1)))
    per_record = (sizes_bytes[sizes[-1]] - sizes_bytes[sizes[0]]) / (sizes[-1] - sizes[0])
    print(f"{'bytes per record':<{width}}{per_record:>14.0f}  (marginal, last size vs first)")
    print(f"{'bulk load (s)':<{width}}" + "".join(f"{loads[s]:>14.0f}" for s in sizes))
    print(f"total {time.perf_counter() - t_start:.0f} s; growth factors normalised per decade "
          f"(goal <= 1.5)")
    print(f"scale: records={sizes[-1]} worst_growth={worst:.2f} op={worst_op}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
