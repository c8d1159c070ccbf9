"""Anchoring throughput and latency on one Hardhat node (started here).

1. throughput: fill the outbox with N leaves (default 200,000), then time the worker from
   outbox to confirmed anchor (receipt in hand, batch marked anchored) for all of them;
2. baseline: one `anchor` transaction per record on the same node (locally signed raw
   transactions, nonces managed here, send + wait for each receipt), over 500 records;
3. latency: a separate process offers 10,000 leaves/s for 10 s (a commit of 1,000 every
   100 ms; what is due in one commit if the database held it up) while the worker runs
   with its default settings; per leaf, the time from its commit to its batch being
   confirmed; p50/p99/max;
4. gas per leaf over the throughput run;
5. the ceiling (issue 17): the pure-Python hashing limit on one core for the same leaves
   (`hashing_limit`: leaf hash of each record's canonical bytes + the RFC 6962 root, with
   verifier.merkle; also shown with the canonical JSON produced first, by json.dumps and
   by verifier.canonical);
6. the throughput run again on a deployment with an SM3 log (`JZ_EVIDENCE__HASH=sm3`: SM3
   leaves and Merkle nodes, its own registry), so the table shows both leaves/s figures.

The outbox is filled with bulk inserts of records + outbox rows (the same rows
`append_record` writes), because the API path, not the worker, would be the limit.

    .venv/bin/python bench/anchor.py [--leaves N] [--db-url URL] [--baseline-records N]
                                     [--ingest-seconds S]

The last line is `anchor: leaves_per_s=N baseline_tx_per_s=N vs_baseline=X
p99_commit_to_anchor_s=S gas_per_leaf=G hash_limit_per_s=N ratio=R` (one line; vs_baseline
was called `ratio` before issue 17; ratio = leaves_per_s / hash_limit_per_s, goal >= 0.33;
leaves_per_s is that of the default SHA-256 log).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import multiprocessing as mp
import os
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sqlalchemy import Engine, delete, func, insert, select  # noqa: E402

from service.anchoring.batches import pending_leaves  # noqa: E402
from service.anchoring.chaininfo import ChainInfo  # noqa: E402
from service.anchoring.contract import RegistryClient  # noqa: E402
from service.anchoring.devchain import (  # noqa: E402
    DEPLOYER,
    SERVICE_ACCOUNT,
    deploy_registry,
    start_hardhat,
)
from service.anchoring.worker import AnchorWorker, anchor_until_drained  # noqa: E402
from service.settings import (  # noqa: E402
    AnchorSettings,
    ChainSettings,
    DatabaseSettings,
    EvidenceSettings,
    Settings,
)
from service.state import build_state  # noqa: E402
from service.storage import loghash  # noqa: E402
from service.storage.db import make_engine  # noqa: E402
from service.storage.models import Batch, KeyValue, Outbox, Record  # noqa: E402
from verifier.merkle import hasher  # noqa: E402

INSTITUTION = "91440300MA5EXXXXXX"
CHUNK = 10_000
BASELINE_RECORDS = 500
INGEST_RATE = 10_000  # leaves per second
INGEST_SECONDS = 10.0
INGEST_TX_SIZE = 1000
#: Issue 17: outbox -> confirmed anchor leaves/s as a fraction of the hashing limit.
TARGET_RATIO = 0.33


def _record_obj(prefix: str, i: int, stamp: str) -> dict[str, Any]:
    """The evidence record behind leaf `i` (what its canonical bytes serialise)."""
    return {
        "body": {"n": i, "value": "12.5 MPa"},
        "created_at": stamp,
        "files": [],
        "id": f"{prefix}{i:0{26 - len(prefix)}d}",
        "institution": INSTITUTION,
        "parents": [],
        "type": "test_record",
        "v": 1,
    }


def hashing_limit(prefix: str, n: int, stamp: str) -> dict[str, float]:
    """The pure-Python hashing limit on one core (this thread) for the same n records, in
    leaves/s, with the verifier's own functions: `hash` = leaf hash (H(0x00||canonical))
    of each record's canonical bytes + the RFC 6962 root over all of them (best of 3);
    `json` = canonical bytes by json.dumps(sort_keys, compact; equal to RFC 8785 for these
    ASCII records) + the same; `rfc8785` = canonical bytes by verifier.canonical (pure
    Python RFC 8785) + the same. The worker gets leaf hashes from the outbox, so `hash` is
    the one its rate is a fraction of (`ratio`); the others say what producing leaves costs."""
    from verifier.canonical import canonicalize
    from verifier.merkle import leaf_hash, merkle_root

    objs = [_record_obj(prefix, i, stamp) for i in range(n)]

    def dumps(o: dict[str, Any]) -> bytes:
        return json.dumps(o, sort_keys=True, separators=(",", ":")).encode()

    canon = [dumps(o) for o in objs]
    assert canon[0] == canonicalize(objs[0])
    out: dict[str, float] = {}
    best = float("inf")
    for _ in range(3):
        t0 = time.perf_counter()
        merkle_root([leaf_hash(c) for c in canon])
        best = min(best, time.perf_counter() - t0)
    out["hash"] = n / best
    for name, fn in (("json", dumps), ("rfc8785", canonicalize)):
        t0 = time.perf_counter()
        merkle_root([leaf_hash(fn(o)) for o in objs])
        out[name] = n / (time.perf_counter() - t0)
    return out


def _record_rows(
    prefix: str, start: int, count: int, now: float, alg: str = "sha256"
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Records + outbox rows. Canonical bytes: sorted keys, no spaces, ASCII (== RFC 8785)."""
    from datetime import UTC, datetime

    created = datetime.fromtimestamp(int(now), UTC)
    stamp = created.strftime("%Y-%m-%dT%H:%M:%SZ")
    records, outbox = [], []
    for i in range(start, start + count):
        obj = _record_obj(prefix, i, stamp)
        rid = obj["id"]
        canonical = json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()
        leaf = hasher(alg)(b"\x00" + canonical).hex()  # type: ignore[arg-type]
        records.append(
            {
                "id": rid,
                "type": "test_record",
                "institution": INSTITUTION,
                "created_at": created,
                "canonical": canonical,
                "leaf_hash": leaf,
                "code": None,
            }
        )
        outbox.append({"record_id": rid, "leaf_hash": leaf, "enqueued_at": now})
    return records, outbox


