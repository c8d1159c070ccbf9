"""Public verification speed: `GET /api/v1/public/reports/{code}` of a genuine report.

One run: a Hardhat node, a registry, the larger view of issue 12 (a report on 3 samples,
each sealed, witnessed and received, with 6 test records and a retest, its whole history)
built through the lab API
(the sealing route stores the sealed PDF's signature verdict, see
service.domain.public.SignatureVerdicts) and anchored by the real worker. Then, in this
process, with the same code paths the service runs:

- uncached: the first check of the report: every in-process cache cleared (record checks,
  file hashes, chain reads, views, signature memo), so every leaf is recomputed, every
  blob hashed, the batch path rebuilt, the anchor, event and revocation read from the
  chain, the sealed PDF's verdict taken from the sealing step under its rule (median of
  COLD_RUNS) -- this is `cold_ms`;
- uncached, no stored verdict: the same with the stored signature verdicts deleted, so
  verifier.pdf parses and validates the PDF (what a report sealed before the verdict store
  existed costs once);
- stamp moved: the change stamp bumped before each view, so every row is re-read and
  compared with the cached record checks;
- cached: `ReportViews.cached_json` (SQLite's data version, the head read again only if it
  moved, + os.stat of the blob files), every call its own check.

And served as deployed: `jianzheng api --workers WORKERS` (service.runtime: uvicorn with
httptools and uvloop, one process per worker on its own SO_REUSEPORT socket, the start-up
heap frozen), under CONCURRENCY keep-alive connections for
DURATION_S seconds from `wrk` (Debian package; one thread, plain GET, no Lua), after a
warm-up run: requests per second, p50/p99 latency, non-2xx answers, the CPU the servers
used per request and the CPU the client itself used (it shares the 2 cores). Without wrk
the lean asyncio client below runs in a separate process instead; the table says which.

Then the ceiling (issue 17), same run, same load client, same processes and settings:
bench/ceiling.py, a bare FastAPI app answering the same path with a constant body (the
bytes of our answer for this report). Both are up at once and loaded in turn, ROUNDS
times (ours, ceiling, ours, ceiling, ...), so that a neighbour's load on this shared
machine falls on both alike: each round's ratio compares two runs seconds apart. The
figures are the medians over the rounds (p99: the worst round), and the ratio is the
median of the rounds' ratios. A last pair of runs (wrk only) rotates through SPELLINGS
ways of typing the code (case, hyphens): no two requests of one loop turn are alike, so
none shares another's freshness check (service/api/turns.py), as with a load spread over
many reports; its ratio is in the table. The last line is exactly
`public: rps=N p99_ms=N cold_ms=N ceiling_rps=N ratio=R` (ratio: ours / ceiling req/s;
goal >= 0.7). `--seconds S --warmup S --rounds N` shorten the load runs (a smoke run).
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

CONCURRENCY = 64
DURATION_S = 6.0
WARMUP_S = 3.0
ROUNDS = 3
#: Spellings of the code the unshared run rotates through (more than requests in a turn).
SPELLINGS = 256
COLD_RUNS = 9
WARM_RUNS = 30
CACHED_RUNS = 2000
WORKERS = 2
TARGET_RPS = 1500
TARGET_P99_MS = 50.0
TARGET_COLD_MS = 100.0
#: Issue 17: our served req/s as a fraction of the bare app's constant-body req/s.
TARGET_RATIO = 0.7


def build(tmp: Path) -> tuple[dict[str, str], str, Any, Any]:
    from service.anchoring.chaininfo import ChainInfo
    from service.anchoring.devchain import (
        DEPLOYER,
        SERVICE_ACCOUNT,
        deploy_registry,
        start_hardhat,
    )
    from service.anchoring.worker import AnchorWorker, anchor_until_drained
    from service.state import build_state
    from tests.labkit import add_lab, client_for, make_app

    node = start_hardhat()
    assert node.chain_id is not None
    registry = deploy_registry(node.rpc_url, DEPLOYER.private_key, SERVICE_ACCOUNT.address)
    env = {
        "JZ_DATA_DIR": str(tmp / "var"),
        "JZ_DATABASE__URL": f"sqlite:///{tmp / 'jz.db'}",
        "JZ_CHAIN__RPC_URL": node.rpc_url,
        "JZ_CHAIN__CHAIN_ID": str(node.chain_id),
        "JZ_CHAIN__REGISTRY": registry,
        "JZ_CHAIN__PRIVATE_KEY": SERVICE_ACCOUNT.private_key,
        "JZ_PUBLIC__RATE_LIMIT_PER_MINUTE": "0",
        "JZ_LOG_LEVEL": "WARNING",
    }
    os.environ.update(env)
    from service.settings import Settings

    settings = Settings()
    chain = ChainInfo(node.rpc_url, node.chain_id, registry)
    state = build_state(settings, chain)
    app = make_app(state)
    lab = add_lab(state, 1)
    assert lab.institution is not None
    code = larger_report(client_for(app, lab))
    anchor_until_drained(AnchorWorker(settings, state.engine, chain))
    if state.verdict_primer.built:
        state.verdict_primer.get().shutdown(wait=True)  # the sealing step's verdict is stored
    return env, code, state, node


def larger_report(client: Any) -> str:
    """The view issue 12 measures: a report on 3 samples (each sealed, witnessed and
    received) with 6 test records (two test items per sample) and a retest of one of them,
    so its history holds every version."""
    import dataclasses

    from tests.public_kit import make_pdf
    from tests.recordkit import (
        ago,
        build_chain,
        created,
        data_body,
        receipt_body,
        sample_body,
        seal_body,
        today_cst,
        witness_body,
    )

    first = build_chain(client, sample_code="YP2026112210001")
    chains = [first]
    for n in (2, 3):
        sample_code = f"YP202611221000{n}"
        sample = created(client.post("/api/v1/samples",
                                     json_body=sample_body(first.commission, sample_code)))
        chain = dataclasses.replace(first, sample=sample, sample_code=sample_code)
        chain.seal = created(client.post("/api/v1/seals", json_body=seal_body(chain)))
        chain.witness = created(client.post("/api/v1/witnesses", json_body=witness_body(chain)))
        chain.receipt = created(client.post("/api/v1/receipts", json_body=receipt_body(chain)))
        chains.append(chain)
    cited = []
    for chain in chains:
        cited.append(chain.sample)
        for item, strength in (("混凝土抗压强度", 36.1), ("混凝土劈裂抗拉强度", 3.4)):
            cited.append(created(client.post("/api/v1/test-records", json_body=data_body(
                chain, ago(600), test_item=item, results={"strength_MPa": strength}))))
    retest = created(client.post("/api/v1/test-records", json_body=data_body(
        first, ago(300), results={"strength_MPa": 37.0}, retest_reason="复检：首组试块缺角")))
    cited[1] = retest  # the report cites the retest; the first test stays in its history
    r = client.issue_code("BG-2026-B1", first.project)
    assert r.status_code == 201, r.text
    code: str = r.json()["code"]
    r = client.put(f"/api/v1/reports/{code}", json_body={
        "conclusion": "pass", "issued_on": today_cst(), "approver": "王五", "parents": cited})
    assert r.status_code in (200, 201), r.text
    r = client.put(f"/api/v1/reports/{code}/pdf", content=make_pdf(2, "检测报告 B1"),
                   content_type="application/pdf")
    assert r.status_code == 200, r.text
    return code


def _median_ms(fn: Any, runs: int) -> float:
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1000)
    return statistics.median(times)


def in_process(state: Any, code: str) -> dict[str, Any]:
    from service.api.public import report_json

    views = state.views.get()
    out: dict[str, Any] = {}

    def genuine() -> dict[str, Any]:
        body = report_json(state, code)
        assert body is not None
        data: dict[str, Any] = json.loads(body)
        assert data["status"] == "genuine", data["status"]
        return data

    out["records"] = len(genuine()["chain"])

    def cold() -> None:
        views.clear()
        genuine()

    before = views.signature_validations
    out["cold"] = _median_ms(cold, COLD_RUNS)
    out["cold_validations"] = views.signature_validations - before

    def cold_no_verdict() -> None:
        with state.engine.begin() as conn:
            conn.exec_driver_sql("DELETE FROM signature_checks")
        views.clear()
        genuine()

    before = views.signature_validations
    out["cold_pdf"] = _median_ms(cold_no_verdict, max(3, COLD_RUNS // 2))
    out["cold_pdf_validations"] = views.signature_validations - before

    def stamp_moved() -> None:
        with state.engine.begin() as conn:
            conn.exec_driver_sql("UPDATE evidence_stamp SET counter = counter + 1 WHERE id = 1")
        genuine()

    genuine()
    full = views.checker.full_checks
    out["warm"] = _median_ms(stamp_moved, WARM_RUNS)
    out["warm_full_checks"] = views.checker.full_checks - full

    genuine()
    hits = views.cached_answers
    out["cached"] = _median_ms(lambda: views.cached_json(code), CACHED_RUNS)
    out["cached_hits"] = views.cached_answers - hits
    return out


# --- load generation ---------------------------------------------------------------------

_UNIT_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0}


def _ms(text: str) -> float:
    m = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text.strip())
    if not m:
        raise ValueError(f"unexpected wrk latency {text!r}")
    return float(m.group(1)) * _UNIT_MS[m.group(2)]


def spellings(code: str, n: int) -> list[str]:
    """`n` different ways to type `code` that all name it (codes.normalize: case and
    hyphens do not matter): the letters' case toggled by the bits of a counter, and a
    hyphen after the region and after the year."""
    letters = [i for i, ch in enumerate(code) if ch.isalpha()]
    out: list[str] = []
    for k in range(1 << (len(letters) + 2)):
        chars = list(code)
        for bit, pos in enumerate(letters):
            if k >> bit & 1:
                chars[pos] = chars[pos].lower()
        text = "".join(chars)
        if k >> len(letters) & 1:
            text = text[:6] + "-" + text[6:]
        if k >> (len(letters) + 1) & 1:
            text = text[: len(text) - 11] + "-" + text[len(text) - 11 :]
        out.append(text)
        if len(out) == n:
            break
    return out


def rotating_script(paths: list[str], tmp: Path) -> Path:
    """A wrk Lua script sending GETs of `paths` in turn, one after the other."""
    script = tmp / "rotate.lua"
    listed = ",\n".join(json.dumps(p) for p in paths)
    script.write_text(
        f"local paths = {{\n{listed}\n}}\nlocal i = 0\n"
        "request = function()\n  i = i + 1\n"
        "  return wrk.format(\"GET\", paths[(i % #paths) + 1])\nend\n"
    )
    return script


def run_wrk(url: str, duration: float, script: Path | None = None) -> dict[str, Any]:
    """wrk, one thread, CONCURRENCY connections; its own CPU time from wait4's rusage."""
    cmd = ["wrk", "-t1", f"-c{CONCURRENCY}", f"-d{duration:.0f}s", "--latency", "--timeout",
           "5s", *(["-s", str(script)] if script else []), url]
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    assert proc.stdout is not None
    text = proc.stdout.read()
    _pid, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"wrk failed:\n{text}")
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", text).group(1))  # type: ignore[union-attr]
    p99 = _ms(re.search(r"^\s+99%\s+(\S+)", text, re.M).group(1))  # type: ignore[union-attr]
    p50 = _ms(re.search(r"^\s+50%\s+(\S+)", text, re.M).group(1))  # type: ignore[union-attr]
    bad = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", text)
    errors = re.search(r"Socket errors: (.*)", text)
    return {
        "client": "wrk 4.1 (Debian), 1 thread, " + ("rotating GETs" if script else "plain GET"),
        "rps": rps,
        "p50": p50,
        "p99": p99,
        "non2xx": int(bad.group(1)) if bad else 0,
        "socket_errors": errors.group(1) if errors else "none",
        "client_cpu": (usage.ru_utime + usage.ru_stime) / wall,
    }


