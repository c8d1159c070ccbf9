"""Helpers shared by the anchoring tests: ingest records, run worker processes and
`jianzheng` commands, read /healthz and /metrics, check the invariants (every leaf
anchored exactly once, no gap, chain == database)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import httpx
from eth_account import Account
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session, sessionmaker

from service.anchoring import batches as batches_sql
from service.anchoring.contract import RegistryClient, TxReceipt
from service.anchoring.devchain import free_port
from service.domain.evidence import append_record
from service.storage.models import Batch, Outbox, Record
from verifier.merkle import merkle_root

REPO_ROOT = Path(__file__).resolve().parent.parent
INSTITUTION = "91440300MA5EXXXXXX"


def ingest(
    sessions: sessionmaker[Session], n: int, *, chunk: int = 500, tag: str = "t"
) -> list[str]:
    """Accept `n` records through the real write path (record + outbox, one transaction per
    chunk); returns their ids in arrival order."""
    ids: list[str] = []
    done = 0
    while done < n:
        with sessions() as session:
            for i in range(done, min(n, done + chunk)):
                rec = append_record(
                    session,
                    type="test_record",
                    institution=INSTITUTION,
                    body={"n": i, "tag": tag, "value": f"{i * 7.5:.2f} MPa"},
                )
                ids.append(rec.id)
            session.commit()
        done = min(n, done + chunk)
    return ids


def worker_env(
    db_url: str, data_dir: Path, chain: Any, registry: str, **anchor: Any
) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("JZ_") or k == "JZ_TEST_PG_ADMIN_URL"
    }
    env.update(
        {
            "JZ_DATABASE__URL": db_url,
            "JZ_DATA_DIR": str(data_dir),
            "JZ_CHAIN__RPC_URL": chain.rpc_url,
            "JZ_CHAIN__CHAIN_ID": str(chain.chain_id),
            "JZ_CHAIN__REGISTRY": registry,
            "JZ_CHAIN__PRIVATE_KEY": chain.service_key,
            "JZ_LOG_LEVEL": "INFO",
            "PYTHONUNBUFFERED": "1",
        }
    )
    for key, value in anchor.items():
        env[f"JZ_ANCHOR__{key.upper()}"] = str(value)
    return env


def start_worker(
    env: dict[str, str], log_path: Path, crash_at: str | None = None
) -> subprocess.Popen[bytes]:
    """`python -m service.cli worker` as a child process (log to `log_path`)."""
    env = dict(env)
    if crash_at:
        env["JZ_TEST_CRASH_AT"] = crash_at
    log = log_path.open("ab")
    return subprocess.Popen(
        [sys.executable, "-m", "service.cli", "worker"],
        cwd=REPO_ROOT,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=subprocess.STDOUT,
    )


def stop_worker(proc: subprocess.Popen[bytes], timeout: float = 20.0) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def wait_for(cond: Callable[[], bool], timeout: float, what: str, interval: float = 0.1) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")


def drained(engine: Engine) -> bool:
    """No leaf above the outbox watermark and every batch anchored."""
    return batches_sql.drained(engine)


def anchored_events(client: RegistryClient) -> list[tuple[int, str]]:
    """Every Anchored(seq, root) the registry ever emitted, in chain order."""
    logs = client.rpc(
        "eth_getLogs",
        [
            {
                "address": client.address,
                "fromBlock": "0x0",
                "toBlock": "latest",
                "topics": [client.anchored_topic],
            }
        ],
    )
    return [(int(log["topics"][1], 16), log["topics"][2][2:]) for log in logs]


def assert_exactly_once(engine: Engine, client: RegistryClient, record_ids: list[str]) -> int:
    """Every record in exactly one anchored batch; batches 1..k without gap; the chain holds
    exactly those k roots, each once. Returns k."""
    with engine.connect() as conn:
        batches = conn.execute(
            select(
                Batch.seq, Batch.root, Batch.size, Batch.status, Batch.block_number,
                Batch.first_seq, Batch.last_seq,
            ).order_by(Batch.seq)
        ).all()
        outbox = conn.execute(
            select(Outbox.seq, Outbox.record_id, Outbox.leaf_hash).order_by(Outbox.seq)
        ).all()
        n_records = conn.execute(select(func.count()).select_from(Record)).scalar()
    # Every outbox row in exactly one batch: the ranges follow each other in batch order,
    # none overlaps the next, and none is left above the last one.
    for before, after in zip(batches, batches[1:], strict=False):
        assert before.last_seq < after.first_seq, "batch ranges overlap or run backwards"
    assert not batches or all(o.seq <= batches[-1].last_seq for o in outbox), "leaf left over"
    leaves = []
    for b in batches:
        leaves += [
            SimpleNamespace(batch_seq=b.seq, record_id=o.record_id, leaf_hash=o.leaf_hash)
            for o in outbox if b.first_seq <= o.seq <= b.last_seq
        ]
    k = len(batches)
    assert [b.seq for b in batches] == list(range(1, k + 1)), "gap in batch sequence"
    assert all(b.status == "anchored" for b in batches)
    assert n_records == len(record_ids)
    in_batches = [leaf.record_id for leaf in leaves]
    assert len(in_batches) == len(set(in_batches)), "a leaf is in two batches"
    assert sorted(in_batches) == sorted(record_ids), "a record was lost or invented"
    by_batch: dict[int, list[bytes]] = {}
    for leaf in leaves:
        by_batch.setdefault(leaf.batch_seq, []).append(bytes.fromhex(leaf.leaf_hash))
    for b in batches:
        assert len(by_batch[b.seq]) == b.size
        assert merkle_root(by_batch[b.seq]).hex() == b.root
    assert client.batch_count() == k
    events = anchored_events(client)
    assert events == [(b.seq, b.root) for b in batches], "chain anchors differ from database"
    for b in batches:
        info = client.anchor_of(b.root)
        assert info is not None and (info.seq, info.leaf_count, info.block_number) == (
            b.seq,
            b.size,
            b.block_number,
        )
    return k


def registry_transact(rpc_url: str, registry: str, key: str, fn: str, args: list[Any]) -> TxReceipt:
    """Send any registry call signed by ``key`` (role management) and wait for it."""
    c = RegistryClient(rpc_url, registry, key)
    tx = {
        "chainId": c.chain_id(),
        "nonce": c.pending_nonce(),
        "to": c.address,
        "value": 0,
        "gas": 200_000,
        "data": c.contract.encode_abi(fn, args=args),
        **c.fees().as_tx_fields(),
    }
    signed = Account.from_key(key).sign_transaction(tx)
    return c.wait_receipt(c.send_raw(bytes(signed.raw_transaction)))


def serve_env(data_dir: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("JZ_")}
    env.update(
        {
            "JZ_DATA_DIR": str(data_dir),
            "JZ_CHAIN__DEV_PORT": str(free_port()),
            "JZ_ANCHOR__BATCH_MAX_AGE_S": "0.1",
            "PYTHONUNBUFFERED": "1",
        }
    )
    return env


def start_jianzheng(env: dict[str, str], log: Path, *args: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "service.cli", *args],
        cwd=REPO_ROOT,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=log.open("ab"),
        stderr=subprocess.STDOUT,
    )


def stop_jianzheng(proc: subprocess.Popen[bytes]) -> int:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            return proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
    return proc.wait()


def healthz_of(port: int) -> dict | None:  # type: ignore[type-arg]
    try:
        answer = httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2)
    except httpx.HTTPError:
        return None
    return answer.json() if answer.status_code == 200 else None


def api_children(pid: int) -> list[int]:
    """Child processes of `pid` that run an API process (not multiprocessing's tracker)."""
    kids = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) != pid:
            continue
        cmdline = (stat.parent / "cmdline").read_bytes()
        if b"spawn_main" in cmdline and b"resource_tracker" not in cmdline:
            kids.append(int(stat.parent.name))
    return kids


def prometheus_values(text: str) -> dict[str, float]:
    """Sample name -> value of a Prometheus text exposition (our gauges carry no labels)."""
    values: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            assert sample.name not in values, f"{sample.name} exposed twice"
            values[sample.name] = sample.value
    return values