def _insert_rows(conn: Any, records: list[dict[str, Any]], outbox: list[dict[str, Any]]) -> None:
    """executemany with plain tuples straight to the driver (Core dict binding costs more
    than the insert itself at these rates)."""
    sqlite = conn.dialect.name == "sqlite"
    mark = "?" if sqlite else "%s"
    rec_sql = (
        "INSERT INTO records (id, type, institution, created_at, canonical, leaf_hash, code) "
        f"VALUES ({', '.join([mark] * 7)})"
    )
    out_sql = (
        f"INSERT INTO outbox (record_id, leaf_hash, enqueued_at) VALUES ({mark}, {mark}, {mark})"
    )
    fmt = "%Y-%m-%d %H:%M:%S.%f"
    conn.exec_driver_sql(
        rec_sql,
        [
            (
                r["id"],
                r["type"],
                r["institution"],
                r["created_at"].strftime(fmt) if sqlite else r["created_at"],
                r["canonical"],
                r["leaf_hash"],
                None,
            )
            for r in records
        ],
    )
    conn.exec_driver_sql(
        out_sql, [(o["record_id"], o["leaf_hash"], o["enqueued_at"]) for o in outbox]
    )


def fill_outbox(engine: Engine, prefix: str, n: int, now: float, alg: str = "sha256") -> None:
    done = 0
    while done < n:
        count = min(CHUNK, n - done)
        records, outbox = _record_rows(prefix, done, count, now, alg)
        with engine.begin() as conn:
            conn.execute(insert(Record), records)
            conn.execute(insert(Outbox), outbox)
        done += count


