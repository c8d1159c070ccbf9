"""A sustained run: signed record POSTs at a fixed rate against the deployment (issue 17).

    .venv/bin/python bench/soak.py [--rate 300] [--seconds 300] [--connections 32]

One fresh PostgreSQL database (dropped afterwards), one Hardhat node with a registry,
`jianzheng api --workers 2` and one `jianzheng worker` (separate processes, as deployed),
a registered lab with its project record. Then an open-loop client offers `--rate` signed
`POST /api/v1/projects` per second for `--seconds` (after `--warmup` seconds of the same,
not counted): request i is due at t0 + i / rate whatever happened to earlier ones, signed
when it is due (the replay window is 300 s, shorter than a full run), and sent on the first
idle keep-alive connection of `--connections`; its latency is counted from when it was due,
so a server that falls behind shows it (no coordinated omission). 300/s is about ten times
the average rate of 100 million reports a year at ~10 records each.

Measured: answers (only 201 counts; anything else, a socket error, or a request that
found no connection for a whole second is an error; the table breaks errors down by kind,
an HTTP status with its problem code, and by tenth of the run), p50/p99/max request latency, the
achieved rate, the outbox depth and the number of unanchored batches sampled every
second (it must not grow: the table shows it per tenth of the run and the slope of a
least-squares line over the second half), and, per record, the time from its 201 (the
commit) to its batch being confirmed on chain (`batches.anchored_at`, the worker's clock,
the same machine), p50/p99/max, after the outbox drained.

The last line is exactly `soak: rps=N p99_ms=N p99_anchor_s=N errors=N`.
A smoke run: `--rate 50 --seconds 10`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import psycopg  # noqa: E402
from codes import (  # noqa: E402
    free_port,
    fresh_database,
    percentile,
    server_env,
    setup_database,
    stop_group,
    wait_quiet,
    wait_ready,
)

from service.client import new_nonce, sign_request  # noqa: E402

PATH = "/api/v1/projects"
#: A request that waits this long for an idle connection counts as an error (the client,
#: not only the server, would be the limit).
NO_CONNECTION_S = 1.0
#: The outbox depth: leaves above the watermark (the highest batch's last outbox seq).
PENDING_SQL = (
    "SELECT count(*) FROM outbox WHERE seq > (SELECT COALESCE(max(last_seq), -1) FROM batches)"
)


def _body(n: int) -> bytes:
    return json.dumps({
        "name": f"深圳湾科技园{n}号楼", "location": "深圳市南山区科苑南路", "region": "440305",
        "construction_unit": {"name": "深圳湾建设有限公司"},
        "supervision_unit": {"name": "鹏城监理有限公司"}, "contractor": {"name": "中建某局"},
    }, ensure_ascii=False).encode()


def _request(key_id: str, secret: str, port: int, n: int) -> bytes:
    body = _body(n)
    headers = sign_request("POST", PATH, "", body, key_id, secret, int(time.time()), new_nonce())
    head = (
        f"POST {PATH} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n"
        + "".join(f"{k}: {v}\r\n" for k, v in headers.items()) + "\r\n"
    ).encode()
    return head + body


async def _exchange(conn: tuple[Any, Any], request: bytes) -> tuple[bytes, bytes]:
    reader, writer = conn
    writer.write(request)
    head = await reader.readuntil(b"\r\n\r\n")
    lower = head.lower()
    start = lower.find(b"content-length:")
    end = lower.find(b"\r\n", start)
    body = await reader.readexactly(int(head[start + 15 : end]))
    return head[9:12], body


def _kind(status: bytes, body: bytes) -> str:
    """An error answer's kind for the breakdown: the status and the problem code."""
    try:
        code = json.loads(body).get("code")
    except (ValueError, AttributeError):
        code = None
    return f"{status.decode()} {code}" if isinstance(code, str) else status.decode()


