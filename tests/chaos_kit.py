"""Helpers for the fault tests (issue 11): real `jianzheng api` / `jianzheng worker`
processes on 127.0.0.1, a bounded signed write load that keeps a ledger of every write the
service acknowledged, and the checks afterwards (each acknowledged record exists exactly
once, every proof verifies against the chain, batch seq == batchCount(), not halted)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from sqlalchemy import Engine, func, select

from service.anchoring.contract import RegistryClient
from service.anchoring.devchain import free_port
from service.client import JianzhengClient
from service.storage.models import Batch, Record
from tests.anchoring_support import REPO_ROOT, assert_exactly_once, wait_for
from verifier.chain import CachingChain, RpcClient
from verifier.proof import Pins, parse_proof, verify_proof

PROJECT = {
    "location": "深圳市南山区科苑南路",
    "construction_unit": {"name": "深圳湾建设有限公司"},
}


class ApiProcesses:
    """`jianzheng api --workers N` on a free loopback port (a supervisor and N children)."""

    def __init__(self, env: dict[str, str], log_path: Path, workers: int = 2) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._log = log_path.open("ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "service.cli", "api", "--host", "127.0.0.1",
             "--port", str(self.port), "--workers", str(workers)],
            cwd=REPO_ROOT, env=env, stdin=subprocess.DEVNULL, stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        self.workers = workers

    def children(self) -> list[int]:
        """PIDs of the API processes (children of the supervisor)."""
        path = Path(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children")
        try:
            pids = [int(p) for p in path.read_text().split()]
        except OSError:
            return []
        # multiprocessing's spawn context also starts a resource tracker: keep the servers.
        return [p for p in pids if "jianzheng-api" in _cmdline(p) or "spawn_main" in _cmdline(p)]

    def wait_ready(self, timeout: float = 60.0) -> None:
        def up() -> bool:
            if self.proc.poll() is not None:
                raise AssertionError(f"jianzheng api exited with {self.proc.returncode}")
            try:
                return httpx.get(self.url + "/healthz", timeout=2).status_code in (200, 503)
            except httpx.HTTPError:
                return False

        wait_for(up, timeout, "the API processes to answer")
        wait_for(lambda: len(self.children()) >= self.workers, timeout, "all API processes")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(40)
            except subprocess.TimeoutExpired:
                for pid in self.children():
                    kill(pid)
                self.proc.kill()
                self.proc.wait()
        self._log.close()


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def kill(pid: int) -> None:
    """SIGKILL `pid` (gone already is fine)."""
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


@dataclass
class Ledger:
    """What the load sent and what the service acknowledged (201 with a record id)."""

    acknowledged: dict[str, str] = field(default_factory=dict)  # record id -> project name
    statuses: Counter[int] = field(default_factory=Counter)
    #: Problem codes of the answers that were not 201.
    codes: Counter[str] = field(default_factory=Counter)
    connection_errors: int = 0
    sent: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def server_errors(self) -> int:
        return sum(n for s, n in self.statuses.items() if s >= 500)

    def count(self, status: int) -> int:
        return self.statuses.get(status, 0)


class WriteLoad:
    """`threads` clients each POSTing /api/v1/projects one after another (signed, unique
    names) until stopped or `max_writes` were sent in all. Connection failures (a killed
    process) and every status are counted; a 201 goes into the ledger."""

    def __init__(self, url: str, key_id: str, secret: str, *, threads: int = 3,
                 max_writes: int = 2_000, tag: str = "w") -> None:
        self.ledger = Ledger()
        self._stop = threading.Event()
        self._max = max_writes
        self._threads = [
            threading.Thread(target=self._run, args=(url, key_id, secret, f"{tag}{i}"),
                             daemon=True)
            for i in range(threads)
        ]
        for t in self._threads:
            t.start()

    def _run(self, url: str, key_id: str, secret: str, tag: str) -> None:
        client = JianzhengClient(url, key_id, secret, timeout=10.0)
        n = 0
        while not self._stop.is_set():
            with self.ledger.lock:
                if self.ledger.sent >= self._max:
                    return
                self.ledger.sent += 1
            name = f"项目-{tag}-{n}"
            n += 1
            try:
                r = client.post("/api/v1/projects", json_body={"name": name, **PROJECT})
            except httpx.HTTPError:
                with self.ledger.lock:
                    self.ledger.connection_errors += 1
                time.sleep(0.2)
                continue
            with self.ledger.lock:
                self.ledger.statuses[r.status_code] += 1
                if r.status_code == 201:
                    self.ledger.acknowledged[r.json()["record_id"]] = name
                else:
                    self.ledger.codes[_problem_code(r)] += 1
            if r.status_code >= 500:
                time.sleep(0.1)
        client.close()

    def stop(self) -> Ledger:
        self._stop.set()
        for t in self._threads:
            t.join(30)
        return self.ledger


def _problem_code(r: httpx.Response) -> str:
    try:
        return str(r.json().get("code"))
    except ValueError:
        return f"HTTP {r.status_code} without a problem body"


def check_after_faults(
    engine: Engine, chain_rpc: str, chain_id: int, registry: str, ledger: Ledger,
    api_url: str, key_id: str, secret: str,
) -> int:
    """Every acknowledged record stored exactly once (by id and by its unique name), every
    record anchored exactly once without gap (tests.anchoring_support.assert_exactly_once),
    batch seq == batchCount(), and every acknowledged record's proof from the API verifies
    against the chain. Returns the number of proofs checked."""
    with engine.connect() as conn:
        rows = conn.execute(select(Record.id, Record.canonical)).all()
        top = conn.execute(select(func.max(Batch.seq))).scalar() or 0
    ids = [r.id for r in rows]
    by_id = {r.id: bytes(r.canonical) for r in rows}
    missing = [rid for rid in ledger.acknowledged if rid not in by_id]
    assert not missing, f"{len(missing)} acknowledged writes lost: {missing[:5]}"
    names = Counter(
        json.loads(c).get("body", {}).get("name") for c in by_id.values()
    )
    doubled = [n for n in ledger.acknowledged.values() if names[n] != 1]
    assert not doubled, f"acknowledged writes stored more than once: {doubled[:5]}"
    client = RegistryClient(chain_rpc, registry, None)
    assert_exactly_once(engine, client, ids)
    assert client.batch_count() == top
    source = CachingChain(RpcClient(chain_rpc))
    pins = Pins(chain_id=chain_id, registry=registry)
    checked = 0
    with JianzhengClient(api_url, key_id, secret, timeout=30.0) as api:
        health = api.get("/healthz").json()
        assert health["anchoring"]["halted"] is None, health
        for rid in ledger.acknowledged:
            r = api.get(f"/api/v1/records/{rid}/proof")
            assert r.status_code == 200, r.text
            result = verify_proof(parse_proof(r.text), source, pins)
            assert result.bottom_line, result.findings
            checked += 1
    return checked