def _ingest_process(
    db_url: str, prefix: str, rate: int, seconds: float, tx_size: int, out: Any
) -> None:
    """Offer `rate` leaves/s for `seconds`: every `tx_size / rate` seconds commit the leaves
    due by then (normally `tx_size`; more in one transaction if the database held us up,
    as a server's group commit would). Reports (first index, count, commit time) per commit.
    Rows are built before the clock starts so that only the commits are paced."""
    engine = make_engine(db_url)
    total = int(rate * seconds)
    records, outbox = _record_rows(prefix, 0, total, time.time())
    commits: list[tuple[int, int, float]] = []
    t0 = time.time()
    sent = 0
    while sent < total:
        due = min(total, int((time.time() - t0) * rate)) - sent
        if due < tx_size and sent + due < total:
            time.sleep(max(0.0, t0 + (sent + tx_size) / rate - time.time()))
            continue
        now = time.time()
        for row in outbox[sent : sent + due]:
            row["enqueued_at"] = now
        with engine.begin() as conn:
            _insert_rows(conn, records[sent : sent + due], outbox[sent : sent + due])
        commits.append((sent, due, time.time()))
        sent += due
    engine.dispose()
    out.put(commits)


def _settings(
    data_dir: Path, db_url: str, chain: ChainInfo, log_hash: str = "sha256", **anchor: Any
) -> Settings:
    return Settings(
        data_dir=data_dir,
        database=DatabaseSettings(url=db_url),
        chain=ChainSettings(
            rpc_url=chain.rpc_url, chain_id=chain.chain_id, registry=chain.registry
        ),
        anchor=AnchorSettings(**anchor),
        evidence=EvidenceSettings(hash=log_hash),  # type: ignore[arg-type]
    )


def _clear(db_url: str) -> None:
    """Empty a reused database of the evidence tables and its pinned log hash."""
    with make_engine(db_url).begin() as conn:
        for model in (Batch, Outbox, Record):
            conn.execute(delete(model))
        conn.execute(delete(KeyValue).where(KeyValue.key == loghash.STATE_KEY))


def throughput(
    node: Any, data_dir: Path, db_url: str, leaves: int, batch_max_leaves: int, alg: str
) -> tuple[float, float, float, int, int, float]:
    """Fill the outbox, time the worker to confirmed anchors on a fresh registry:
    (leaves/s, fill seconds, elapsed seconds, batches, total gas, fill time)."""
    registry = deploy_registry(node.rpc_url, DEPLOYER.private_key, SERVICE_ACCOUNT.address)
    chain = ChainInfo(node.rpc_url, node.chain_id, registry)
    state = build_state(
        _settings(data_dir, db_url, chain, alg, batch_max_leaves=batch_max_leaves,
                  batch_max_age_s=0.5),
        chain,
    )
    t0 = time.perf_counter()
    filled_at = time.time()
    fill_outbox(state.engine, "T", leaves, filled_at, alg)
    fill_s = time.perf_counter() - t0
    worker = AnchorWorker(state.settings, state.engine, chain)
    t0 = time.perf_counter()
    batches = anchor_until_drained(worker, timeout=600)
    elapsed = time.perf_counter() - t0
    with state.engine.connect() as conn:
        gas = conn.execute(select(func.sum(Batch.gas_used))).scalar()
    state.engine.dispose()
    return leaves / elapsed, fill_s, elapsed, batches, int(gas or 0), filled_at