def run_load(
    port: int, key_id: str, secret: str, rate: float, seconds: float, connections: int
) -> dict[str, Any]:
    """The open-loop client; returns latencies, errors and (record id, commit time)."""
    latencies: list[float] = []
    committed: list[tuple[str, float]] = []
    errors: dict[str, int] = {}

    error_at: list[float] = []
    start = time.perf_counter()

    def error(kind: str) -> None:
        errors[kind] = errors.get(kind, 0) + 1
        error_at.append(time.perf_counter() - start)

    async def main() -> float:
        idle: asyncio.Queue[tuple[Any, Any]] = asyncio.Queue()
        for _ in range(connections):
            idle.put_nowait(await asyncio.open_connection("127.0.0.1", port))
        tasks: set[asyncio.Task[None]] = set()

        async def one(n: int, due: float) -> None:
            try:
                conn = await asyncio.wait_for(idle.get(), NO_CONNECTION_S)
            except TimeoutError:
                error("no idle connection")
                return
            try:
                status, body = await _exchange(conn, _request(key_id, secret, port, n))
            except (OSError, asyncio.IncompleteReadError) as exc:
                error(f"socket: {type(exc).__name__}")
                idle.put_nowait(await asyncio.open_connection("127.0.0.1", port))
                return
            done = time.perf_counter()
            idle.put_nowait(conn)
            if status != b"201":
                error(_kind(status, body))
                return
            latencies.append(done - due)
            committed.append((json.loads(body)["record_id"], time.time()))

        total = int(rate * seconds)
        t0 = time.perf_counter()
        for n in range(total):
            due = t0 + n / rate
            delay = due - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            task = asyncio.create_task(one(n, due))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
        await asyncio.gather(*tasks)
        elapsed = time.perf_counter() - t0
        while not idle.empty():
            _reader, writer = idle.get_nowait()
            writer.close()
        return elapsed

    try:
        import uvloop

        uvloop.install()
    except ImportError:  # pragma: no cover
        pass
    cpu0 = time.process_time()
    elapsed = asyncio.run(main())
    return {"latencies": latencies, "committed": committed, "errors": errors,
            "error_at": error_at,
            "elapsed": elapsed, "client_cpu": time.process_time() - cpu0}


class DepthSampler(threading.Thread):
    """Outbox depth and unanchored batches once a second."""

    def __init__(self, url: str) -> None:
        super().__init__(daemon=True)
        self.url = url
        self.samples: list[tuple[float, int, int]] = []
        self.stop = threading.Event()

    def run(self) -> None:
        with psycopg.connect(self.url, autocommit=True) as conn:
            t0 = time.monotonic()
            while not self.stop.is_set():
                depth = conn.execute(PENDING_SQL).fetchone()
                open_ = conn.execute(
                    "SELECT count(*) FROM batches WHERE status <> 'anchored'"
                ).fetchone()
                self.samples.append(
                    (time.monotonic() - t0, int(depth[0]) if depth else 0,
                     int(open_[0]) if open_ else 0)
                )
                self.stop.wait(1.0)


def _slope(points: list[tuple[float, int]]) -> float:
    """Least-squares slope (per second) of (t, y)."""
    if len(points) < 2:
        return 0.0
    mt = statistics.fmean(t for t, _ in points)
    my = statistics.fmean(y for _, y in points)
    den = sum((t - mt) ** 2 for t, _ in points)
    return sum((t - mt) * (y - my) for t, y in points) / den if den else 0.0