async def _client(host: str, port: int, path: str, stop_at: float, lat: list[float]) -> None:
    reader, writer = await asyncio.open_connection(host, port)
    request = f"GET {path} HTTP/1.1\r\nHost: {host}\r\n\r\n".encode()
    try:
        while time.perf_counter() < stop_at:
            t0 = time.perf_counter()
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            length = 0
            for line in head.split(b"\r\n"):
                if line[:15].lower() == b"content-length:":
                    length = int(line[15:])
            await reader.readexactly(length)
            if not head.startswith(b"HTTP/1.1 200"):
                raise RuntimeError(f"bad answer: {head[:40]!r}")
            lat.append(time.perf_counter() - t0)
    finally:
        writer.close()


def asyncio_client_main(host: str, port: int, path: str, duration: float) -> None:
    """The fallback client (run as `bench/public.py --client HOST PORT PATH SECONDS`)."""
    lat: list[float] = []
    stop_at = time.perf_counter() + duration

    async def main() -> None:
        await asyncio.gather(
            *(_client(host, port, path, stop_at, lat) for _ in range(CONCURRENCY))
        )

    asyncio.run(main())
    lat.sort()
    print(json.dumps({"n": len(lat), "p50": lat[len(lat) // 2] * 1000,
                      "p99": lat[int(len(lat) * 0.99) - 1] * 1000}))


def run_asyncio_client(host: str, port: int, path: str, duration: float) -> dict[str, Any]:
    t0 = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, __file__, "--client", host, str(port), path, str(duration)],
        stdout=subprocess.PIPE, text=True,
    )
    assert proc.stdout is not None
    text = proc.stdout.read()
    _pid, _status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    got = json.loads(text.strip().splitlines()[-1])
    return {
        "client": "asyncio streams client, separate process",
        "rps": got["n"] / duration,
        "p50": got["p50"],
        "p99": got["p99"],
        "non2xx": 0,
        "socket_errors": "none",
        "client_cpu": (usage.ru_utime + usage.ru_stime) / wall,
    }