def baseline(rpc_url: str, registry: str, n: int) -> float:
    """One anchor transaction per record: tx/s."""
    client = RegistryClient(rpc_url, registry, SERVICE_ACCOUNT.private_key)
    fees = client.fees()
    nonce = client.pending_nonce()
    start = client.batch_count() + 1
    t0 = time.perf_counter()
    for i in range(n):
        leaf = hashlib.sha256(b"\x00baseline" + os.urandom(16)).digest()
        signed = client.build_anchor_tx(start + i, leaf, 1, nonce + i, fees=fees)
        client.wait_receipt(client.send_raw(signed.raw), timeout=30)
    return n / (time.perf_counter() - t0)


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    k = min(len(ordered) - 1, max(0, int(round(p / 100 * (len(ordered) - 1)))))
    return ordered[k]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--leaves", type=int, default=200_000)
    parser.add_argument("--db-url", default="", help="default: a SQLite file in a temp dir")
    parser.add_argument("--batch-max-leaves", type=int, default=Settings().anchor.batch_max_leaves)
    parser.add_argument("--baseline-records", type=int, default=BASELINE_RECORDS)
    parser.add_argument("--ingest-seconds", type=float, default=INGEST_SECONDS,
                        help="latency run: seconds of 10,000 leaves/s")
    args = parser.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="jz-bench-anchor-"))
    node = start_hardhat()
    try:
        assert node.chain_id is not None
        rows: list[tuple[str, str]] = []

        # 1. throughput
        db_url = args.db_url or f"sqlite:///{tmp / 'throughput.db'}"
        if args.db_url:
            _clear(args.db_url)
        leaves_per_s, fill_s, elapsed, batches, gas, filled_at = throughput(
            node, tmp / "t", db_url, args.leaves, args.batch_max_leaves, "sha256"
        )
        gas_per_leaf = gas / args.leaves
        rows += [
            ("database", make_engine(db_url).dialect.name),
            ("outbox filled (not timed)", f"{args.leaves:,} leaves in {fill_s:.1f} s"),
            ("batch_max_leaves", f"{args.batch_max_leaves:,}"),
            ("batches anchored", f"{batches}"),
            ("outbox -> confirmed anchor", f"{elapsed:.2f} s"),
            ("leaves/s", f"{leaves_per_s:,.0f}"),
            ("gas per batch (mean)", f"{gas / max(batches, 1):,.0f}"),
            ("gas per leaf", f"{gas_per_leaf:.3f}"),
        ]

        # 6. the same on an SM3 log (its own database and registry)
        sm3_url = args.db_url or f"sqlite:///{tmp / 'throughput-sm3.db'}"
        if args.db_url:
            _clear(args.db_url)
        sm3_per_s, _, sm3_elapsed, _, _, _ = throughput(
            node, tmp / "s", sm3_url, args.leaves, args.batch_max_leaves, "sm3"
        )
        rows += [
            ("SM3 log: outbox -> confirmed anchor", f"{sm3_elapsed:.2f} s"),
            ("SM3 log: leaves/s", f"{sm3_per_s:,.0f} (SHA-256: {leaves_per_s:,.0f})"),
        ]

        # the ceiling: hashing the same leaves on one core
        from datetime import UTC, datetime

        stamp = datetime.fromtimestamp(int(filled_at), UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        limit = hashing_limit("T", args.leaves, stamp)
        hash_ratio = leaves_per_s / limit["hash"]
        rows += [
            ("ceiling: leaf hash + RFC 6962 root", f"{limit['hash']:,.0f} leaves/s (one core)"),
            ("ceiling + json.dumps canonical", f"{limit['json']:,.0f} leaves/s"),
            ("ceiling + verifier RFC 8785", f"{limit['rfc8785']:,.0f} leaves/s"),
            ("ratio: ours / hashing limit", f"{hash_ratio:.3f} (goal >= {TARGET_RATIO})"),
            ("ours / (json canonical + hash)", f"{leaves_per_s / limit['json']:.3f}"),
        ]

        # 2. baseline: one tx per record on the same node
        base_registry = deploy_registry(node.rpc_url, DEPLOYER.private_key, SERVICE_ACCOUNT.address)
        baseline_tx_per_s = baseline(node.rpc_url, base_registry, args.baseline_records)
        ratio = leaves_per_s / baseline_tx_per_s
        rows += [
            ("baseline: 1 anchor tx per record", f"{args.baseline_records} records"),
            ("baseline tx/s", f"{baseline_tx_per_s:,.1f}"),
            ("ours / baseline", f"{ratio:,.0f}x"),
        ]

        # 3. latency under a steady 10,000 leaves/s
        lat_registry = deploy_registry(node.rpc_url, DEPLOYER.private_key, SERVICE_ACCOUNT.address)
        lat_chain = ChainInfo(node.rpc_url, node.chain_id, lat_registry)
        lat_url = f"sqlite:///{tmp / 'latency.db'}" if not args.db_url else args.db_url
        if args.db_url:  # reuse the database: clear it
            _clear(args.db_url)
        lat_state = build_state(_settings(tmp / "l", lat_url, lat_chain), lat_chain)
        lat_worker = AnchorWorker(lat_state.settings, lat_state.engine, lat_chain)
        stop = threading.Event()
        thread = threading.Thread(target=lat_worker.run, args=(stop,), daemon=True)
        thread.start()
        queue: Any = mp.get_context("spawn").Queue()
        ingester = mp.get_context("spawn").Process(
            target=_ingest_process,
            args=(lat_url, "L", INGEST_RATE, args.ingest_seconds, INGEST_TX_SIZE, queue),
        )
        ingester.start()
        commits = queue.get(timeout=args.ingest_seconds + 120)
        ingester.join()
        deadline = time.time() + 60
        while time.time() < deadline:
            with lat_state.engine.connect() as conn:
                left, _ = pending_leaves(conn)
                open_ = conn.execute(
                    select(func.count()).select_from(Batch).where(Batch.status != "anchored")
                ).scalar()
            if not left and not open_:
                break
            time.sleep(0.1)
        stop.set()
        thread.join(30)
        with lat_state.engine.connect() as conn:
            anchored_at = dict(
                conn.execute(
                    select(Outbox.record_id, Batch.anchored_at).join(
                        Batch, Outbox.seq.between(Batch.first_seq, Batch.last_seq)
                    )
                ).all()
            )
            lat_batches = conn.execute(select(func.count()).select_from(Batch)).scalar()
        latencies = []
        for start, count, committed in commits:
            for i in range(start, start + count):
                rid = f"L{i:025d}"
                latencies.append(anchored_at[rid] - committed)
        ingested = sum(c for _, c, _ in commits)
        first_start = commits[0][2] - commits[0][1] / INGEST_RATE  # ~ when leaf 0 was due
        rate = ingested / (commits[-1][2] - first_start)
        p99 = percentile(latencies, 99)
        rows += [
            ("latency: ingest", f"{ingested:,} leaves at {rate:,.0f}/s, default settings"),
            ("latency: batches", f"{lat_batches}"),
            ("commit -> confirmed anchor p50", f"{percentile(latencies, 50):.3f} s"),
            ("commit -> confirmed anchor p99", f"{p99:.3f} s"),
            ("commit -> confirmed anchor max", f"{max(latencies):.3f} s"),
        ]
        lat_state.engine.dispose()
    finally:
        node.stop()

    width = max(len(k) for k, _ in rows)
    print(f"{'measure':<{width}}  value")
    print(f"{'-' * width}  {'-' * 30}")
    for key, value in rows:
        print(f"{key:<{width}}  {value}")
    print(
        f"anchor: leaves_per_s={leaves_per_s:.0f} baseline_tx_per_s={baseline_tx_per_s:.1f} "
        f"vs_baseline={ratio:.1f} p99_commit_to_anchor_s={p99:.3f} gas_per_leaf={gas_per_leaf:.3f} "
        f"hash_limit_per_s={limit['hash']:.0f} ratio={hash_ratio:.3f}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