def main() -> int:
    from service.anchoring.devchain import DEPLOYER, SERVICE_ACCOUNT, deploy_registry, start_hardhat

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rate", type=float, default=300.0, help="record POSTs per second")
    ap.add_argument("--seconds", "--duration", type=float, default=300.0,
                    help="seconds of the timed run (shorter runs for iterations)")
    ap.add_argument("--connections", type=int, default=32)
    ap.add_argument("--workers", type=int, default=2, help="API processes")
    ap.add_argument("--pool-size", type=int, default=4, help="database pool per API process")
    ap.add_argument("--warmup", type=float, default=5.0, help="seconds at the rate, not counted")
    ap.add_argument("--drain-timeout", type=float, default=120.0)
    args = ap.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="jz-soak-"))
    node = start_hardhat()
    api: subprocess.Popen[bytes] | None = None
    worker: subprocess.Popen[bytes] | None = None
    try:
        assert node.chain_id is not None
        registry = deploy_registry(node.rpc_url, DEPLOYER.private_key, SERVICE_ACCOUNT.address)
        with fresh_database() as url:
            key_id, secret, _project = setup_database(url, tmp / "data")
            env = {
                **server_env(url, tmp / "data", args.pool_size),
                "JZ_CHAIN__RPC_URL": node.rpc_url,
                "JZ_CHAIN__CHAIN_ID": str(node.chain_id),
                "JZ_CHAIN__REGISTRY": registry,
                "JZ_CHAIN__PRIVATE_KEY": SERVICE_ACCOUNT.private_key,
            }
            port = free_port()
            api = subprocess.Popen(
                [sys.executable, "-m", "service.cli", "api", "--host", "127.0.0.1",
                 "--port", str(port), "--workers", str(args.workers)],
                cwd=ROOT, env=env, start_new_session=True,
            )
            worker = subprocess.Popen(
                [sys.executable, "-m", "service.cli", "worker"],
                cwd=ROOT, env=env, start_new_session=True,
            )
            wait_ready(port, api)
            wait_quiet(api.pid)  # the API processes' start-up (verify sandbox) is done
            if args.warmup > 0:  # new processes: first connections, caches, pools
                run_load(port, key_id, secret, args.rate, args.warmup, args.connections)
            sampler = DepthSampler(url)
            sampler.start()
            load0 = os.getloadavg()[0]
            out = run_load(port, key_id, secret, args.rate, args.seconds, args.connections)
            load_end = sampler.samples[-1][0] if sampler.samples else 0.0
            deadline = time.monotonic() + args.drain_timeout
            with psycopg.connect(url, autocommit=True) as conn:
                while time.monotonic() < deadline:
                    row = conn.execute(
                        f"SELECT ({PENDING_SQL}),"
                        " (SELECT count(*) FROM batches WHERE status <> 'anchored')"
                    ).fetchone()
                    if row is not None and row[0] == 0 and row[1] == 0:
                        break
                    time.sleep(0.2)
                sampler.stop.set()
                sampler.join(5)
                anchored = dict(conn.execute(
                    "SELECT o.record_id, b.anchored_at FROM outbox o JOIN batches b"
                    " ON o.seq BETWEEN b.first_seq AND b.last_seq WHERE b.status = 'anchored'"
                ).fetchall())
                batches = conn.execute("SELECT count(*) FROM batches").fetchone()
            stop_group(api)
            stop_group(worker)
            worker_code = worker.returncode
    finally:
        stop_group(api)
        stop_group(worker)
        node.stop()
        shutil.rmtree(tmp, ignore_errors=True)

    errors = dict(out["errors"])
    ok = len(out["latencies"])
    anchor_s = []
    unanchored = 0
    for rid, at in out["committed"]:
        if rid in anchored:
            anchor_s.append(anchored[rid] - at)
        else:
            unanchored += 1
    if unanchored:
        errors["not anchored after the drain"] = unanchored
    n_errors = sum(errors.values())
    ms = sorted(x * 1000 for x in out["latencies"]) or [0.0]
    anchor_s.sort()
    anchor_s = anchor_s or [0.0]
    rps = ok / out["elapsed"] if out["elapsed"] else 0.0
    during = [(t, d) for t, d, _ in sampler.samples if t <= load_end]
    half = [p for p in during if p[0] >= load_end / 2]
    slope = _slope(half) * 60
    tenths = []
    for i in range(10):
        lo, hi = load_end * i / 10, load_end * (i + 1) / 10
        window = [d for t, d in during if lo <= t < hi]
        tenths.append(max(window) if window else 0)
    rows = [
        ("offered", f"{args.rate:.0f} POST /api/v1/projects per s for {args.seconds:.0f} s, "
                    f"{args.connections} connections, open loop"),
        ("deployment", f"jianzheng api --workers {args.workers} (pool {args.pool_size}) + "
                       "jianzheng worker, PostgreSQL, Hardhat"),
        ("answered 201", f"{ok:,} in {out['elapsed']:.1f} s = {rps:.1f}/s"),
        ("errors, by kind", json.dumps(errors, ensure_ascii=False) if errors else "none"),
        ("errors per tenth of the run", " ".join(
            str(sum(1 for t in out["error_at"]
                    if args.seconds * i / 10 <= t < args.seconds * (i + 1) / 10
                    or (i == 9 and t >= args.seconds)))
            for i in range(10))),
        ("latency p50 / p99 / max (ms)", f"{percentile(ms, 0.5):.1f} / "
                                         f"{percentile(ms, 0.99):.1f} / {ms[-1]:.1f}"),
        ("commit -> confirmed anchor p50 / p99 / max (s)",
         f"{percentile(anchor_s, 0.5):.2f} / {percentile(anchor_s, 0.99):.2f} / "
         f"{anchor_s[-1]:.2f}"),
        ("batches anchored", str(batches[0] if batches else 0)),
        ("outbox depth, max per tenth of the run", " ".join(str(x) for x in tenths)),
        ("outbox depth slope, second half", f"{slope:+.1f} leaves/min (flat: ~0)"),
        ("outbox depth max", str(max((d for _, d in during), default=0))),
        ("client CPU", f"{out['client_cpu'] / max(out['elapsed'], 1e-9) * 100:.0f}% of a core"),
        ("load average at the start", f"{load0:.1f}"),
        ("worker exit code", str(worker_code)),
    ]
    width = max(len(k) for k, _ in rows)
    for k, v in rows:
        print(f"{k:<{width}}  {v}")
    print(f"soak: rps={rps:.0f} p99_ms={percentile(ms, 0.99):.0f} "
          f"p99_anchor_s={percentile(anchor_s, 0.99):.2f} errors={n_errors}")
    return 0 if n_errors == 0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