def tree_cpu_s(pid: int) -> float:
    """CPU seconds used so far by a process and all its descendants (Linux /proc)."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0.0
    todo = [pid]
    while todo:
        p = todo.pop()
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / tick
            for task in Path(f"/proc/{p}/task").iterdir():
                todo.extend(int(c) for c in (task / "children").read_text().split())
        except (OSError, ValueError, IndexError):
            continue
    return total


def wait_http(url: str, timeout: float = 30.0) -> None:
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(url, timeout=1.0).status_code < 500:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise TimeoutError(url)


def _load(
    url: str, path: str, port: int, servers: list[Any], warmup: float,
    script: Path | None = None,
) -> dict[str, Any]:
    """Warm-up, then one timed run of the load client; the servers' CPU per request."""
    if warmup > 0 and shutil.which("wrk"):
        run_wrk(url, warmup, script)
    elif warmup > 0:
        run_asyncio_client("127.0.0.1", port, path, warmup)
    load_before = os.getloadavg()[0]
    cpu0 = sum(tree_cpu_s(server.pid) for server in servers)
    if shutil.which("wrk"):
        result = run_wrk(url, DURATION_S, script)
    else:
        result = run_asyncio_client("127.0.0.1", port, path, DURATION_S)
    cpu = sum(tree_cpu_s(server.pid) for server in servers) - cpu0
    result["server_cpu_us"] = cpu / (result["rps"] * DURATION_S) * 1e6
    result["server_cores"] = cpu / DURATION_S
    result["loadavg"] = load_before
    return result


