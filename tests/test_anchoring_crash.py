"""Crash safety and leadership: worker processes SIGKILLed at every dangerous point, and two
workers at once, against PostgreSQL and a real Hardhat node."""

from __future__ import annotations

import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, select

from service.anchoring.contract import RegistryClient
from service.anchoring.worker import CRASH_POINTS, STATE_LEADER
from service.storage.db import make_engine, make_sessionmaker, upgrade
from service.storage.models import Batch, KeyValue
from tests.anchoring_support import (
    assert_exactly_once,
    drained,
    ingest,
    start_worker,
    stop_worker,
    wait_for,
    worker_env,
)
from tests.fixtures.chain import DevChain

pytestmark = [pytest.mark.chain, pytest.mark.postgres, pytest.mark.slow]

#: Status the crashed batch is left in, and what the restarted worker must do about it.
EXPECTED = {
    "prepared": ("prepared", 1, "anchored batch 2"),
    "signed": ("sent", 1, "re-broadcasting the stored anchor tx"),
    "sent": ("sent", 2, "was already anchored by tx"),
    "waiting": ("sent", 2, "was already anchored by tx"),
    "mined": ("sent", 2, "was already anchored by tx"),
}


@pytest.fixture
def pg_engine(pg_url: str) -> Iterator[Engine]:
    upgrade(pg_url)
    engine = make_engine(pg_url)
    yield engine
    engine.dispose()


@pytest.mark.parametrize("point", CRASH_POINTS)
def test_killed_at_each_point_then_restarted(
    point: str,
    tmp_path: Path,
    hardhat: DevChain,
    fresh_registry: str,
    pg_url: str,
    pg_engine: Engine,
) -> None:
    sessions = make_sessionmaker(pg_engine)
    client = RegistryClient(hardhat.rpc_url, fresh_registry, hardhat.service_key)
    ids = ingest(sessions, 120)
    env = worker_env(
        pg_url,
        tmp_path / "var",
        hardhat,
        fresh_registry,
        batch_max_leaves=50,
        batch_max_age_s=0,
        retry_initial_s=0.1,
    )
    log = tmp_path / "worker.log"

    # First life: batch 1 goes through, the worker dies at `point` of batch 2.
    proc = start_worker(env, log, crash_at=f"{point}:2")
    assert proc.wait(90) == -signal.SIGKILL, log.read_text()
    status, on_chain, recovery = EXPECTED[point]
    with pg_engine.connect() as conn:
        rows = conn.execute(select(Batch.seq, Batch.status).order_by(Batch.seq)).all()
    assert [tuple(r) for r in rows] == [(1, "anchored"), (2, status)]
    assert client.batch_count() == on_chain

    # Records keep arriving while no worker runs; then a second life finishes the job.
    ids += ingest(sessions, 30, tag="later")
    before = log.read_text()
    proc = start_worker(env, log)
    try:
        wait_for(lambda: drained(pg_engine), 90, "the backlog to be anchored")
    finally:
        stop_worker(proc)
    assert recovery in log.read_text()[len(before) :]
    k = assert_exactly_once(pg_engine, client, ids)
    assert k == 3  # 50 + 50, then the last 20 with the 30 later ones


def _leader_pid(engine: Engine) -> int | None:
    with engine.connect() as conn:
        value = conn.execute(select(KeyValue.value).where(KeyValue.key == STATE_LEADER)).scalar()
    return int(value.split(":")[1]) if value else None


def test_two_workers_one_leader_no_double_anchor(
    tmp_path: Path, hardhat: DevChain, fresh_registry: str, pg_url: str, pg_engine: Engine
) -> None:
    sessions = make_sessionmaker(pg_engine)
    client = RegistryClient(hardhat.rpc_url, fresh_registry, hardhat.service_key)
    env = worker_env(
        pg_url,
        tmp_path / "var",
        hardhat,
        fresh_registry,
        batch_max_leaves=40,
        batch_max_age_s=0.05,
        retry_initial_s=0.1,
    )
    ids = ingest(sessions, 100)
    logs = [tmp_path / "a.log", tmp_path / "b.log"]
    procs = [start_worker(env, logs[0]), start_worker(env, logs[1])]
    try:
        wait_for(lambda: _leader_pid(pg_engine) is not None, 60, "a leader")
        for i in range(8):
            ids += ingest(sessions, 40, chunk=10, tag=f"round{i}")
            time.sleep(0.15)
        # Kill the leader mid-stream: the other one must take over, without gap or double.
        leader = _leader_pid(pg_engine)
        victim = next(p for p in procs if p.pid == leader)
        victim.kill()
        victim.wait()
        for i in range(5):
            ids += ingest(sessions, 40, chunk=10, tag=f"after{i}")
            time.sleep(0.15)
        wait_for(
            lambda: drained(pg_engine) and _leader_pid(pg_engine) != leader,
            90,
            "the survivor to take over and drain the backlog",
        )
    finally:
        for p in procs:
            stop_worker(p)
    texts = [log.read_text() for log in logs]
    assert sum(t.count("is the leader") for t in texts) == 2, texts
    assert assert_exactly_once(pg_engine, client, ids) >= 3