def _stop(servers: list[Any]) -> None:
    """Stop each server's process group (the launcher and its worker processes)."""
    for server in servers:
        if server.poll() is None:
            os.killpg(server.pid, signal.SIGTERM)
    for server in servers:
        try:
            server.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)


def served(
    env: dict[str, str], code: str, tmp: Path
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Ours and the ceiling (bench/ceiling.py: the bare app sending our answer's bytes as
    a constant body), with the same processes, settings and load client, loaded in turn
    for ROUNDS rounds: the runs of each, in order."""
    import ceiling
    import httpx

    from service.anchoring.devchain import free_port

    path = f"/api/v1/public/reports/{code}"
    port = free_port()
    url = f"http://127.0.0.1:{port}{path}"
    # ours as deployed: `jianzheng api` (service.runtime._api_process per worker)
    ours = subprocess.Popen(
        [sys.executable, "-m", "service.cli", "api", "--host", "127.0.0.1",
         "--port", str(port), "--workers", str(WORKERS)],
        env={**os.environ, **env, "PYTHONPATH": str(REPO)},
        cwd=str(REPO), start_new_session=True,
    )
    servers = [ours]
    try:
        wait_http(f"http://127.0.0.1:{port}/healthz")
        for _ in range(8 * WORKERS):  # new connections: each worker builds its view
            r = httpx.get(url, timeout=30.0)
            assert r.status_code == 200 and r.json()["status"] == "genuine", r.text[:200]
        body = r.content
        body_file = tmp / "constant.json"
        body_file.write_bytes(body)
        ceil_port = free_port()
        ceil_url = f"http://127.0.0.1:{ceil_port}{path}"
        group = ceiling.start(
            ceil_port, WORKERS, {**os.environ, **env, "JZ_CEILING_BODY": str(body_file)})
        servers.append(group)
        wait_http(f"http://127.0.0.1:{ceil_port}/healthz")
        r = httpx.get(ceil_url, timeout=10.0)
        assert r.status_code == 200 and r.content == body
        ours_runs: list[dict[str, Any]] = []
        ceil_runs: list[dict[str, Any]] = []
        for n in range(ROUNDS):
            warmup = WARMUP_S if n == 0 else min(WARMUP_S, 1.0)
            ours_runs.append(_load(url, path, port, [ours], warmup))
            ceil_runs.append(_load(ceil_url, path, ceil_port, [group], warmup))
            ceil_runs[-1]["bytes"] = len(body)
        if shutil.which("wrk"):
            # no two requests of a loop turn alike: every answer pays its own check
            typed = spellings(code, SPELLINGS)
            for text in typed[:3]:
                r = httpx.get(f"http://127.0.0.1:{port}/api/v1/public/reports/{text}")
                assert r.status_code == 200 and r.content == body, text
            script = rotating_script([f"/api/v1/public/reports/{t}" for t in typed], tmp)
            ours_runs.append(_load(url, path, port, [ours], 1.0, script))
            ours_runs[-1]["spellings"] = len(typed)
            ceil_runs.append(_load(ceil_url, path, ceil_port, [group], 1.0, script))
            ceil_runs[-1]["bytes"] = len(body)
        r = httpx.get(url, timeout=10.0)
        assert r.status_code == 200 and r.json()["status"] == "genuine", r.text[:200]
    finally:
        _stop(servers)
    return ours_runs, ceil_runs


def combined(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The rounds of one server as one figure: medians, and the worst round's p99."""
    out = dict(runs[0])
    for key in ("rps", "p50", "server_cpu_us", "server_cores", "client_cpu", "loadavg"):
        out[key] = statistics.median(run[key] for run in runs)
    out["p99"] = max(run["p99"] for run in runs)
    out["non2xx"] = sum(run["non2xx"] for run in runs)
    errors = [str(run["socket_errors"]) for run in runs if run["socket_errors"] != "none"]
    out["socket_errors"] = "; ".join(errors) or "none"
    return out


def main() -> None:
    import argparse

    global DURATION_S, WARMUP_S, ROUNDS
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=DURATION_S, help="each timed load run")
    ap.add_argument("--warmup", type=float, default=WARMUP_S, help="the first warm-up run")
    ap.add_argument("--rounds", type=int, default=ROUNDS, help="ours-then-ceiling rounds")
    args = ap.parse_args()
    DURATION_S, WARMUP_S, ROUNDS = args.seconds, args.warmup, max(1, args.rounds)
    with tempfile.TemporaryDirectory(prefix="jz-bench-public-") as tmpdir:
        tmp = Path(tmpdir)
        env, code, state, node = build(tmp)
        try:
            local = in_process(state, code)
            state.engine.dispose()
            ours_runs, ceil_runs = served(env, code, tmp)
        finally:
            node.stop()
    unshared = None
    if len(ours_runs) > ROUNDS:
        unshared = (ours_runs.pop(), ceil_runs.pop())
    load, ceil = combined(ours_runs), combined(ceil_runs)
    ratios = [o["rps"] / c["rps"] if c["rps"] else 0.0
              for o, c in zip(ours_runs, ceil_runs, strict=True)]

    rows = [
        ("uncached first check (cold_ms)",
         f"{local['cold']:.1f} ms",
         f"median of {COLD_RUNS}; all in-process caches cleared; 3 chain reads; "
         f"stored sealing verdict used ({local['cold_validations']} PDF validations)"),
        ("uncached, no stored verdict",
         f"{local['cold_pdf']:.1f} ms",
         f"signature_checks emptied: verifier.pdf parses the PDF "
         f"({local['cold_pdf_validations']} validations)"),
        ("change stamp moved",
         f"{local['warm']:.2f} ms",
         f"rows re-read, record checks reused ({local['warm_full_checks']} full checks)"),
        ("cached (in-process)",
         f"{local['cached'] * 1000:.0f} us",
         f"data version (head re-read if moved) + os.stat of blob files "
         f"({local['cached_hits']} cache answers)"),
        (f"served, cached, {CONCURRENCY} conns",
         f"{load['rps']:.0f} req/s",
         f"p50 {load['p50']:.1f} ms, p99 {load['p99']:.1f} ms, non-2xx {load['non2xx']}, "
         f"socket errors {load['socket_errors']}"),
        ("server CPU per request",
         f"{load['server_cpu_us']:.0f} us",
         f"all uvicorn processes; {load['server_cores']:.2f} cores busy; machine load "
         f"average {load['loadavg']:.1f} before the run (2 cores, shared)"),
        ("load client", load["client"],
         f"client CPU {load['client_cpu'] * 100:.0f}% of one core (shares the 2 cores)"),
        (f"ceiling, {CONCURRENCY} conns",
         f"{ceil['rps']:.0f} req/s",
         f"bare app, constant {ceil['bytes']}-byte JSON body; p50 {ceil['p50']:.1f} ms, "
         f"p99 {ceil['p99']:.1f} ms, non-2xx {ceil['non2xx']}"),
        ("ceiling server CPU per request",
         f"{ceil['server_cpu_us']:.0f} us",
         f"{ceil['server_cores']:.2f} cores busy; load average {ceil['loadavg']:.1f} before"),
        *(
            (f"round {n + 1}: ours / ceiling",
             f"{o['rps']:.0f} / {c['rps']:.0f}",
             f"ratio {r:.2f}; CPU per request {o['server_cpu_us']:.0f} / "
             f"{c['server_cpu_us']:.0f} us; p99 {o['p99']:.1f} / {c['p99']:.1f} ms")
            for n, (o, c, r) in enumerate(zip(ours_runs, ceil_runs, ratios, strict=True))
        ),
    ]
    if unshared is not None:
        o, c = unshared
        rows.append((
            f"unshared: {o['spellings']} spellings",
            f"{o['rps']:.0f} / {c['rps']:.0f}",
            f"ratio {o['rps'] / c['rps']:.2f}; each request names the code differently, so "
            f"no two in a loop turn share a check; CPU per request {o['server_cpu_us']:.0f} / "
            f"{c['server_cpu_us']:.0f} us; p99 {o['p99']:.1f} / {c['p99']:.1f} ms; "
            f"non-2xx {o['non2xx']} / {c['non2xx']}",
        ))
    ratio = statistics.median(ratios)
    print(f"report {code}: {local['records']} records in its chain; served by "
          f"`jianzheng api --workers {WORKERS}`; {ROUNDS} rounds of {DURATION_S:g} s, "
          "ours then the ceiling; medians over the rounds, p99 the worst round")
    width = max(len(r[0]) for r in rows)
    vwidth = max(len(r[1]) for r in rows)
    print(f"{'path':<{width}}  {'result':<{vwidth}}  notes")
    for name, value, note in rows:
        print(f"{name:<{width}}  {value:<{vwidth}}  {note}")
    ok = (load["rps"] >= TARGET_RPS and load["p99"] <= TARGET_P99_MS
          and local["cold"] <= TARGET_COLD_MS and load["non2xx"] == 0)
    print(f"targets: rps >= {TARGET_RPS}, p99 <= {TARGET_P99_MS:.0f} ms, "
          f"cold <= {TARGET_COLD_MS:.0f} ms: {'met' if ok else 'MISSED'}")
    print(f"goal: ratio >= {TARGET_RATIO} of the constant-body ceiling: ratio {ratio:.2f}: "
          f"{'met' if ratio >= TARGET_RATIO else 'MISSED'}")
    print(f"public: rps={load['rps']:.0f} p99_ms={load['p99']:.1f} cold_ms={local['cold']:.1f} "
          f"ceiling_rps={ceil['rps']:.0f} ratio={ratio:.2f}")


if __name__ == "__main__":
    if len(sys.argv) == 6 and sys.argv[1] == "--client":
        asyncio_client_main(sys.argv[2], int(sys.argv[3]), sys.argv[4], float(sys.argv[5]))
    else:
        main()
